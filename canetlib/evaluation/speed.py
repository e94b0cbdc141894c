"""How the evaluator runs a model fast, and where its time goes.

:func:`inference_setup` puts a model in its fastest exact form for the length
of an evaluation and restores it afterwards:

* eval mode, under ``torch.inference_mode()`` (set by the caller);
* ``channels_last`` weights and images, on the CPU as on CUDA (oneDNN's
  convolutions are faster in that layout; same numbers up to float rounding);
* the frozen backbone's BatchNorm folded into its convolutions
  (:func:`canetlib.model.fold.fold_batchnorm`, on a temporary copy);
* mixed precision: AMP on CUDA (bf16 or fp16), and on request bf16 autocast on
  CPUs with native bf16 instructions (:func:`cpu_bf16_supported`); mixed
  precision changes the numbers slightly, so it is opt-in on the CPU.

:class:`StageTimes` splits an evaluation's wall time into data loading, the
backbone (forward hooks on it), the head (encoder, comparison, IOM passes) and
the metric bookkeeping: ``bench --eval-episodes`` and ``evaluate --json`` report it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from canetlib.model.fold import fold_batchnorm
from canetlib.model.runtime import autocast

__all__ = ["Precision", "StageTimes", "cpu_bf16_supported", "inference_setup",
           "resolve_precision"]

#: "fp32", "amp" (CUDA mixed precision) or "bf16" (bf16 autocast on the CPU)
Precision = str


def cpu_bf16_supported() -> bool:
    """Whether this CPU has native bf16 instructions oneDNN uses (AVX512-BF16 / AMX)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


def resolve_precision(dev: torch.device, amp: bool | None, bf16: bool) -> Precision:
    """The precision an evaluation on ``dev`` runs in (clear error for an impossible ask)."""
    if bf16:
        if dev.type != "cpu":
            raise ValueError("bf16=True is the CPU's mixed precision; on CUDA use amp "
                             "(bf16 where the card supports it)")
        if not cpu_bf16_supported():
            raise ValueError("bf16=True needs a CPU with native bf16 instructions "
                             "(AVX512-BF16 or AMX); this one has none")
        return "bf16"
    return "amp" if dev.type == "cuda" and (amp is None or bool(amp)) else "fp32"


@dataclass
class StageTimes:
    """Seconds spent in each stage of an evaluation (wall clock, summed over batches)."""

    data: float = 0.0
    backbone: float = 0.0
    model: float = 0.0
    metrics: float = 0.0
    total: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """Seconds of ``data``, ``backbone``, ``head`` (the model's time minus the
        backbone's), ``metrics`` and ``total``, rounded to 0.1 ms."""
        out = asdict(self)
        out["head"] = max(self.model - self.backbone, 0.0)
        del out["model"]
        return {k: round(v, 4) for k, v in out.items()}


@contextmanager
def _timed(module: nn.Module, times: StageTimes, dev: torch.device) -> Iterator[None]:
    """Add the time of every forward of ``module`` to ``times.backbone``."""
    starts: list[float] = []

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def before(_m: nn.Module, _args: Any) -> None:
        sync()
        starts.append(time.perf_counter())

    def after(_m: nn.Module, _args: Any, _out: Any) -> None:
        sync()
        times.backbone += time.perf_counter() - starts.pop()

    handles = [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def inference_setup(model: Any, dev: torch.device, precision: Precision,
                    times: StageTimes | None = None, channels_last: bool = True,
                    fold_bn: bool = True) -> Iterator[None]:
    """``model`` on ``dev`` in its fast inference form for the block (see the module
    docstring); its training flag, memory format and backbone are restored
    afterwards, whatever happens. ``times`` collects the backbone's seconds."""
    was_training = model.training
    was_cl = bool(getattr(model, "_channels_last", False))
    model.to(dev).eval()
    backbone = getattr(model, "backbone", None)
    swap = fold_bn and isinstance(backbone, nn.Module) and any(
        isinstance(m, nn.BatchNorm2d) for m in backbone.modules())
    if swap:
        model.backbone = fold_batchnorm(backbone)
    cl = channels_last and hasattr(model, "use_channels_last")
    if cl and not was_cl:
        model.use_channels_last(True)
    timing = _timed(model.backbone, times, dev) if times is not None and isinstance(
        getattr(model, "backbone", None), nn.Module) else nullcontext()
    try:
        with timing, _precision(dev, precision):
            yield
    finally:
        if cl and not was_cl:
            model.use_channels_last(False)
        if swap:
            model.backbone = backbone
        model.train(was_training)


def _precision(dev: torch.device, precision: Precision) -> Any:
    if precision == "amp":
        return autocast(dev, True)
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()
