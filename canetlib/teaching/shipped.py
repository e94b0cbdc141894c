"""Files shipped inside the package: result files the book quotes and its sample images.

They are package data of :mod:`canetlib.teaching` (``results/...``, ``samples/...``), so a
wheel carries them and a notebook opened alone finds them::

    shipped_path("results/imagenet-backbone")   # a folder of ``evaluate --json`` files
    shipped_path("samples/query.png")            # a sample image

Experiments that no chapter reads, and the READMEs saying how each result was made, stay in
the repository's ``data/results/``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path, PurePosixPath


def package_root() -> Path:
    """The folder of :mod:`canetlib.teaching` (the shipped files' root) on the file system."""
    root = resources.files("canetlib.teaching")
    if isinstance(root, Path):
        return root
    return Path(__file__).resolve().parent  # not a plain file system (a zip import, say)


def shipped_path(relative: str) -> Path:
    """The shipped file or folder ``canetlib/teaching/RELATIVE`` (a ``/``-separated path).

    Raises:
        ValueError: ``relative`` is absolute or leaves the package.
        FileNotFoundError: nothing is shipped there (the message names the file).
    """
    parts = PurePosixPath(relative).parts
    if not parts or parts[0] == "/" or ".." in parts:
        raise ValueError(f"{relative!r}: give a path inside the canetlib package")
    path = package_root().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f"canetlib/teaching/{relative} is not in the installed package ({path}): reinstall canetlib, "
            "or check the name against the package data in pyproject.toml")
    return path
