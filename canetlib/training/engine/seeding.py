"""Seeds mixed from integers, and every RNG state as a ``weights_only``-safe value.

:func:`mix_seed` is the one way a run derives randomness: the data order of an
epoch from ``(seed, epoch)``, an episode from ``(seed, epoch, index)``, the
dropout masks of a step from ``(seed, step, rank)`` (:func:`reseed_step`).
:func:`rng_state` / :func:`set_rng_state` carry the global generators through a
checkpoint for whatever still draws from them.
"""

from __future__ import annotations

import hashlib
import random
import struct
from typing import Any

import numpy as np
import torch


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes and Python versions)."""
    data = struct.pack(f"<{len(parts)}q", *[int(p) for p in parts])
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


def reseed_step(seed: int, step: int, rank: int = 0) -> None:
    """Seed torch's global generator for step ``step`` (0-based) of process ``rank``.

    Called right before the forward pass, so the model's random layers
    (``Dropout2d``) draw the same masks whether the run was resumed or not.
    """
    torch.manual_seed(mix_seed(seed, step, rank, 3))


def rng_state() -> dict[str, Any]:
    """torch CPU/CUDA, numpy and python RNG states as ``weights_only``-safe values."""
    np_state: Any = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached": float(np_state[4])},
        "python": {"version": int(py_state[0]),
                   "state": torch.tensor(py_state[1], dtype=torch.int64),
                   "gauss": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


__all__ = ["mix_seed", "reseed_step", "rng_state", "set_rng_state"]
