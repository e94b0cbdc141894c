"""The book's run settings and its Colab wiring (no Colab or GPU needed)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch
import yaml

from canetlib.teaching import profile as book

ROOT = Path(__file__).resolve().parents[1]


def chapters() -> list[Path]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [ROOT / f"{f}.ipynb" for f in files if (ROOT / f"{f}.ipynb").is_file()]


def test_cpu_profile_is_small_and_forced_by_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("CANETLIB_NO_PROGRESS", "1")  # profile() sets it; restored afterwards
    monkeypatch.setattr(book, "default_device", lambda: torch.device("cuda"))
    monkeypatch.setenv("CANETLIB_BOOK_CPU", "1")
    p = book.profile()
    assert (p.device.type, p.gpu, p.episodes, p.seeds) == ("cpu", False, 200, 2)
    assert torch.get_num_threads() == 1
    assert p.describe().startswith("running on CPU")


def test_gpu_and_colab_get_the_full_budget(monkeypatch) -> None:
    monkeypatch.setenv("CANETLIB_NO_PROGRESS", "1")
    monkeypatch.delenv("CANETLIB_BOOK_CPU", raising=False)
    monkeypatch.setattr(book, "default_device", lambda: torch.device("cuda"))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    p = book.profile()
    assert (p.gpu, p.colab, p.episodes, p.seeds) == (True, True, 1000, 5)
    assert p.describe().startswith("running on Colab GPU")


def test_launch_buttons_point_to_colab_and_the_repository() -> None:
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert cfg["repository"]["url"].startswith("https://github.com/")
    assert cfg["execute"]["allow_errors"] is False


@pytest.mark.parametrize("path", chapters(), ids=lambda p: p.stem)
def test_every_chapter_installs_only_on_colab_and_keeps_colab_torch(path: Path) -> None:
    nb = json.loads(path.read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    first = code[0]
    assert 'if "google.colab" in sys.modules:' in first
    install = [line for line in first.splitlines() if "pip install" in line]
    assert len(install) == 1 and "canetlib" in install[0]
    assert "torch" not in install[0]  # Colab's own torch stays
    assert "profile()" in first
    assert not any("pip install" in c for c in code[1:])


@pytest.mark.parametrize("path", chapters(), ids=lambda p: p.stem)
def test_every_chapter_is_stored_executed_top_to_bottom(path: Path) -> None:
    """The pages are built from the stored outputs (``execute_notebooks: off``): each chapter
    must be stored as one fresh run made them, which strict nbval then re-checks."""
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1))
    assert not any(c["outputs"] and c["outputs"][0].get("output_type") == "error" for c in code)
    # no widget state: myst-nb would load a widget manager from a CDN for it
    assert "widgets" not in nb["metadata"]
    assert not any("execution" in c["metadata"] for c in nb["cells"])  # no timestamps


def test_the_book_is_built_from_stored_outputs() -> None:
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert "book/**" in cfg["sphinx"]["config"]["include_patterns"]  # never a .venv in the clone
    assert ".venv/**" in cfg["exclude_patterns"]
