"""The checkout's wheel installed alone into a fresh venv outside the repository, built once.

The venv has no system site-packages. Instead a ``.pth`` file in its site-packages lists the
running interpreter's site-packages (``site.getsitepackages()``), so PyTorch and the other
dependencies are found whether the tests run in a virtual environment or with a global
interpreter. The wheel is installed into the venv itself, whose site-packages comes first on
``sys.path``: its ``canetlib`` wins over the editable install of the checkout. Plain path lines
do not run the ``.pth`` files of the listed folders, so the editable install's import hook is
not loaded either.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import site
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: environment variables that would point a subprocess back at the checkout
LEAKY_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "CANETLIB_CHECKPOINTS")


@dataclass(frozen=True)
class WheelEnv:
    """A built wheel, its file names, and the venv it is installed in."""

    wheel: Path
    members: frozenset[str]
    venv: Path
    python: Path
    site_packages: Path


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the variables that point at the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_VARIABLES}
    env.update(OMP_NUM_THREADS="1", CANETLIB_NO_PROGRESS="1", PYTHONNOUSERSITE="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    env.update(extra)
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    """Run ``cmd``; its stdout, or an assertion error with the end of both streams."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)  # the assert below shows the output
    assert proc.returncode == 0, (f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def build_wheel(workdir: Path) -> Path:
    """Build the wheel from a copy of what it is made of (no stale build/ of the checkout)."""
    src = workdir / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "canetlib", src / "canetlib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = workdir / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", str(dist), str(src)], cwd=workdir, env=clean_env(), timeout=300)
    wheels = list(dist.glob("canetlib-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def make_venv(venv: Path) -> tuple[Path, Path]:
    """A venv without system site-packages that finds this interpreter's packages.

    Returns its python and its site-packages folder.
    """
    env = clean_env()
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv.parent, env=env,
        timeout=120)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    ask = "import sysconfig; print(sysconfig.get_path('purelib'))"
    purelib = Path(run([str(python), "-c", ask], cwd=venv.parent, env=env, timeout=60).strip())
    outer = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "_canetlib_test_outer_site.pth").write_text("\n".join(outer) + "\n")
    return python, purelib


@functools.cache
def wheel_env() -> WheelEnv:
    """The wheel, built and installed into a fresh venv once per test session."""
    workdir = Path(tempfile.mkdtemp(prefix="canetlib-wheel-")).resolve()
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    assert ROOT not in workdir.parents
    wheel = build_wheel(workdir)
    with zipfile.ZipFile(wheel) as whl:
        members = frozenset(whl.namelist())
    venv = workdir / "venv"
    python, purelib = make_venv(venv)
    # the outer pip, run by the venv's python, installs into the venv; --ignore-installed so
    # that it neither uninstalls nor skips for the outer environment's canetlib
    run([str(python), "-m", "pip", "install", "--no-deps", "--ignore-installed", "--no-index",
         str(wheel)], cwd=workdir, env=clean_env(), timeout=300)
    return WheelEnv(wheel, members, venv, python, purelib)
