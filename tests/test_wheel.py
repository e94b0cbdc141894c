"""The shipped checkpoints, result files and sample images are package data: found in an
editable install and in an installed wheel (what ``pip install git+...`` gives Colab)."""

from __future__ import annotations

import fnmatch
import re
import shutil
from pathlib import Path

import pytest
import wheelenv

import canetlib
from canetlib.model import checkpoint
from canetlib.teaching.shipped import shipped_path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "canetlib" / "model" / "weights"
#: the package folders of the files the book reads (canetlib.teaching.shipped)
BOOK_DATA = ("teaching/results", "teaching/samples")


def package_data_globs() -> list[str]:
    """``[tool.setuptools.package-data]`` of pyproject.toml as globs relative to ``canetlib/``."""
    tomllib = pytest.importorskip("tomllib")
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [(package.split(".", 1)[1].replace(".", "/") + "/" if "." in package else "") + glob
            for package, globs in cfg["tool"]["setuptools"]["package-data"].items()
            for glob in globs]


def repo_checkpoints() -> list[str]:
    return sorted(p.stem for p in WEIGHTS.glob("*.pt"))


def test_shipped_dir_is_the_package_weights_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CANETLIB_CHECKPOINTS", raising=False)
    folder = checkpoint.shipped_dir()
    assert folder.resolve() == (Path(canetlib.__file__).resolve().parent / "model" / "weights")
    assert checkpoint.shipped_names() == repo_checkpoints()
    assert {"synthetic-1shot-fold0", "synthetic-5shot-fold0",
            "synthetic-backbone"} <= set(checkpoint.shipped_names())
    assert checkpoint.resolve("synthetic-1shot-fold0") == folder / "synthetic-1shot-fold0.pt"
    assert (folder / "README.md").is_file()  # chapter 6 reads the commands from it


def test_environment_variable_still_overrides(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(WEIGHTS / "synthetic-1shot-fold0.pt", tmp_path / "mine.pt")
    monkeypatch.setenv("CANETLIB_CHECKPOINTS", str(tmp_path))
    assert checkpoint.shipped_dir() == tmp_path
    assert checkpoint.shipped_names() == ["mine"]
    assert checkpoint.resolve("mine") == tmp_path / "mine.pt"
    with pytest.raises(FileNotFoundError, match="shipped: mine"):
        checkpoint.resolve("synthetic-5shot-fold0")


def test_every_checkpoint_in_the_folder_is_package_data() -> None:
    globs = package_data_globs()
    for path in sorted(WEIGHTS.iterdir()):
        if path.suffix in (".pt", ".md"):
            rel = path.relative_to(ROOT / "canetlib").as_posix()
            assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{rel} would not ship"
    assert "model/weights/*.pt" in globs  # a new NAME.pt ships without touching pyproject.toml
    # nothing shipped is left behind in the old folder, which is not in the wheel
    assert not list((ROOT / "data" / "checkpoints").glob("*.pt"))


def book_data_files() -> list[str]:
    """The files of ``canetlib/teaching/results`` and ``samples``, relative to ``canetlib/``."""
    package = ROOT / "canetlib"
    return sorted(p.relative_to(package).as_posix() for folder in BOOK_DATA
                  for p in (package / folder).rglob("*") if p.is_file())


def test_every_file_the_book_reads_is_package_data() -> None:
    globs = package_data_globs()
    files = book_data_files()
    assert ("teaching/samples/query.png" in files
            and "teaching/results/gpu/bench_cuda.json" in files)
    for rel in files:
        assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{rel} would not ship"
        assert shipped_path(rel.removeprefix("teaching/")) == ROOT / "canetlib" / rel
    # the chapters read these through canetlib.teaching.shipped, not from the repository's data/
    assert not list((ROOT / "data").glob("samples/*"))
    assert not list((ROOT / "data" / "results").glob("imagenet-backbone/fold*/[15]shot*.json"))


def test_shipped_path_names_what_is_missing() -> None:
    with pytest.raises(FileNotFoundError, match="canetlib/teaching/results/nothing.json"):
        shipped_path("results/nothing.json")
    for bad in ("../README.md", "/etc/passwd", ""):
        with pytest.raises(ValueError, match="inside the canetlib package"):
            shipped_path(bad)


CHECK = r"""
import math, sys
from pathlib import Path

import canetlib
from canetlib.model import checkpoint
from canetlib.training import pretrain
from canetlib.teaching import report
from canetlib.teaching.table3 import load_table3
from canetlib.data import make_dataset
from canetlib.evaluation import evaluate
from canetlib.teaching.shipped import shipped_path

prefix = Path(sys.prefix).resolve()
here = Path(canetlib.__file__).resolve()
assert prefix in here.parents, f"canetlib imported from {here}, not from the venv {prefix}"
assert prefix in checkpoint.shipped_dir().resolve().parents, checkpoint.shipped_dir()
for rel in ("results/imagenet-backbone", "samples/query.png", "samples/README.md"):
    assert prefix in shipped_path(rel).resolve().parents, shipped_path(rel)
assert len(report.read_results(shipped_path("results/imagenet-backbone"))) >= 8
assert len(load_table3()) == 7
names = checkpoint.shipped_names()
assert names == sys.argv[1:], (names, sys.argv[1:])
data = make_dataset("synthetic", fold=0, split="test", shots=1, episodes=1, seed=0)
for name in names:
    ckpt = checkpoint.load(name)
    if ckpt.get("kind") == checkpoint.BACKBONE_KIND:  # a backbone only: give it a fresh head
        config = {"fusion": None, "width": 64, "iterations": 4, "dropout": 0.0,
                  **ckpt["model_config"]}
        model = pretrain.load_backbone(checkpoint.build_model(config), name).eval()
    else:
        model = checkpoint.load_model(name)
    result = evaluate(model, data, iterations=1, input_size=128)
    assert result["episodes"] == 1 and math.isfinite(result["miou"]), result
    assert 0.0 <= result["miou"] <= 100.0, result
    print(f"{name}: 1-shot episode, IoU {result['miou']:.1f}")
print("from", here)
"""


@pytest.mark.slow
def test_installed_wheel_loads_every_shipped_checkpoint(tmp_path: Path) -> None:
    """Build the wheel, install it alone into a fresh venv outside the repository, and from
    outside the repository load every shipped checkpoint and run a 1-shot episode with it;
    the result files and sample images the book reads are found in the venv too."""
    wheel = wheelenv.wheel_env()
    expected = repo_checkpoints()
    assert expected
    for name in expected:
        assert f"canetlib/model/weights/{name}.pt" in wheel.members, f"{name}.pt is not in the wheel"
    for rel in ("model/weights/README.md", *book_data_files()):
        assert f"canetlib/{rel}" in wheel.members, f"{rel} is not in the wheel"

    assert ROOT not in tmp_path.resolve().parents
    (tmp_path / "check.py").write_text(CHECK)
    out = wheelenv.run([str(wheel.python), "check.py", *expected], cwd=tmp_path,
                       env=wheelenv.clean_env(), timeout=300)
    for name in expected:
        line = rf"^{re.escape(name)}: 1-shot episode, IoU [\d.]+$"
        assert re.search(line, out, re.MULTILINE), out
    assert str(wheel.venv) in out
