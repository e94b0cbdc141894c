"""The shipped checkpoints are package data: found in an editable install and in an
installed wheel (what ``pip install git+...`` gives Colab)."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import canetlib
from canetlib import checkpoint

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "canetlib" / "weights"


def package_data_globs() -> list[str]:
    """The ``canetlib`` entry of ``[tool.setuptools.package-data]`` in pyproject.toml."""
    tomllib = pytest.importorskip("tomllib")
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return cfg["tool"]["setuptools"]["package-data"]["canetlib"]


def repo_checkpoints() -> list[str]:
    return sorted(p.stem for p in WEIGHTS.glob("*.pt"))


def test_shipped_dir_is_the_package_weights_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CANETLIB_CHECKPOINTS", raising=False)
    folder = checkpoint.shipped_dir()
    assert folder.resolve() == (Path(canetlib.__file__).resolve().parent / "weights")
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
    assert "weights/*.pt" in globs  # a new NAME.pt ships without touching pyproject.toml
    # nothing shipped is left behind in the old folder, which is not in the wheel
    assert not list((ROOT / "data" / "checkpoints").glob("*.pt"))


CHECK = r'''
import math, sys
from pathlib import Path

import canetlib
from canetlib import checkpoint, pretrain
from canetlib.data import make_dataset
from canetlib.evaluate import evaluate

prefix = Path(sys.prefix).resolve()
here = Path(canetlib.__file__).resolve()
assert prefix in here.parents, f"canetlib imported from {here}, not from the venv {prefix}"
assert prefix in checkpoint.shipped_dir().resolve().parents, checkpoint.shipped_dir()
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
'''


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)  # the assert below shows the output
    assert proc.returncode == 0, (f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


@pytest.mark.slow
def test_installed_wheel_loads_every_shipped_checkpoint(tmp_path: Path) -> None:
    """Build the wheel, install it alone into a fresh venv outside the repository, and from
    outside the repository load every shipped checkpoint and run a 1-shot episode with it."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "CANETLIB_CHECKPOINTS", "PYTHONHOME")}
    env.update(OMP_NUM_THREADS="1", CANETLIB_NO_PROGRESS="1", PYTHONNOUSERSITE="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    assert ROOT not in tmp_path.resolve().parents

    # build from a copy of what the wheel is made of: no stale build/ folder of the checkout
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "canetlib", src / "canetlib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "-w", str(dist), str(src)], cwd=tmp_path, env=env, timeout=300)
    wheels = list(dist.glob("canetlib-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as whl:
        members = set(whl.namelist())
    expected = repo_checkpoints()
    assert expected
    for name in expected:
        assert f"canetlib/weights/{name}.pt" in members, f"{name}.pt is not in the wheel"
    assert "canetlib/weights/README.md" in members

    # a fresh venv; it sees the system site-packages (torch, ...), where the editable
    # canetlib also is: the venv's own copy must win
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
         cwd=tmp_path, env=env, timeout=120)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # the system's pip, run by the venv's python, installs into the venv; --ignore-installed
    # so that it neither uninstalls nor skips for the editable install of the system
    _run([str(python), "-m", "pip", "install", "--no-deps", "--ignore-installed", "--no-index",
          str(wheels[0])], cwd=tmp_path, env=env, timeout=300)

    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    (run_dir / "check.py").write_text(CHECK)
    out = _run([str(python), "check.py", *expected], cwd=run_dir, env=env, timeout=300)
    for name in expected:
        assert re.search(rf"^{re.escape(name)}: 1-shot episode, IoU [\d.]+$", out, re.MULTILINE), out
    assert str(venv.resolve()) in out
