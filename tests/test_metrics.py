"""mIoU and FB-IoU against hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from canetlib.evaluation.metrics import (
    FewShotMeter,
    all_objects_iou,
    all_objects_miou,
    episode_iou,
    intersection_union,
    mean_std,
)


def t(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows)


def test_intersection_union_ignores_255() -> None:
    pred = t([[1, 1, 0], [0, 1, 1]])
    gt = t([[1, 255, 0], [1, 1, 255]])
    inter, union = intersection_union(pred, gt)
    # valid pixels: (0,0) p1 g1, (0,2) p0 g0, (1,0) p0 g1, (1,1) p1 g1
    assert inter.tolist() == [[1, 2]]
    assert union.tolist() == [[2, 3]]


def test_episode_iou_ignores_255_and_counts_an_empty_union_as_100() -> None:
    import numpy as np

    pred = t([[1, 1, 0], [0, 1, 1]])
    gt = t([[1, 255, 0], [1, 1, 255]])
    # 255 pixels leave both sides: foreground I/U = 2/3 (see the case above)
    assert episode_iou(pred, gt) == pytest.approx(100 * 2 / 3)
    assert episode_iou(pred[None], gt[None]) == episode_iou(pred, gt)
    assert episode_iou(pred.numpy() == 1, gt.numpy().astype(np.uint8)) == episode_iou(pred, gt)
    # a prediction only on 255 pixels, nothing to find: empty union -> 100
    assert episode_iou(t([[0, 1], [0, 0]]), t([[0, 255], [0, 0]])) == 100.0
    assert episode_iou(t([[1, 1], [0, 0]]), t([[0, 255], [0, 0]])) == 0.0
    with pytest.raises(ValueError, match="one episode"):
        episode_iou(torch.zeros(2, 3, 3), torch.zeros(2, 3, 3))


def test_miou_pools_per_class_then_averages() -> None:
    meter = FewShotMeter(classes=[1, 2, 3])
    # class 1, two episodes: fg I/U = 1/2 and 3/3 -> pooled 4/5
    meter.update(t([[1, 1, 0, 0]])[None], t([[1, 0, 0, 0]])[None], [1])
    meter.update(t([[1, 1, 1, 0]])[None], t([[1, 1, 1, 0]])[None], [1])
    # class 2, one episode with a 255 border: fg I/U = 1/3
    meter.update(t([[1, 1, 1, 0]])[None], t([[255, 1, 0, 1]])[None], [2])
    assert meter.class_iou() == pytest.approx({1: 4 / 5, 2: 1 / 3})
    assert meter.missing_classes() == [3]
    assert meter.miou() == pytest.approx((4 / 5 + 1 / 3) / 2)
    # FB-IoU: background pooled I/U = (2 + 1 + 0) / (3 + 1 + 2); foreground (1 + 3 + 1) / (2 + 3 + 3)
    bg = (2 + 1 + 0) / (3 + 1 + 2)
    fg = (1 + 3 + 1) / (2 + 3 + 3)
    assert meter.fbiou() == pytest.approx((bg + fg) / 2)
    assert meter.episodes == 3


def test_fbiou_hand_case_background_only_gain() -> None:
    meter = FewShotMeter(classes=[7])
    pred = torch.zeros(1, 4, 4, dtype=torch.long)
    gt = torch.zeros(1, 4, 4, dtype=torch.long)
    gt[0, 0, 0] = 1
    meter.update(pred, gt, [7])
    assert meter.miou() == 0.0
    assert meter.fbiou() == pytest.approx((15 / 16 + 0) / 2)


def test_batch_update_equals_single_updates_any_resolution() -> None:
    g = torch.Generator().manual_seed(3)
    pred = torch.randint(0, 2, (4, 37, 53), generator=g)
    gt = torch.randint(0, 2, (4, 37, 53), generator=g)
    gt[:, :2] = 255
    ids = [1, 2, 1, 2]
    a, b = FewShotMeter([1, 2]), FewShotMeter([1, 2])
    a.update(pred, gt, torch.tensor(ids))
    for i in range(4):
        b.update(pred[i:i + 1], gt[i:i + 1], ids[i:i + 1])
    assert a.summary() == b.summary()


def test_meter_errors_are_clear() -> None:
    meter = FewShotMeter([1])
    with pytest.raises(ValueError, match="no episode"):
        meter.miou()
    with pytest.raises(ValueError, match="class 5"):
        meter.update(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), [5])
    with pytest.raises(ValueError, match="shape"):
        meter.update(torch.zeros(1, 2, 2), torch.zeros(1, 3, 2), [1])


def test_summary_in_percent() -> None:
    meter = FewShotMeter([1])
    meter.update(torch.ones(1, 2, 2), torch.ones(1, 2, 2), [1])
    s = meter.summary()
    assert s["miou"] == 100.0 and s["per_class_iou"] == {"1": 100.0}


def test_mean_std() -> None:
    assert mean_std([1.0, 3.0]) == pytest.approx((2.0, 2 ** 0.5))
    assert mean_std([5.0]) == (5.0, 0.0)


def episode(cid: int, target: list[list[int]], every: list[list[int]] | None) -> dict:
    item = {"class_id": cid, "query_mask": t(target)}
    if every is not None:
        item["query_all_objects"] = t(every)
    return item


def test_all_objects_baseline_marks_every_object_and_pools_per_class() -> None:
    # class 1: target 1 pixel, every object 2 (+1 ignored) -> I/U 1/2; class 2: 2/2 and 1/3
    items = [episode(1, [[1, 0, 255]], [[1, 1, 255]]),
             episode(2, [[1, 1, 0]], [[1, 1, 0]]),
             episode(2, [[0, 1, 0]], [[1, 1, 1]])]
    assert all_objects_iou(items[0]) == pytest.approx(50.0)
    assert all_objects_miou(items) == pytest.approx(100 * (1 / 2 + 3 / 5) / 2)
    assert all_objects_miou(items, classes=[1, 2, 3]) == all_objects_miou(items)

    class Episodes:  # a dataset: len, getitem, its own classes
        classes = (1, 2)

        def __len__(self) -> int:
            return len(items)

        def __getitem__(self, i: int) -> dict:
            return items[i]

    assert all_objects_miou(Episodes()) == all_objects_miou(items)
    bare = episode(1, [[1, 0]], None)
    assert all_objects_iou(bare) is None and all_objects_miou([bare]) is None
