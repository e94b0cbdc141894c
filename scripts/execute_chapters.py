"""Execute book chapters in place, as README command 2 will re-execute them under nbval.

Usage: ``python scripts/execute_chapters.py book/04_iterative_optimization.ipynb ...``
(no argument: every chapter of ``_toc.yml``). Each notebook runs in a fresh kernel in its
own folder on the CPU profile, one thread, and is written back with its outputs. Widget
state is not stored in the notebook: the published pages show each explorer's static
figure, so no page needs the widget manager from a CDN.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def toc_chapters() -> list[Path]:
    """The notebooks ``_toc.yml`` lists, in order."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [ROOT / f"{f}.ipynb" for f in files if (ROOT / f"{f}.ipynb").is_file()]


def execute(path: Path, timeout: int = 900) -> None:
    """Run ``path`` top to bottom in a fresh kernel and save it with its outputs."""
    nb = nbformat.read(path, as_version=4)
    os.environ.update(CANETLIB_BOOK_CPU="1", OMP_NUM_THREADS="1", CANETLIB_NO_PROGRESS="1")
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            store_widget_state=False, record_timing=False)
    client.execute()
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:  # no timestamps: a re-execution changes only what it prints
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)


def main(argv: list[str]) -> int:
    paths = [Path(a).resolve() for a in argv] or toc_chapters()
    for path in paths:
        print(f"executing {path.relative_to(ROOT)}", flush=True)
        execute(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
