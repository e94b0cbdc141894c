"""Settings the book's chapters share: where they run and how big they go.

A chapter calls :func:`profile` once. On a GPU (Colab, say) it gets the
full-size settings; on a CPU, the small configuration that runs a chapter in
about a minute. Tests and CI run the CPU profile, so stored outputs match.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass

import torch

from canetlib.model.runtime import default_device


@dataclass(frozen=True)
class BookProfile:
    """What a chapter may spend: device, episode counts, seeds."""

    device: torch.device
    gpu: bool
    colab: bool
    #: test episodes a chapter evaluates live
    episodes: int
    #: seeds for mean +/- std tables computed live
    seeds: int
    #: shipped checkpoints used by the chapters: CANet on the frozen ImageNet
    #: EfficientNet-Lite0, fold 0 (data/results/imagenet-backbone/README.md)
    checkpoint_1shot: str = "synthetic-imagenet-1shot-fold0"
    checkpoint_5shot: str = "synthetic-imagenet-5shot-fold0"

    def describe(self) -> str:
        where = "Colab GPU" if self.colab and self.gpu else ("GPU" if self.gpu else "CPU")
        return (f"running on {where}: {self.episodes} test episodes per evaluation, "
                f"{self.seeds} seed(s)")


def on_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


def profile(force_cpu: bool | None = None) -> BookProfile:
    """The chapter settings for this machine.

    ``CANETLIB_BOOK_CPU=1`` (set by the tests) forces the CPU profile even on
    a GPU machine so that outputs stay comparable.
    """
    if force_cpu is None:
        force_cpu = os.environ.get("CANETLIB_BOOK_CPU", "") not in ("", "0")
    device = torch.device("cpu") if force_cpu else default_device()
    gpu = device.type == "cuda"
    quiet()
    torch.manual_seed(0)
    if gpu:
        return BookProfile(device, True, on_colab(), episodes=1000, seeds=5)
    # one thread: the book's small CPU workloads run faster on one thread than on several
    torch.set_num_threads(1)
    return BookProfile(device, False, on_colab(), episodes=200, seeds=2)


def quiet() -> None:
    """Silence progress bars and known third-party warnings for clean outputs."""
    os.environ.setdefault("CANETLIB_NO_PROGRESS", "1")
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import matplotlib

    matplotlib.rcParams["figure.dpi"] = 80
