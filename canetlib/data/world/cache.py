"""Where the world keeps what it computed: the disk cache folder and the in-memory caches.

* :func:`cache_root`: canetlib's disk cache folder (rasterised glyphs, pair lists);
  :func:`write_cache_file` writes into it atomically and never fails a run;
* :func:`cached_scene`: the composed scenes most recently used (an LRU of
  ``RENDER_CACHE_SIZE`` entries);
* :func:`cached_pairs`: every pool's (image, class) pair list, in memory and on disk.

Keys start with a world's fingerprint, so worlds of other settings never share
an entry.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from canetlib.model.files import write_atomic

#: composed scenes kept in memory (about 0.2 MB each)
RENDER_CACHE_SIZE = 512

Pair = tuple[str, int]


def cache_root() -> Path | None:
    """canetlib's disk cache: ``$CANETLIB_CACHE``, else ``$XDG_CACHE_HOME/canetlib``, else
    ``~/.cache/canetlib``. ``CANETLIB_CACHE=""`` disables the disk cache."""
    env = os.environ.get("CANETLIB_CACHE")
    if env is not None:
        return Path(env).expanduser() if env.strip() else None
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "canetlib"


def write_cache_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; silently skip if it cannot be written
    (the disk cache is an optimisation, never a requirement)."""
    try:
        write_atomic(path, data)
    except OSError:
        pass


@dataclass
class Scene:
    """One composed world image: pixels, semantic mask, visible-object map and the
    class of each object (``objmap == k`` shows object ``k``, of class ``classes[k - 1]``)."""

    image: np.ndarray
    semantic: np.ndarray
    objmap: np.ndarray
    classes: tuple[int, ...]


_SCENES: OrderedDict[tuple[str, str], Scene] = OrderedDict()
_PAIRS: dict[tuple[str, str], list[Pair]] = {}


def cached_scene(key: tuple[str, str], render: Callable[[], Scene]) -> Scene:
    """The scene under ``key`` (fingerprint, image id), rendered by ``render`` when it
    is not among the ``RENDER_CACHE_SIZE`` most recently used."""
    scene = _SCENES.get(key)
    if scene is not None:
        _SCENES.move_to_end(key)
        return scene
    scene = render()
    _SCENES[key] = scene
    while len(_SCENES) > RENDER_CACHE_SIZE:
        _SCENES.popitem(last=False)
    return scene


def _read_pairs(file: Path | None) -> list[Pair] | None:
    if file is not None and file.is_file():
        try:
            return [(str(i), int(c)) for i, c in json.loads(file.read_text())]
        except (OSError, ValueError, TypeError):
            pass
    return None


def cached_pairs(key: tuple[str, str], file: Path | None,
                 compute: Callable[[], list[Pair]]) -> list[Pair]:
    """A copy of the pair list under ``key`` (fingerprint, split): from memory, else
    from ``file`` (when given and readable), else ``compute()`` (then written to ``file``)."""
    if key not in _PAIRS:
        pairs = _read_pairs(file)
        if pairs is None:
            pairs = compute()
            if file is not None:
                write_cache_file(file, json.dumps(pairs).encode())
        _PAIRS[key] = pairs
    return list(_PAIRS[key])


def clear_scene_caches() -> None:
    """Forget every in-memory scene and pair list (the disk cache stays)."""
    _SCENES.clear()
    _PAIRS.clear()
