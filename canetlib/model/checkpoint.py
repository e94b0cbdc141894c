"""Checkpoints: atomic writes, ``weights_only=True`` loads, shipped names.

A checkpoint is a plain dict (tensors, numbers, strings, lists, dicts) so it
loads with ``torch.load(..., weights_only=True)``:

* ``format``: ``"canetlib"`` and ``version``: 1 — refuses foreign files;
* ``model_config``: the :class:`~canetlib.model.CANetConfig` that rebuilds the
  :class:`CANet`, as a plain dict (:meth:`~canetlib.model.CANetConfig.to_dict`);
* ``model``: its state dict (shipped checkpoints store it in float16);
* training runs add ``step``, ``epoch``, ``optimizer``, ``rng``, ``history``,
  ``train_config`` so that ``--resume`` continues exactly;
* ``input_size`` (optional) and ``input_size_chosen_by``: the square side the model is
  evaluated at when it differs from its training crop, and how that side was chosen
  (:func:`with_input_size`, ``python -m canetlib set-input-size``).

Shipped checkpoints live inside the package, in ``canetlib/model/weights/NAME.pt``
(package data, so a wheel installed from git, on Colab say, carries them; every
``*.pt`` in that folder ships), or in the folder named by
``CANETLIB_CHECKPOINTS``, and are resolved by name.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from types import EllipsisType
from typing import Any

import torch

from canetlib.model.canet import CANet
from canetlib.model.config import CANetConfig
from canetlib.model.files import atomic_path
from canetlib.model.inputs import MIN_SIDE
from canetlib.model.runtime import check_device

FORMAT = "canetlib"
VERSION = 1
#: ``kind`` of a backbone-only checkpoint (:func:`canetlib.training.pretrain.backbone_payload`)
BACKBONE_KIND = "backbone"


#: the package folder that holds the shipped ``*.pt`` files and their README
WEIGHTS_PACKAGE_DIR = "weights"


def shipped_dir() -> Path:
    """Folder of the shipped checkpoints (``CANETLIB_CHECKPOINTS`` overrides).

    By default ``canetlib/model/weights`` of the imported package: the source tree in an
    editable install, ``site-packages/canetlib/model/weights`` in an installed wheel.
    """
    env = os.environ.get("CANETLIB_CHECKPOINTS")
    if env:
        return Path(env)
    folder = resources.files("canetlib.model").joinpath(WEIGHTS_PACKAGE_DIR)
    if isinstance(folder, Path):
        return folder
    # not on a plain file system (a zip import, say): the folder beside this module
    return Path(__file__).resolve().parent / WEIGHTS_PACKAGE_DIR


def shipped_names() -> list[str]:
    """Names of the checkpoints found in :func:`shipped_dir`."""
    folder = shipped_dir()
    return sorted(p.stem for p in folder.glob("*.pt")) if folder.is_dir() else []


def resolve(name_or_path: str | os.PathLike[str]) -> Path:
    """A path as given, or a shipped checkpoint's path from its name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_dir() / f"{name_or_path}.pt"
    if shipped.is_file():
        return shipped
    names = ", ".join(shipped_names()) or "none found"
    raise FileNotFoundError(
        f"checkpoint {str(name_or_path)!r} is neither a file nor a shipped name "
        f"(shipped: {names})")


def save_atomic(obj: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` with ``torch.save`` to a temp file in the same folder, then rename.

    A run killed mid-write leaves the previous file intact; the file gets the
    usual permissions (umask respected).
    """
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        torch.save(dict(obj), f)
        f.flush()
        os.fsync(f.fileno())
    return path


def load(name_or_path: str | os.PathLike[str],
         map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint dict (``weights_only=True``)."""
    path = resolve(name_or_path)
    check_torch_file(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # pickle errors, truncated files, foreign objects
        raise ValueError(f"{path}: not a readable canetlib checkpoint ({err})") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: not a canetlib checkpoint (missing format={FORMAT!r})")
    if ckpt.get("version") != VERSION:
        raise ValueError(f"{path}: checkpoint version {ckpt.get('version')} is not {VERSION}")
    for key in ("model_config", "model"):
        if key not in ckpt:
            raise ValueError(f"{path}: checkpoint lacks {key!r}")
    check_finite(ckpt["model"], str(path))
    return ckpt


def check_torch_file(path: Path) -> None:
    """Refuse a file that is neither a zip (``torch.save``) nor a legacy pickle."""
    with open(path, "rb") as f:
        head = f.read(2)
    if not zipfile.is_zipfile(path) and not head.startswith(b"\x80"):
        raise ValueError(f"{path}: not a PyTorch checkpoint file (neither the zip archive that "
                         "torch.save writes nor a pickle); give a .pt file saved by canetlib")


def check_finite(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse a state dict holding NaN or infinite weights (names the first bad tensor)."""
    for name, tensor in state.items():
        if torch.is_tensor(tensor) and tensor.is_floating_point() and \
                not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(f"{source}: tensor {name!r} holds {bad} NaN or infinite "
                             "value(s); the checkpoint is corrupt or from a diverged run")


def canet_config(ckpt: Mapping[str, Any], source: str) -> CANetConfig:
    """The :class:`CANetConfig` of a CANet checkpoint, refusing backbone-only files and
    configs that lack a key or hold an impossible value (``source`` named in the error)."""
    if ckpt.get("kind") == BACKBONE_KIND:
        raise ValueError(f"{source} is a backbone checkpoint (a pretrained feature extractor, "
                         "no segmentation head), not a CANet model; use it as a training "
                         "config's backbone_checkpoint and give a model checkpoint here")
    return CANetConfig.from_dict(ckpt["model_config"], source)


#: backbones whose weights come from an installed package: checkpoints leave them out
PACKAGED_BACKBONES = ("efficientnet-lite0",)


def packaged_backbone(name: str) -> bool:
    """True when a backbone's weights come from a pip package: checkpoints store only
    the head, so rebuilding the model must load those weights (``pretrained=True``)."""
    return name in PACKAGED_BACKBONES


def model_payload(model: CANet, half: bool = False) -> dict[str, Any]:
    """The part of a checkpoint that rebuilds the model.

    A backbone whose ImageNet weights come from a pip package
    (``efficientnet-lite0``) is frozen and identical everywhere, so only the
    head is stored; loading takes the backbone from the package.
    """
    skip = "backbone." if packaged_backbone(model.config.backbone) else None
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items() if skip is None or not k.startswith(skip)}
    return {"format": FORMAT, "version": VERSION, "model_config": model.config.to_dict(),
            "model": state}


def build_model(config: Mapping[str, Any] | CANetConfig) -> CANet:
    """Rebuild a :class:`CANet` from a stored ``model_config`` (or a :class:`CANetConfig`):
    random head weights, and a random backbone unless its weights come from a package
    (loaded from there)."""
    if not isinstance(config, CANetConfig):
        config = CANetConfig.from_dict(config)
    return CANet.from_config(config, pretrained=packaged_backbone(config.backbone))


def trained_input_size(ckpt: Mapping[str, Any]) -> int | None:
    """The square crop side the checkpoint's model was trained at
    (``train_config.train_size``); ``None`` when the checkpoint does not say."""
    size = (ckpt.get("train_config") or {}).get("train_size")
    return int(size) if size else None


def recorded_input_size(ckpt: Mapping[str, Any]) -> int | None:
    """The side the model is fed at: the recorded ``input_size`` (chosen after training,
    :func:`with_input_size`), else :func:`trained_input_size`."""
    size = ckpt.get("input_size")
    return int(size) if size else trained_input_size(ckpt)


def with_input_size(ckpt: Mapping[str, Any], side: int, chosen_by: str) -> dict[str, Any]:
    """A copy of ``ckpt`` that records ``side`` as its evaluation input size.

    ``chosen_by`` says how the side was chosen (on which episodes, by which rule); it is
    kept beside the size, because a size chosen on test episodes would not be honest.
    """
    if isinstance(side, bool) or not isinstance(side, int) or side < MIN_SIDE:
        raise ValueError(f"input size must be a whole number of pixels >= {MIN_SIDE}, "
                         f"got {side!r}")
    if not chosen_by.strip():
        raise ValueError("say how the input size was chosen (chosen_by is empty)")
    return {**ckpt, "input_size": side, "input_size_chosen_by": chosen_by.strip()}


def record_input_size(source: str | os.PathLike[str], out: str | os.PathLike[str], side: int,
                      chosen_by: str) -> Path:
    """Write a copy of checkpoint ``source`` that records ``side`` (:func:`with_input_size`)
    to ``out``, a new file: neither the source nor an existing file is overwritten."""
    src, dst = resolve(source), Path(out)
    if dst.exists():
        raise FileExistsError(f"{dst} exists; give a new file name (canetlib never "
                              "overwrites a checkpoint)")
    ckpt = load(src)
    canet_config(ckpt, str(src))
    return save_atomic(with_input_size(ckpt, side, chosen_by), dst)


def load_model(name_or_path: str | os.PathLike[str], map_location: str | torch.device = "cpu",
               fusion: str | None | EllipsisType = ...) -> CANet:
    """Rebuild a :class:`CANet` from a checkpoint name or path, in eval mode.

    ``model.input_size`` (int or ``None``, not in the state dict) is
    :func:`recorded_input_size`: :func:`canetlib.evaluation.evaluate` feeds images at
    that size unless told otherwise.

    ``fusion`` overrides the stored k-shot fusion for the non-learned ones
    (a 1-shot checkpoint can be tested with ``"mask-avg"``, say); asking for
    ``"attention"`` on a checkpoint without the attention branch is an error.
    """
    check_device(str(map_location), "map_location")
    ckpt = load(name_or_path, map_location)
    model = build_model(canet_config(ckpt, str(name_or_path)))
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    load_state(model, state, str(name_or_path))
    if fusion is not ...:
        try:
            model.use_fusion(fusion)
        except ValueError as err:
            raise ValueError(f"{name_or_path}: {err}") from None
    model.input_size = recorded_input_size(ckpt)
    return model.to(map_location).eval()


def load_state(model: CANet, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` with an error that names every mismatch."""
    own = model.state_dict()
    if packaged_backbone(model.config.backbone):  # the package's weights, already in the model
        state = {**{k: v for k, v in own.items() if k.startswith("backbone.")}, **state}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensors (e.g. {unexpected[:3]})")
        if shapes:
            parts.append("shape mismatch: " + "; ".join(shapes[:3]))
        raise ValueError(f"{source}: checkpoint does not match the model architecture "
                         f"{model.config.to_dict()}: " + ", ".join(parts))
    model.load_state_dict(state)
