"""Every chapter opened alone, as Colab opens it, shows all its content.

Each notebook of ``_toc.yml`` is copied alone into an empty folder and run there, two at a
time, by a kernel of the venv that holds only the installed wheel (:mod:`wheelenv`): no
``data/`` folder around it, no checkout on ``sys.path``. It must run without an error, print
none of the phrases a chapter printed when it missed a repository file, and give the stored
outputs: the text of every cell not tagged ``nbval-ignore-output``, compared as strict nbval
compares it, and as many images.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
import wheelenv
import yaml
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbval.plugin import coalesce_streams, transform_streams_for_comparison

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
KERNEL = "canetlib-wheel"
#: what chapters printed when a repository file was missing: none may appear
FALLBACK_PHRASES = ("not in this copy", "not measured in this copy", "in a clone", "clone the",
                    "clone of", "not found", "was not run here", "no sweep results",
                    "no GPU bench")
#: output keys strict nbval leaves out of the comparison (images are counted instead)
SKIP_KEYS = frozenset({"metadata", "traceback", "prompt_number", "output_type", "name",
                       "execution_count", "application/vnd.jupyter.widget-view+json",
                       "image/png", "image/jpeg"})
IMAGE_KEYS = ("image/png", "image/jpeg", "image/svg+xml")
#: appended to each copy: where canetlib was imported from
WHERE = 'import sys, canetlib\nprint("canetlib from", canetlib.__file__, "prefix", sys.prefix)'
PARALLEL = 2
CELL_TIMEOUT = 900


def toc_notebooks() -> list[Path]:
    """The notebooks ``_toc.yml`` lists, in order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [ROOT / f"{f}.ipynb" for f in files if (ROOT / f"{f}.ipynb").is_file()]


@dataclass
class ChapterRun:
    """One chapter executed alone: its notebook with outputs, or the error it stopped at."""

    nb: Any
    error: str | None
    seconds: float


def write_kernel_spec(folder: Path, python: Path) -> Path:
    """A folder of kernel specs holding one, ``KERNEL``, that runs ``python``."""
    spec = folder / KERNEL
    spec.mkdir(parents=True)
    spec_json = {"argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                 "display_name": "canetlib wheel", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(spec_json))
    return folder


async def run_alone(path: Path, kernels: Path, workdir: Path,
                    slots: asyncio.Semaphore) -> ChapterRun:
    """Copy ``path`` alone into an empty folder and execute it there with the wheel's kernel."""
    async with slots:
        folder = workdir / path.stem
        folder.mkdir()
        shutil.copy(path, folder / path.name)
        nb = nbformat.read(folder / path.name, as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell(WHERE))
        km = AsyncKernelManager(kernel_name=KERNEL,
                                kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
        client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT, store_widget_state=False,
                                resources={"metadata": {"path": str(folder)}})
        start, error = time.perf_counter(), None
        env = wheelenv.clean_env(CANETLIB_BOOK_CPU="1")  # and OMP_NUM_THREADS=1
        try:
            await client.async_execute(env=env)
        except CellExecutionError as err:
            error = str(err)[-4000:]
        finally:
            if await km.is_alive():
                await km.shutdown_kernel(now=True)
        return ChapterRun(nb, error, time.perf_counter() - start)


@functools.cache
def run_all() -> dict[str, ChapterRun]:
    """Every chapter executed alone, ``PARALLEL`` at a time; by notebook name."""
    wheel = wheelenv.wheel_env()
    workdir = Path(tempfile.mkdtemp(prefix="canetlib-alone-")).resolve()
    kernels = write_kernel_spec(workdir / "kernels", wheel.python)

    async def main() -> list[ChapterRun]:
        slots = asyncio.Semaphore(PARALLEL)
        return await asyncio.gather(*(run_alone(p, kernels, workdir, slots)
                                      for p in toc_notebooks()))

    try:
        runs = asyncio.run(main())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {p.name: r for p, r in zip(toc_notebooks(), runs)}


def comparable(outputs: list[Any]) -> dict[str, list[Any]]:
    """A cell's outputs as strict nbval compares them: streams of one name merged, values by
    key, images left out."""
    flat: dict[str, list[Any]] = defaultdict(list)
    merged = coalesce_streams(copy.deepcopy(outputs))  # it appends to the first stream in place
    for out in transform_streams_for_comparison(merged):
        for key, value in out.items():
            if key == "data":
                for mime, data in value.items():
                    if mime not in SKIP_KEYS:
                        flat[mime].append(data)
            elif key not in SKIP_KEYS:
                flat[key].append(value)
    return dict(flat)


def output_text(outputs: list[Any]) -> str:
    """Every text a cell shows: streams, text data and errors."""
    parts = []
    for out in outputs:
        parts.append(out.get("text", ""))
        parts += [v for k, v in out.get("data", {}).items() if k.startswith("text/")]
        parts.append(out.get("evalue", ""))
    return "\n".join(p if isinstance(p, str) else "".join(p) for p in parts)


def images(outputs: list[Any]) -> int:
    return sum(any(k in out.get("data", {}) for k in IMAGE_KEYS) for out in outputs)


def code_cells(nb: Any) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("name", [p.name for p in toc_notebooks()])
def test_chapter_alone_shows_its_stored_outputs(name: str) -> None:
    run = run_all()[name]
    assert run.error is None, f"{name} failed when run alone:\n{run.error}"
    stored = code_cells(nbformat.read(ROOT / "book" / name, as_version=4))
    *cells, where = code_cells(run.nb)
    assert len(cells) == len(stored)
    problems = []
    for i, (ref, new) in enumerate(zip(stored, cells)):
        text = output_text(new.outputs)
        problems += [f"cell {i}: prints {p!r}" for p in FALLBACK_PHRASES if p in text]
        if images(new.outputs) != images(ref.outputs):
            problems.append(f"cell {i}: {images(new.outputs)} images, stored "
                            f"{images(ref.outputs)}")
        if "nbval-ignore-output" in ref.metadata.get("tags", []):
            continue
        if comparable(new.outputs) != comparable(ref.outputs):
            problems.append(f"cell {i}: output differs from the stored one\n"
                            f"stored: {comparable(ref.outputs)}\nalone:  {comparable(new.outputs)}")
    assert not problems, f"{name} ({run.seconds:.0f} s):\n" + "\n".join(problems)
    # canetlib came from the wheel in the venv, not from the checkout
    venv = str(wheelenv.wheel_env().venv)
    shown = output_text(where.outputs)
    assert f"canetlib from {venv}/" in shown and str(ROOT) not in shown, shown
