"""Bad input gets a ValueError that names the problem."""

from __future__ import annotations

import pytest
import torch
from helpers import make_episode, tiny_canet

from canetlib import CANet, box_to_mask, mask_to_box
from canetlib.model.inputs import check_target


@pytest.fixture(scope="module")
def model() -> CANet:
    return tiny_canet(seed=None, backbone_widths=(8, 8, 8, 8)).eval()


def test_empty_support_mask(model: CANet) -> None:
    q, s, m = make_episode()
    m[0, 0] = 0
    with pytest.raises(ValueError, match="empty"):
        model(q, s, m)


def test_ignore_only_support_mask_is_empty(model: CANet) -> None:
    q, s, m = make_episode()
    m[0, 0] = 255
    with pytest.raises(ValueError, match="empty"):
        model(q, s, m)


def test_support_mask_of_wrong_size(model: CANet) -> None:
    q, s, m = make_episode()
    with pytest.raises(ValueError, match="support mask size"):
        model(q, s, m[..., :-3])


def test_query_image_and_mask_size_mismatch() -> None:
    with pytest.raises(ValueError, match="differ"):
        check_target(torch.zeros(3, 10, 12), torch.zeros(10, 11, dtype=torch.long))


def test_non_binary_mask(model: CANet) -> None:
    q, s, m = make_episode()
    m[0, 0, 5, 5] = 7
    with pytest.raises(ValueError, match="0, 1 or 255"):
        model(q, s, m)


def test_wrong_channel_count(model: CANet) -> None:
    q, s, m = make_episode()
    with pytest.raises(ValueError, match="3 colour channels"):
        model(q[:, :1], s, m)
    with pytest.raises(ValueError, match="3 colour channels"):
        model(q, torch.cat([s, s[:, :, :1]], dim=2), m)


def test_shot_count_against_fusion(model: CANet) -> None:
    q, s, m = make_episode(shots=5)
    with pytest.raises(ValueError, match="5 supports"):
        model(q, s, m)


def test_integer_images_rejected(model: CANet) -> None:
    q, s, m = make_episode()
    with pytest.raises(ValueError, match="float"):
        model((q * 50).to(torch.uint8), s, m)


def test_batch_mismatch(model: CANet) -> None:
    q, s, m = make_episode(batch=2)
    with pytest.raises(ValueError, match="batch size"):
        model(q[:1], s, m)


def test_box_to_mask_and_back() -> None:
    mask = box_to_mask((2, 3, 7, 5), (8, 10))
    assert mask.shape == (8, 10) and int(mask.sum()) == 5 * 2
    assert mask_to_box(mask) == (2, 3, 7, 5)
    clipped = box_to_mask((-4, -4, 20, 2), (8, 10))
    assert int(clipped.sum()) == 10 * 2


def test_box_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        box_to_mask((5, 5, 5, 9), (10, 10))
    with pytest.raises(ValueError, match="x0, y0, x1, y1"):
        box_to_mask((1, 2, 3), (10, 10))
    with pytest.raises(ValueError, match="no foreground"):
        mask_to_box(torch.zeros(4, 4))
