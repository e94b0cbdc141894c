"""Colours, images and masks as arrays: what every book figure draws, without a figure.

Images may be ImageNet-normalised tensors ``(3, H, W)`` (as episodes hold them),
``uint8`` arrays ``(H, W, 3)`` or PIL images; masks hold 0/1 with 255 = ignore;
probabilities are per-iteration ``(2, H, W)`` maps (background, foreground) or
foreground maps ``(H, W)``. A predicted mask follows the model's rule
(:func:`canetlib.model.outputs.binary_prediction`), and its IoU the evaluator's
(:func:`canetlib.evaluation.metrics.episode_iou`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from canetlib.data.episodes import denormalise_image
from canetlib.data.source import IGNORE_INDEX
from canetlib.evaluation.metrics import episode_iou
from canetlib.model.outputs import binary_prediction

__all__ = [
    "GT_COLOR", "IGNORE_COLOR", "PRED_COLOR", "PROBABILITY_CMAP", "denormalize", "foreground",
    "iou_per_iteration", "mask_array", "mask_iou", "overlay", "predicted_mask", "to_rgb",
]

#: colours of the ground truth (green), of predictions (red) and of ignored pixels (white)
GT_COLOR = (40, 200, 80)
PRED_COLOR = (230, 40, 40)
IGNORE_COLOR = (255, 255, 255)
#: the colour map of foreground probabilities (0 to 1)
PROBABILITY_CMAP = "magma"


def denormalize(image: Tensor) -> np.ndarray:
    """ImageNet-normalised ``(3, H, W)`` (or ``(1, 3, H, W)``) tensor -> ``(H, W, 3)`` uint8."""
    t = image.detach().float().cpu()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image tensor, got shape {tuple(t.shape)}")
    rgb = denormalise_image(t).mul(255).round().byte()
    return rgb.permute(1, 2, 0).numpy()


def to_rgb(image: Any) -> np.ndarray:
    """Any image the book handles -> ``(H, W, 3)`` uint8 (normalised tensors are denormalised)."""
    if torch.is_tensor(image):
        if image.is_floating_point():
            return denormalize(image)
        image = image.cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[2] != 3:
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr[:, :, :3])


def mask_array(mask: Any) -> np.ndarray:
    """A mask (tensor or array, singleton dimensions allowed) as an ``(H, W)`` array."""
    m = mask.detach().cpu().numpy() if torch.is_tensor(mask) else np.asarray(mask)
    m = np.squeeze(m)
    if m.ndim != 2:
        raise ValueError(f"expected a (H, W) mask, got shape {m.shape}")
    return m


def overlay(image: Any, mask: Any, color: Sequence[int] = PRED_COLOR,
            alpha: float = 0.5, show_ignore: bool = False) -> np.ndarray:
    """Blend ``color`` over the pixels where ``mask == 1`` (or ``True``); ``(H, W, 3)`` uint8.

    With ``show_ignore`` the 255 pixels are lightened too.
    """
    rgb = to_rgb(image).astype(np.float32)
    m = mask_array(mask)
    if m.shape != rgb.shape[:2]:
        raise ValueError(f"mask size {m.shape} differs from image size {rgb.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    fg = m == 1 if m.dtype != bool else m
    rgb[fg] = (1 - alpha) * rgb[fg] + alpha * np.asarray(color, dtype=np.float32)
    if show_ignore and m.dtype != bool:
        ign = m == IGNORE_INDEX
        rgb[ign] = 0.5 * rgb[ign] + 0.5 * np.asarray(IGNORE_COLOR, dtype=np.float32)
    return np.clip(rgb, 0, 255).round().astype(np.uint8)


def _probability_maps(probs: Any) -> np.ndarray:
    """``(2, H, W)`` probabilities or an ``(H, W)`` foreground map, from any accepted shape."""
    p = probs.detach().float().cpu().numpy() if torch.is_tensor(probs) else np.asarray(probs)
    if p.ndim == 4:
        p = p[0]
    if p.ndim == 3 and p.shape[0] != 2:
        raise ValueError(f"expected (2, H, W) probabilities, got shape {p.shape}")
    if p.ndim not in (2, 3):
        raise ValueError(f"expected probabilities (2, H, W) or (H, W), got shape {p.shape}")
    return p


def foreground(probs: Any) -> np.ndarray:
    """Foreground probability ``(H, W)`` from ``(2, H, W)``, ``(1, 2, H, W)`` or ``(H, W)``."""
    p = _probability_maps(probs)
    return p[1] if p.ndim == 3 else p


def predicted_mask(probs: Any) -> np.ndarray:
    """The ``(H, W)`` 0/1 mask of ``(2, H, W)`` / ``(1, 2, H, W)`` probabilities, or of a
    foreground map ``(H, W)`` (foreground above 0.5), by the model's rule
    (:func:`canetlib.model.outputs.binary_prediction`)."""
    p = torch.as_tensor(_probability_maps(probs))
    if not p.is_floating_point():
        p = p.float()
    if p.dim() == 2:
        p = torch.stack([1 - p, p])
    return binary_prediction(p[None])[0].numpy()


def mask_iou(pred: Any, gt: Any) -> float:
    """Foreground IoU (%) of a 0/1 (or boolean) mask against ``gt``, 255 ignored (evaluator's)."""
    return episode_iou(np.asarray(pred).astype(np.int64), np.asarray(gt).astype(np.int64))


def iou_per_iteration(probs_per_iteration: Sequence[Any], gt: Any) -> list[float]:
    """Foreground IoU (%) of each iteration's :func:`predicted_mask` against ``gt``.

    255 pixels of ``gt`` are ignored; an empty union counts as 100.
    """
    target = mask_array(gt)
    out = []
    for probs in probs_per_iteration:
        fg = predicted_mask(probs)
        if fg.shape != target.shape:
            raise ValueError(f"probabilities {fg.shape} and ground truth {target.shape} differ "
                             "in size")
        out.append(mask_iou(fg, target))
    return out
