"""Processes of a run: one without torchrun, one per GPU (or CPU slot) under it.

:func:`start_processes` picks the device and starts the process group when
torchrun asks for several processes (nccl on CUDA, gloo on CPU); a group the
caller started is used as it is and left running. :func:`all_gather`
concatenates per-rank tensors in rank order and :func:`mean_over_ranks`
averages them (both no-ops in one process).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor

from canetlib.model.runtime import default_device


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


#: a run without torchrun: rank 0 of 1
ONE_PROCESS = DistInfo()


def dist_info() -> DistInfo:
    """The caller's process group if one is running, else torchrun's
    ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(),
                        int(os.environ.get("LOCAL_RANK", "0")))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ.get("RANK", "0")), world,
                    int(os.environ.get("LOCAL_RANK", "0")))


def init_distributed(info: DistInfo, device: torch.device) -> bool:
    """Start the process group (nccl on CUDA, gloo on CPU); False without torchrun.

    A group the caller started (of any size, one process too) is used as it is.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return True
    if info.world <= 1:
        return False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def needs_group(info: DistInfo) -> bool:
    """True when the run must start (and therefore end) the process group itself."""
    import torch.distributed as dist

    return info.world > 1 and not dist.is_initialized()


def all_gather(t: Tensor, info: DistInfo) -> Tensor:
    """Concatenate equal-shaped tensors of every rank along dim 0 (rank order)."""
    import torch.distributed as dist

    if info.world <= 1:
        return t
    parts = [torch.empty_like(t) for _ in range(info.world)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=0)


def mean_over_ranks(t: Tensor, info: DistInfo) -> Tensor:
    """The mean of ``t`` over every rank (``t`` itself in one process)."""
    import torch.distributed as dist

    if info.world <= 1:
        return t
    t = t.clone()
    dist.all_reduce(t)
    t /= info.world
    return t


@dataclass(frozen=True)
class Processes:
    """What :func:`start_processes` set up."""

    info: DistInfo
    device: torch.device
    #: a process group is running (the model is wrapped in DistributedDataParallel)
    distributed: bool
    #: this run started the group, so :func:`end_processes` destroys it
    owns_group: bool


def start_processes(device: str | torch.device | None = None,
                    threads: int | None = None) -> Processes:
    """Threads, device (``LOCAL_RANK``'s GPU under torchrun) and the process group."""
    info = dist_info()
    if threads:
        torch.set_num_threads(threads)
    if device is None and info.world > 1 and torch.cuda.is_available():
        device = f"cuda:{info.local_rank}"
    dev = default_device(device)
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)
    owns_group = needs_group(info)
    distributed = init_distributed(info, dev)
    return Processes(info, dev, distributed, owns_group)


def end_processes(procs: Processes) -> None:
    """Wait for every rank; destroy the group if this run started it."""
    if not procs.distributed:
        return
    import torch.distributed as dist

    dist.barrier()
    if procs.owns_group:
        dist.destroy_process_group()


__all__ = ["ONE_PROCESS", "DistInfo", "Processes", "all_gather", "dist_info", "end_processes",
           "init_distributed", "mean_over_ranks", "needs_group", "start_processes"]
