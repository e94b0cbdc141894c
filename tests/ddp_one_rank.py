"""Helper of tests/test_cuda.py: the trainer under a one-rank nccl process group.

``torchrun --nproc_per_node=1`` starts no process group (one process needs
none), so on a one-GPU machine this script starts a one-rank nccl group
itself, checks that the trainer wraps the model in DistributedDataParallel
inside it, and trains three steps. Usage: ``python tests/ddp_one_rank.py OUT``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.parallel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import tiny_config

from canetlib.training.recipe import train


def main(out: str) -> int:
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=0, world_size=1)
    print(f"backend {dist.get_backend()}")
    wrapped: list[int] = []

    class SpyDDP(torch.nn.parallel.DistributedDataParallel):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            wrapped.append(1)
            super().__init__(*args, **kwargs)

    torch.nn.parallel.DistributedDataParallel = SpyDDP  # type: ignore[misc]
    try:
        res = train(tiny_config(), out, max_steps=3, device="cuda:0", progress=False)
    finally:
        dist.destroy_process_group()
    assert wrapped == [1], "the trainer did not use DistributedDataParallel"
    print(f"ddp steps {res.step} losses {[round(x, 4) for x in res.losses]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
