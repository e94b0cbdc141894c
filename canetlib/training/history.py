"""The IOM's history memory during training (paper section 4.2).

While training, the iterative optimization module's mask input for a sample is
*that sample's prediction from the previous epoch*, replaced by the empty mask
with probability ``pr`` ("mask dropout", 0.7 in the paper) so that the module
does not learn to copy a good mask and still copes with the empty mask it gets
at test time. :class:`HistoryMemory` keeps those predictions per episode index;
:func:`keep_history` draws the dropout coins, seeded by ``(seed, epoch, index)``
so a resumed run, or one with another number of processes, drops the same masks.

The memory lives in the trainer's process, not in data-loader workers; under
torchrun every process adds the predictions of all of them (all-gathered), and
it is saved in every checkpoint, so a resumed run feeds the same history.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from canetlib.training.engine.seeding import mix_seed


def keep_history(indices: Sequence[int], pr: float, seed: int, epoch: int) -> Tensor:
    """Mask dropout (section 4.2): ``(B,)`` booleans, False (= empty mask) with
    probability ``pr``; each coin is seeded by ``(seed, epoch, index)``."""
    coins = [torch.rand(1, generator=torch.Generator().manual_seed(
        mix_seed(seed, epoch, idx, 7))).item() for idx in indices]
    return torch.tensor([c >= pr for c in coins], dtype=torch.bool)


class HistoryMemory:
    """Last epoch's prediction of every episode index (the IOM input, section 4.2).

    Stores the foreground probability ``(N, h, w)`` at the feature-grid size
    (float16) and whether an index has a prediction yet. :meth:`inputs` turns
    it into the 2-channel IOM input, replacing each sample's mask by the empty
    (all-zero) mask with probability ``pr``; the coin is seeded by
    ``(seed, epoch, index)`` so it does not depend on the process layout.
    """

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self.fg: Tensor | None = None
        self.valid = torch.zeros(self.size, dtype=torch.bool)

    def inputs(self, indices: Sequence[int], pr: float, seed: int, epoch: int,
               device: torch.device) -> Tensor | None:
        """IOM history ``(B, 2, h, w)`` for a batch of episode indices.

        ``None`` (= the empty mask for every sample) before the first prediction.
        """
        if self.fg is None:
            return None
        out = torch.zeros(len(indices), 2, *self.fg.shape[-2:])
        keep = keep_history(indices, pr, seed, epoch)
        for row, idx in enumerate(indices):
            if not (bool(self.valid[idx]) and bool(keep[row])):
                continue
            fg = self.fg[idx].float()
            out[row, 0] = 1.0 - fg
            out[row, 1] = fg
        return out.to(device)

    def update(self, indices: Tensor, fg: Tensor) -> None:
        """Remember this epoch's foreground probabilities ``(B, h, w)``."""
        if self.fg is None:
            self.fg = torch.zeros(self.size, *fg.shape[-2:], dtype=torch.float16)
        idx = indices.long().cpu()
        self.fg[idx] = fg.detach().to("cpu", torch.float16)
        self.valid[idx] = True

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "fg": self.fg, "valid": self.valid.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["size"]) != self.size:
            raise ValueError(f"history memory holds {state['size']} episodes, "
                             f"this run has {self.size} per epoch")
        self.fg = state["fg"]
        self.valid = state["valid"].clone()


__all__ = ["HistoryMemory", "keep_history"]
