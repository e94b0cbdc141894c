"""Training episodes with a deliberately wrong support (``wrong_supports``, k-shot only)."""

from __future__ import annotations

import pytest
import torch
from test_episodes import TinySource

from canetlib.configs import get_config
from canetlib.data import EpisodeDataset, make_dataset
from canetlib.data.episodes import target_mask


def _episodes(rate: float, shots: int = 3) -> EpisodeDataset:
    return make_dataset(source=TinySource(), fold=0, split="train", shots=shots, episodes=40,
                        seed=3, train_size=32, wrong_supports=rate)


def test_the_last_support_shows_another_class_with_its_mask() -> None:
    ds = _episodes(1.0)
    for i in range(10):
        spec = ds.spec(i)
        wrong = spec.support_class(2)
        assert spec.support_class(0) == spec.support_class(1) == spec.class_id != wrong
        assert wrong in ds.classes and spec.support_ids[2] in ds.class_images[wrong]
        # the mask the support carries is the wrong class's (checked before augmentation)
        sem = ds.source.load_mask(spec.support_ids[2])
        assert (target_mask(sem, wrong) == 1).any()
        item = ds[i]
        assert item["support_masks"].shape[0] == 3


def test_rate_zero_keeps_the_benchmark_episodes_and_rate_half_is_seeded() -> None:
    plain = make_dataset(source=TinySource(), fold=0, split="train", shots=3, episodes=40,
                         seed=3, train_size=32)
    assert [plain.spec(i) for i in range(40)] == [_episodes(0.0).spec(i) for i in range(40)]
    half = _episodes(0.5)
    flags = [bool(half.spec(i).support_classes) for i in range(40)]
    assert 5 < sum(flags) < 35 and flags == [bool(_episodes(0.5).spec(i).support_classes)
                                             for i in range(40)]
    half.set_epoch(1)
    assert flags != [bool(half.spec(i).support_classes) for i in range(40)]  # per epoch
    for i in range(40):  # the other supports and the query are untouched
        a, b = plain.spec(i), _episodes(0.5).spec(i)
        assert (a.query_id, a.support_ids[:2]) == (b.query_id, b.support_ids[:2])
    torch.testing.assert_close(plain[0]["query_image"], _episodes(0.5)[0]["query_image"])


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="wrong_supports must be in"):
        _episodes(1.5)
    with pytest.raises(ValueError, match="k-shot training episodes"):
        _episodes(0.5, shots=1)
    with pytest.raises(ValueError, match="wrong_supports needs k-shot"):
        get_config("synthetic-imagenet-1shot", ["wrong_supports=0.5"])
    cfg = get_config("synthetic-imagenet-5shot", ["wrong_supports=0.5"])
    assert cfg.wrong_supports == 0.5
