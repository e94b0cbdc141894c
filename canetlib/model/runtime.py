"""Device, precision and progress-bar choices shared by trainer, evaluator and book."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

import torch

T = TypeVar("T")


def as_device(device: str | torch.device, name: str = "device") -> torch.device:
    """``device`` as a :class:`torch.device`; a string torch does not know is refused naming
    ``name``."""
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(f"{name} {device!r} is not a device torch knows; use cpu, cuda or "
                         "cuda:N (or mps on a Mac)") from err


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device is not None:
        check_device(str(device), "device")
        return as_device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_device(device: str | None, name: str = "--device") -> None:
    """Refuse a ``device`` torch does not know, and a CUDA one when this machine has no
    usable CUDA device."""
    if device is None or as_device(device, name).type != "cuda":
        return
    if not torch.cuda.is_available():
        hint = (f"use {name} cpu or leave {name} out" if name.startswith("--")
                else f"use {name}='cpu'")
        raise ValueError(f"{name} {device}: no CUDA device is available (torch.cuda.is_available() "
                         f"is False); {hint}")
    index = torch.device(device).index
    if index is not None and index >= torch.cuda.device_count():
        raise ValueError(f"{name} {device}: this machine has {torch.cuda.device_count()} CUDA "
                         f"device(s), numbered from 0")


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA cards that support it, fp16 on older ones, none on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, enabled: bool | None = None) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA (``enabled=None`` = on for CUDA), a no-op on CPU."""
    dtype = amp_dtype(device)
    if dtype is None or enabled is False:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def progress_enabled(requested: bool = True) -> bool:
    """Progress bars are off under tests/CI (``CANETLIB_NO_PROGRESS=1``) or when asked."""
    if os.environ.get("CANETLIB_NO_PROGRESS", "") not in ("", "0"):
        return False
    return requested


def progress(it: Iterable[T], enabled: bool = True, **kwargs: object) -> Iterator[T]:
    """``tqdm`` over ``it`` when progress is enabled, the plain iterable otherwise."""
    if not progress_enabled(enabled):
        yield from it
        return
    from tqdm.auto import tqdm

    yield from tqdm(it, file=sys.stderr, **kwargs)  # type: ignore[call-overload]


#: intra-op threads when neither ``--threads`` nor ``OMP_NUM_THREADS`` says: one thread does
#: not wait on cores that another job holds (see the README's "Speed" section)
DEFAULT_THREADS = 1


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads and return the number in use.

    ``threads`` wins; else ``OMP_NUM_THREADS`` (which torch already honours) is
    kept; else :data:`DEFAULT_THREADS` (at most the machine's cores).
    """
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    elif not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(max(1, min(DEFAULT_THREADS, os.cpu_count() or 1)))
    return torch.get_num_threads()
