"""Segment your own images: k support images with masks or boxes, one query.

:func:`segment_images` is what the book's "segment your own image" page and
``python -m canetlib segment`` call. Images may be PIL images, ``uint8``
arrays ``(H, W, 3)`` or file paths; support annotations may be masks (PIL,
arrays, PNG paths) or boxes ``(x0, y0, x1, y1)`` in pixels (paper section
4.4: the whole box counts as the object).

Like the evaluator, query and supports are resized to a square model input
(``size``, default 321 as the reference) and the probabilities of every IOM
iteration are upsampled back to the query's original size, by the inference
path of :meth:`CANet.predict` (:func:`canetlib.model.inference.episode_maps`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from canetlib.data.episodes import image_to_tensor
from canetlib.data.imageio import (
    is_jpeg,
    jpeg_values,
    mask_problem,
    open_upright,
    read_image,
    upright,
)
from canetlib.evaluation import REFERENCE_INPUT_SIZE, resize_episode
from canetlib.model import CANet
from canetlib.model.inference import episode_maps
from canetlib.model.inputs import IGNORE_INDEX, box_to_mask, check_iterations, check_size
from canetlib.model.outputs import binary_prediction, resize_maps

__all__ = [
    "MASK_RULE", "Segmentation", "as_mask", "as_rgb", "check_jpeg_mask", "check_outputs",
    "load_mask",
    "model_for_shots",
    "overlay_path", "run_segmentation", "segment_images", "write_outputs",
]

#: how a mask file or array is read (quoted when a mask marks no object)
MASK_RULE = ("the object is 1 in a 0/1 mask (255 = ignore), >= 128 in a gray-level mask "
             "such as 0/255, and any nonzero index in a palette PNG; binarise a "
             "class-index mask first (mask == class)")

ImageLike = Image.Image | np.ndarray | str | os.PathLike[str]
Annotation = Image.Image | np.ndarray | Tensor | Sequence[float] | str | os.PathLike[str]


@dataclass
class Segmentation:
    """Result of :func:`run_segmentation`.

    Attributes:
        mask: ``(H, W)`` uint8, 1 = object, at the query's original size.
        probs: foreground probability ``(H, W)`` float32 of every IOM iteration
            (index 0 = CANet-Init, last = ``mask``'s iteration).
        attention: the k attention weights (attention fusion only).
        fusion: the k-shot fusion used (``None`` for 1-shot).
        note: what was changed automatically (e.g. Mask-Avg for k > 1), or ``""``.
    """

    mask: np.ndarray
    probs: list[np.ndarray]
    attention: np.ndarray | None
    fusion: str | None
    note: str = ""


# -- inputs --------------------------------------------------------------------
def as_rgb(image: ImageLike, name: str = "image") -> np.ndarray:
    """A PIL image, array or path -> ``(H, W, 3)`` uint8 (files named in errors)."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return np.asarray(upright(image).convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"{name}: expected an RGB image (H, W, 3), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8 pixels, got {arr.dtype}")
    return np.ascontiguousarray(arr[:, :, :3])


def as_model_rgb(image: ImageLike, name: str) -> np.ndarray:
    """:func:`as_rgb`, refusing images smaller than the model's grid
    (:data:`canetlib.model.inputs.MIN_SIDE`)."""
    rgb = as_rgb(image, name)
    named = f"{name} {image}" if isinstance(image, (str, os.PathLike)) else name
    check_size(rgb.shape[0], rgb.shape[1], named)
    return rgb


def load_mask(path: str | os.PathLike[str], name: str = "mask file") -> np.ndarray:
    """Read a mask image: palette PNGs give their indices, other modes their gray levels;
    a file that is no single-channel mask is refused naming the likely cause."""
    with open_upright(path, "mask file") as img:
        arr = _mask_values(img, f"{name} {path}")
        if is_jpeg(img):
            check_jpeg_mask(arr, f"{name} {path}")
    return arr


def _mask_values(img: Image.Image, named: str) -> np.ndarray:
    """The stored values of the decoded mask ``img`` (palette: 0/1/255 from its indices)."""
    problem = mask_problem(img)
    if problem is not None:
        raise ValueError(f"{named}: {problem}")
    if img.mode in ("P", "L", "1", "I", "I;16"):
        arr = np.asarray(img)
        if img.mode == "P":  # class indices: any object is foreground, 255 ignore
            return np.where(arr == IGNORE_INDEX, IGNORE_INDEX, arr > 0).astype(np.uint8)
        return arr
    return np.asarray(img.convert("L"))


def check_jpeg_mask(arr: np.ndarray, named: str) -> None:
    """Refuse the values of a JPEG mask that look like a 0/1 (or 0/1/255) mask changed by
    compression; a 0/255 JPEG mask still thresholds cleanly."""
    if set(np.unique(arr).tolist()) <= {0, 1, IGNORE_INDEX}:
        return  # the compression left the values as they were
    small = float(((arr >= 1) & (arr < 8)).mean()) if arr.size else 0.0
    bright = float((arr >= 128).mean()) if arr.size else 0.0
    if small > 0 and small > bright / 2:
        raise ValueError(f"{named} is a JPEG: lossy compression changed its values (found "
                         f"{jpeg_values(arr)}), so a 0/1 mask no longer reads as one; save "
                         "masks as PNG (0 background, 1 object, 255 ignore)")


def as_mask(annotation: Annotation, size: tuple[int, int],
            name: str = "support mask") -> np.ndarray:
    """A mask (array, PIL, path) or box ``(x0, y0, x1, y1)`` -> ``(H, W)`` uint8 0/1/255.

    Mask conventions (:data:`MASK_RULE`): booleans; 0/1 (optionally with 255 =
    ignore); otherwise gray levels >= 128 are the object (0/255 masks,
    anti-aliased masks). ``size`` is the support image's ``(H, W)``; masks of
    another size, empty masks (the error lists the values found) and masks
    holding only 255 are errors; a mask without background warns.
    """
    if isinstance(annotation, (str, os.PathLike)):
        arr = load_mask(annotation, name)
        name = f"{name} {annotation}"
    elif isinstance(annotation, Image.Image):
        arr = _mask_values(upright(annotation), name)
        if is_jpeg(annotation):
            check_jpeg_mask(arr, name)
    elif torch.is_tensor(annotation):
        arr = annotation.detach().cpu().numpy()
    else:
        arr = np.asarray(annotation)
        if arr.ndim == 1:
            box_name = name.replace("mask", "box", 1) if "mask" in name else f"{name} box"
            if arr.size != 4:
                raise ValueError(f"{box_name}: a box is x0,y0,x1,y1, got {tuple(arr.tolist())}")
            box = box_to_mask([float(v) for v in arr], size, name=box_name).numpy()
            box = box.astype(np.uint8)
            return _check_coverage(box, box, box_name)
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a (H, W) mask, got shape {arr.shape}")
    if tuple(arr.shape) != tuple(size):
        raise ValueError(f"{name} is {arr.shape[1]}x{arr.shape[0]} but its support image is "
                         f"{size[1]}x{size[0]} (width x height); they must match")
    return _check_coverage(_binarize(arr, name), arr, name)


def _binarize(arr: np.ndarray, name: str) -> np.ndarray:
    """0/1/255 mask from the stored values (see :data:`MASK_RULE`)."""
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    values = set(np.unique(arr).tolist())
    if values == {IGNORE_INDEX}:
        raise ValueError(f"{name} holds only {IGNORE_INDEX}: as a 0/255 mask it marks the whole "
                         f"image as the object, as a 0/1/{IGNORE_INDEX} mask every pixel is "
                         "'ignore'; either way no background is left to compare with. Mark "
                         "only the object")
    if values <= {0, 1, IGNORE_INDEX} and 1 in values:
        return arr.astype(np.uint8)
    return (arr >= 128).astype(np.uint8)


def _check_coverage(mask: np.ndarray, raw: np.ndarray, name: str) -> np.ndarray:
    """Refuse a mask without object pixels, warn about one without background."""
    if not (mask == 1).any():
        found = np.unique(raw)
        shown = ", ".join(str(v) for v in found[:8].tolist()) + (" ..." if found.size > 8 else "")
        raise ValueError(f"{name} is empty: no pixel marks the object (values found: {shown}; "
                         f"{MASK_RULE})")
    if not (mask == 0).any():
        warnings.warn(f"{name} marks the whole image as the object (no background pixel): "
                      "the support then stands for the whole picture, not one object, and the "
                      "result is unreliable; mark only the object", UserWarning, stacklevel=2)
    return mask


# -- the model -------------------------------------------------------------------
def model_for_shots(model: CANet, shots: int) -> tuple[CANet, str]:
    """``model``, or a Mask-Avg copy of a 1-shot model when ``shots > 1`` (with a note)."""
    if shots <= 1 or model.fusion is not None:
        return model, ""
    from canetlib.model.checkpoint import build_model

    twin = build_model(model.config.replace(fusion="mask-avg"))
    twin.load_state_dict(model.state_dict())
    device = next(model.parameters()).device
    note = (f"this is a 1-shot model; the {shots} supports are fused with Mask-Avg "
            "(paper Table 5): each support predicts a mask and the probabilities are averaged")
    return twin.to(device).eval(), note


def run_segmentation(model: CANet, query: ImageLike, supports: Sequence[ImageLike],
                     masks: Sequence[Annotation], iterations: int = 4,
                     size: int | None = REFERENCE_INPUT_SIZE,
                     scales: Sequence[float] = (1.0,), *,
                     all_iterations: bool = True) -> Segmentation:
    """Segment ``query`` given k annotated supports (see :class:`Segmentation`).

    Args:
        model: a :class:`CANet`; 1-shot models get Mask-Avg for k > 1.
        query: the image to segment.
        supports: k support images.
        masks: one mask or box per support.
        iterations: IOM refinements after CANet-Init.
        size: square model input side (``None``: original sizes; all supports
            must then share one size).
        scales: query scales (``(0.7, 1.0, 1.3)`` = the paper's multi-scale test).
        all_iterations: keep every iteration's probabilities in ``probs``; ``False``
            keeps the last one only (one full-size map in memory, same mask).
    """
    if len(supports) == 0:
        raise ValueError("give at least one support image")
    if len(supports) != len(masks):
        raise ValueError(f"{len(supports)} support images but {len(masks)} masks/boxes: every "
                         "support needs its mask or box")
    check_iterations(iterations)
    if size is not None:
        check_size(size, size, "the model input (size)")
    q_rgb = as_model_rgb(query, "query")
    s_rgb = [as_model_rgb(s, f"support {i + 1}") for i, s in enumerate(supports)]
    s_masks = [torch.from_numpy(as_mask(m, s.shape[:2], f"support mask {i + 1}")).long()
               for i, (m, s) in enumerate(zip(masks, s_rgb))]
    q_t = image_to_tensor(q_rgb)
    s_t = [image_to_tensor(s) for s in s_rgb]
    if size is not None:
        q_t, s_stack, m_stack = resize_episode(q_t, s_t, s_masks, (size, size))
    elif len({tuple(s.shape) for s in s_t}) > 1:
        raise ValueError("supports differ in size; give a model input size")
    else:
        s_stack, m_stack = torch.stack(s_t), torch.stack(s_masks)
    net, note = model_for_shots(model, len(s_t))
    # probabilities at the query's original size, as CANet.predict gives them; with one
    # scale and only the last iteration wanted, the grid maps are kept and one upsampled
    grid = tuple(scales) == (1.0,) and not all_iterations
    out = episode_maps(net, q_t, s_stack, m_stack, iterations, scales,
                       size=None if grid else q_rgb.shape[:2])
    maps = out.maps if all_iterations else out.maps[-1:]
    if grid:
        maps = [resize_maps(maps[-1], q_rgb.shape[:2])]
    probs = [p[0, 1].float().cpu().numpy() for p in maps]
    attention = out.attention[0].float().cpu().numpy() if out.attention is not None else None
    mask = binary_prediction(maps[-1])[0].cpu().numpy().astype(np.uint8)
    return Segmentation(mask, probs, attention, net.fusion, note)


def segment_images(model: CANet, query: ImageLike, supports: Sequence[ImageLike],
                   masks: Sequence[Annotation], iterations: int = 4,
                   size: int | None = REFERENCE_INPUT_SIZE) -> tuple[np.ndarray, list[np.ndarray]]:
    """Binary mask ``(H, W)`` uint8 (1 = object) and the foreground probability per iteration.

    The book's entry point; see :func:`run_segmentation` for the arguments.
    Warns when a 1-shot model is given several supports (Mask-Avg is used).
    """
    result = run_segmentation(model, query, supports, masks, iterations, size)
    if result.note:
        warnings.warn(result.note, UserWarning, stacklevel=2)
    return result.mask, result.probs


def overlay_path(out: str | os.PathLike[str]) -> Path:
    """Where :func:`write_outputs` puts the overlay of mask ``out`` (a ``.png``)."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out must name a .png file, got {out}")
    return out.with_name(f"{out.stem}_overlay.png")


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (same resolved path, or hard links to it)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, NotImplementedError):  # a path missing, or no samefile here
        return False


def check_outputs(out: str | os.PathLike[str],
                  inputs: dict[str, str | os.PathLike[str]]) -> None:
    """Refuse an ``out`` whose mask or overlay file is one of ``inputs`` (name -> path)."""
    mask, over = Path(out), overlay_path(out)
    for name, given in inputs.items():
        if _same_file(mask, Path(given)):
            raise ValueError(f"--out {out} is the {name} {given}: writing the mask would "
                             "overwrite an input; choose another --out")
        if _same_file(over, Path(given)):
            raise ValueError(f"--out {out} writes its overlay to {over}, which is the {name} "
                             f"{given}: it would overwrite an input; choose another --out")


def write_outputs(query: ImageLike, mask: np.ndarray,
                  out: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write the mask PNG (0/255) at ``out`` and ``OUT_overlay.png`` beside it; neither
    may be the query file."""
    from canetlib.model.files import atomic_path
    from canetlib.teaching.visual import PRED_COLOR, overlay

    if isinstance(query, (str, os.PathLike)):
        check_outputs(out, {"query": query})
    out = Path(out)
    over = overlay_path(out)
    with atomic_path(out) as tmp:
        Image.fromarray((mask > 0).astype(np.uint8) * 255).save(tmp, format="PNG")
    with atomic_path(over) as tmp:
        Image.fromarray(overlay(as_rgb(query), mask, PRED_COLOR)).save(tmp, format="PNG")
    return out, over
