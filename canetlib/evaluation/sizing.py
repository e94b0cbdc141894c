"""The model input size of an evaluation, and bringing episodes to it.

:func:`resolve_input_size` picks the size: as given, else the model's own
(``model.input_size``: the recorded evaluation side or the training crop, set by
:func:`canetlib.model.checkpoint.load_model`), else the source's default.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import Dataset

from canetlib.evaluation.datasets import source_name
from canetlib.model.inputs import check_size

#: the reference code fed 321 x 321 images to the network
REFERENCE_INPUT_SIZE = 321

Size = tuple[int, int]
Item = dict[str, Any]


#: model input side of datasets whose training configs crop other than 321 x 321
#: (the ``<name>-1shot`` configs of :mod:`canetlib.training.configs`)
DATASET_INPUT_SIZES: dict[str, int] = {"synthetic": 128, "synthetic-imagenet": 128}


def default_input_size(dataset_name: str | None) -> int:
    """Model input side for a dataset: its ``<name>-1shot`` training crop, else 321.

    PASCAL-5i and COCO-20i train and test at 321 x 321 (reference code and
    paper); the synthetic world trains at 128, so its test episodes are fed at 128 too.
    """
    return DATASET_INPUT_SIZES.get(str(dataset_name), REFERENCE_INPUT_SIZE)


def _whole(value: object) -> bool:
    """Whether ``value`` is an integer (a bool is not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _as_size(value: int | Sequence[int]) -> Size:
    """``value`` (a side, or ``(H, W)``) as ``(H, W)`` of whole pixels, at least 16 a side."""
    if _whole(value):
        size = (int(value), int(value))  # type: ignore[arg-type]
    elif isinstance(value, Sequence) and len(value) == 2 and all(_whole(v) for v in value):
        size = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"input_size must be an int, (H, W) of two ints, 'native' or None, "
                         f"got {value!r}")
    check_size(size[0], size[1], "input_size")
    return size


def model_input_size(model: Any) -> Size | None:
    """The ``(H, W)`` a model is fed at (its ``input_size`` attribute), if it says."""
    size = getattr(model, "input_size", None)
    return _as_size(size) if size else None


def resolve_input_size(dataset: Dataset, input_size: int | Sequence[int] | str | None,
                       model: Any = None) -> Size | None:
    """The model input size ``(H, W)`` for ``dataset``; ``None`` = each image's own size.

    * an int (square) or ``(H, W)`` is used as given;
    * ``"native"`` keeps the original sizes (episodes of equal shapes are
      batched together; supports of one episode must then share a size);
    * ``None`` (default): the size ``model`` is fed at (:func:`model_input_size`:
      the checkpoint's recorded evaluation side or its training crop), else
      :func:`default_input_size` of the dataset's source (321 for PASCAL-5i/COCO-20i
      as the reference, 128 for the synthetic world, 321 for anything else). Test
      images keep their original size; they are resized for the network only and
      IoU is measured at the original size.
    """
    if input_size == "native":
        return None
    if input_size is None:
        own = model_input_size(model)
        if own is not None:
            return own
        side = default_input_size(source_name(dataset))
        return (side, side)
    if isinstance(input_size, str):
        raise TypeError(f"input_size must be an int, (H, W), 'native' or None, got {input_size!r}")
    return _as_size(input_size)


# -- resizing -----------------------------------------------------------------
def _resize_mask(mask: Tensor, size: Size) -> Tensor:
    """Nearest-neighbour resize of a 0/1/255 mask that never loses a small object."""
    if tuple(mask.shape[-2:]) == size:
        return mask
    out = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
    if bool((mask == 1).any()) and not bool((out == 1).any()):
        touched = F.adaptive_max_pool2d((mask == 1).float()[None, None], size)[0, 0] > 0
        out[touched] = 1
    return out


def _resize_image(image: Tensor, size: Size) -> Tensor:
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False,
                         antialias=True)[0]


def resize_episode(query: Tensor, supports: Tensor | Sequence[Tensor],
                   masks: Tensor | Sequence[Tensor], size: Size) -> tuple[Tensor, Tensor, Tensor]:
    """Bring a query ``(3, H, W)`` and k supports/masks to ``size``.

    ``supports`` is ``(k, 3, Hs, Ws)`` or a list of k ``(3, H_j, W_j)``;
    ``masks`` likewise. Images are resized bilinearly with anti-aliasing (as
    the training episodes are), masks with nearest neighbour (0/1/255 kept);
    a support object so small that nearest neighbour would lose it keeps
    every output pixel it touches.
    Returns ``(3, *size)``, ``(k, 3, *size)`` and ``(k, *size)``.
    """
    if len(supports) != len(masks):
        raise ValueError(f"{len(supports)} support images but {len(masks)} support masks")
    return (_resize_image(query, size),
            torch.stack([_resize_image(s, size) for s in supports]),
            torch.stack([_resize_mask(m, size) for m in masks]))


# -- batching -----------------------------------------------------------------
def _shape_key(item: Item) -> tuple[tuple[int, ...], tuple[int, ...]]:
    supports = item["support_images"]
    if not torch.is_tensor(supports):
        raise ValueError(f"episode {item.get('index')}: its supports differ in size, so they "
                         "cannot be fed at their native size; give an input size")
    return tuple(item["query_image"].shape), tuple(supports.shape)


def group_items(items: list[Item], size: Size | None) -> list[list[Item]]:
    """Sub-batches that can be stacked: all items when resizing, else by shape."""
    if size is not None:
        return [items]
    groups: dict[Any, list[Item]] = {}
    for item in items:
        groups.setdefault(_shape_key(item), []).append(item)
    return list(groups.values())


def stack_items(items: list[Item], size: Size | None,
                device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Queries ``(B, 3, H, W)``, supports ``(B, k, 3, H, W)``, masks ``(B, k, H, W)``
    of episodes brought to ``size`` (``None``: as they are), on ``device``."""
    qs, ss, ms = [], [], []
    for item in items:
        q, s, m = item["query_image"], item["support_images"], item["support_masks"]
        if size is not None:
            q, s, m = resize_episode(q, s, m, size)
        elif not torch.is_tensor(s):
            raise ValueError(f"episode {item.get('index')}: supports differ in size")
        qs.append(q)
        ss.append(s)
        ms.append(m)
    return (torch.stack(qs).to(device, non_blocking=True),
            torch.stack(ss).to(device, non_blocking=True),
            torch.stack(ms).to(device, non_blocking=True))
