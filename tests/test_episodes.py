"""Tests of the episode sampler, its collate function and make_dataset (canetlib.data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from canetlib.data import (
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    EpisodeDataset,
    SegmentationSource,
    SyntheticSource,
    collate_episodes,
    make_dataset,
)

KEYS = {
    "query_image",
    "query_mask",
    "query_all_objects",
    "support_images",
    "support_masks",
    "class_id",
    "query_id",
    "support_ids",
    "index",
}


class TinySource(SegmentationSource):
    """8 classes (2 per fold), rectangles on noise; image ``<split>/<c>/<j>`` holds two
    instances of class ``c`` and one object of the next class. Sizes vary per image."""

    name = "tiny"
    class_names = ("a", "b", "c", "d", "e", "f", "g", "h")

    def __init__(self, counts: dict[int, int] | None = None, default: int = 8) -> None:
        self.counts = {c: default for c in range(1, 9)}
        self.counts.update(counts or {})

    def image_pairs(self, split: str) -> list[tuple[str, int]]:
        return [(f"{split}/{c}/{j}", c) for c in range(1, 9) for j in range(self.counts[c])]

    @staticmethod
    def _parse(image_id: str) -> tuple[int, int, int, int]:
        _, c, j = image_id.split("/")
        h, w = 40 + 8 * (int(j) % 3), 48 + 8 * (int(j) % 2)
        return int(c), int(j), h, w

    def load_image(self, image_id: str) -> np.ndarray:
        c, j, h, w = self._parse(image_id)
        rng = np.random.default_rng([c, j])
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    def _objects(self, image_id: str) -> list[tuple[int, int, slice, slice]]:
        c, j, h, _ = self._parse(image_id)
        other = c % 8 + 1
        return [
            (c, 1, slice(2, 12), slice(3 + j % 4, 15)),
            (c, 2, slice(20, 30), slice(25, 40)),
            (other, 1, slice(h - 8, h - 2), slice(2, 10)),
        ]

    def load_mask(self, image_id: str) -> np.ndarray:
        _, _, h, w = self._parse(image_id)
        sem = np.zeros((h, w), dtype=np.uint8)
        for c, _, ys, xs in self._objects(image_id):
            sem[ys, xs] = IGNORE_INDEX
            sem[ys.start + 1 : ys.stop - 1, xs.start + 1 : xs.stop - 1] = c
        return sem

    def load_instances(self, image_id: str, class_id: int) -> np.ndarray:
        _, _, h, w = self._parse(image_id)
        inst = np.zeros((h, w), dtype=np.int32)
        for c, k, ys, xs in self._objects(image_id):
            if c == class_id:
                inst[ys, xs] = k
        return inst


@pytest.fixture(scope="module")
def world() -> SyntheticSource:
    """A small synthetic world: fast on a cold cache."""
    return SyntheticSource(train_images_per_class=6, test_images_per_class=6)


def _assert_same_items(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, va in a.items():
        vb = b[key]
        if isinstance(va, torch.Tensor):
            assert torch.equal(va, vb), key
        elif isinstance(va, list) and va and isinstance(va[0], torch.Tensor):
            assert all(torch.equal(x, y) for x, y in zip(va, vb)), key
        else:
            assert va == vb, key


def test_test_items_have_the_documented_format(world: SyntheticSource) -> None:
    ds = EpisodeDataset(world, fold=1, split="test", shots=2, episodes=6, seed=0)
    for i in range(len(ds)):
        item = ds[i]
        assert set(item) >= KEYS and item["index"] == i
        q = world.load_image(item["query_id"])
        h, w = q.shape[:2]
        assert item["query_image"].shape == (3, h, w) and item["query_image"].dtype == torch.float32
        back = item["query_image"] * torch.tensor(IMAGENET_STD).view(3, 1, 1)
        back = (back + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) * 255
        assert torch.allclose(back, torch.from_numpy(q).permute(2, 0, 1).float(), atol=1e-3)
        qm, qa = item["query_mask"], item["query_all_objects"]
        assert qm.shape == (h, w) and qm.dtype == torch.int64 and qa.dtype == torch.int64
        assert set(torch.unique(qm).tolist()) <= {0, 1, IGNORE_INDEX} and (qm == 1).any()
        assert set(torch.unique(qa).tolist()) <= {0, 1, IGNORE_INDEX}
        assert torch.equal(qm == IGNORE_INDEX, qa == IGNORE_INDEX)
        assert torch.all(qa[qm == 1] == 1)
        assert torch.equal(
            qm == IGNORE_INDEX, torch.from_numpy(world.load_mask(item["query_id"]) == 255)
        )
        assert isinstance(item["class_id"], int) and item["class_id"] in world.test_classes(1)
        assert isinstance(item["query_id"], str) and len(item["support_ids"]) == 2
        images, masks = item["support_images"], item["support_masks"]
        for j, sid in enumerate(item["support_ids"]):
            sh, sw = world.load_image(sid).shape[:2]
            assert images[j].shape == (3, sh, sw) and masks[j].shape == (sh, sw)
            assert masks[j].dtype == torch.int64 and (masks[j] == 1).any()
            assert set(torch.unique(masks[j]).tolist()) <= {0, 1, IGNORE_INDEX}
        if isinstance(images, torch.Tensor):
            assert images.shape[:2] == (2, 3) and masks.shape[0] == 2


def test_test_episodes_are_deterministic_and_order_free(world: SyntheticSource) -> None:
    a = EpisodeDataset(world, 0, "test", 1, 8, seed=5)
    b = EpisodeDataset(
        SyntheticSource(train_images_per_class=6, test_images_per_class=6), 0, "test", 1, 8, seed=5
    )
    items_b = {i: b[i] for i in reversed(range(8))}  # other access order
    for i in range(8):
        _assert_same_items(a[i], items_b[i])
    a.set_epoch(7)  # test episodes ignore epochs
    _assert_same_items(a[3], items_b[3])
    c = EpisodeDataset(world, 0, "test", 1, 50, seed=6)
    d = EpisodeDataset(world, 0, "test", 1, 50, seed=5)
    assert [c.spec(i) for i in range(50)] != [d.spec(i) for i in range(50)]
    assert [d.spec(i) for i in range(8)] == [a.spec(i) for i in range(8)]  # prefix-stable


def test_episodes_do_not_depend_on_worker_order() -> None:
    ds = EpisodeDataset(TinySource(), 1, "test", 2, 6, seed=2)
    kwargs = {"batch_size": 2, "collate_fn": collate_episodes}
    serial = list(DataLoader(ds, **kwargs))
    parallel = list(DataLoader(ds, num_workers=2, **kwargs))
    for a, b in zip(serial, parallel):
        assert a["query_id"] == b["query_id"] and a["support_ids"] == b["support_ids"]
        assert all(torch.equal(x, y) for x, y in zip(a["query_image"], b["query_image"]))


def test_supports_differ_from_query_and_each_other() -> None:
    src = TinySource(default=9)
    for split in ("test", "train"):
        ds = EpisodeDataset(src, 2, split, shots=5, episodes=200, seed=0, train_size=32)
        for i in range(len(ds)):
            spec = ds.spec(i)
            assert spec.query_id not in spec.support_ids
            assert len(set(spec.support_ids)) == 5
            assert all((s, spec.class_id) in set(ds.pairs) for s in spec.support_ids)
    one = EpisodeDataset(src, 0, "test", 1, 30, seed=3)
    five = EpisodeDataset(src, 0, "test", 5, 30, seed=3)
    for i in range(30):
        s1, s5 = one.spec(i), five.spec(i)
        assert (s1.class_id, s1.query_id) == (s5.class_id, s5.query_id)
        assert s1.support_ids[0] == s5.support_ids[0]


def test_folds_separate_train_and_test_classes() -> None:
    src = TinySource()
    for fold in range(4):
        test_classes = set(src.test_classes(fold))
        assert test_classes == {2 * fold + 1, 2 * fold + 2}
        tr = EpisodeDataset(src, fold, "train", 1, 100, seed=0, train_size=32)
        te = EpisodeDataset(src, fold, "test", 1, 100, seed=0)
        assert {c for _, c in tr.pairs} == set(src.train_classes(fold))
        assert {c for _, c in te.pairs} == test_classes
        assert all(i.startswith("train/") for i, _ in tr.pairs)
        assert all(i.startswith("test/") for i, _ in te.pairs)
        assert {tr.spec(i).class_id for i in range(100)} <= set(src.train_classes(fold))
        assert {te.spec(i).class_id for i in range(100)} == test_classes


def test_box_supports_are_one_instance_box() -> None:
    src = TinySource()
    ds = EpisodeDataset(src, 0, "test", shots=3, episodes=20, seed=0, box_support=True)
    chosen = set()
    for i in range(len(ds)):
        item = ds[i]
        for sid, mask in zip(item["support_ids"], item["support_masks"]):
            m = mask.numpy()
            assert set(np.unique(m).tolist()) == {0, 1}
            ys, xs = np.nonzero(m)
            box = (ys.min(), ys.max(), xs.min(), xs.max())
            assert m[box[0] : box[1] + 1, box[2] : box[3] + 1].all()  # a filled rectangle
            assert m.sum() == (box[1] - box[0] + 1) * (box[3] - box[2] + 1)
            inst = src.load_instances(sid, item["class_id"])
            boxes = {}
            for k in np.unique(inst[inst > 0]):
                iy, ix = np.nonzero(inst == k)
                boxes[int(k)] = (iy.min(), iy.max(), ix.min(), ix.max())
            assert box in boxes.values()
            chosen.add(next(k for k, b in boxes.items() if b == box))
    assert chosen == {1, 2}  # the instance is chosen at random (seeded)
    again = EpisodeDataset(src, 0, "test", shots=3, episodes=20, seed=0, box_support=True)
    _assert_same_items(ds[4], again[4])


def test_box_supports_on_the_synthetic_world(world: SyntheticSource) -> None:
    ds = EpisodeDataset(world, 3, "test", shots=1, episodes=5, seed=1, box_support=True)
    for i in range(len(ds)):
        item = ds[i]
        m = item["support_masks"][0].numpy()
        ys, xs = np.nonzero(m)
        assert (
            m.sum() == (np.ptp(ys) + 1) * (np.ptp(xs) + 1)
            and m.shape == item["support_images"].shape[-2:]
        )


def test_too_few_images_is_a_clear_error() -> None:
    src = TinySource(counts={1: 1, 2: 3})
    with pytest.raises(ValueError, match=r"class 1 \(a\) has 1 .*shots \+ 1 = 2"):
        EpisodeDataset(src, 0, "test", shots=1, episodes=10, seed=0)
    with pytest.raises(ValueError, match=r"class 2 \(b\) has 3"):
        EpisodeDataset(src, 0, "test", shots=5, episodes=10, seed=0)
    EpisodeDataset(TinySource(counts={1: 2}), 0, "test", shots=1, episodes=10, seed=0)  # enough


def test_bad_arguments() -> None:
    src = TinySource()
    for kwargs, message in (({"shots": 0}, r"shots must be an integer >= 1, got 0"),
                            ({"episodes": 0}, r"episodes must be an integer >= 1, got 0"),
                            ({"seed": -1}, r"seed must be an integer >= 0, got -1"),
                            ({"split": "val"}, r"split must be one of .*got 'val'"),
                            ({"fold": 4}, r"fold must be in 0\.\.3, got 4")):
        args = {"fold": 0, "split": "test", "shots": 1, "episodes": 5, "seed": 0, **kwargs}
        with pytest.raises(ValueError, match=message):
            EpisodeDataset(src, **args)
    ds = EpisodeDataset(src, 0, "test", 1, 5, 0)
    assert ds[4]["index"] == 4  # the last episode is there, the next one is not
    with pytest.raises(IndexError, match=r"episode index 5 out of range 0\.\.4"):
        ds[5]


def test_unknown_dataset_name() -> None:
    with pytest.raises(ValueError, match="synthetic, pascal, coco"):
        make_dataset("voc")
    with pytest.raises(ValueError, match="root"):
        make_dataset("pascal")


def test_make_dataset_routes_arguments(world: SyntheticSource) -> None:
    ds = make_dataset(
        "synthetic", fold=2, split="train", shots=2, episodes=7, seed=3, source=world, train_size=64
    )
    assert (ds.fold, ds.split, ds.shots, ds.episodes, ds.seed, ds.train_size) == (
        2,
        "train",
        2,
        7,
        3,
        64,
    )
    assert ds.source is world
    with pytest.raises(ValueError, match="source="):
        make_dataset("synthetic", source=world, world_seed=1)
    own = make_dataset(
        "synthetic",
        split="test",
        episodes=3,
        world_seed=4,
        train_images_per_class=2,
        test_images_per_class=6,
    )
    assert isinstance(own.source, SyntheticSource) and own.source.seed == 4


def test_make_dataset_from_a_source_matches_the_sampler() -> None:
    """``make_dataset(source=...)``, no name: the episodes of :class:`EpisodeDataset`."""
    src = TinySource()
    built = make_dataset(source=src, split="test", shots=2, episodes=4, seed=5, box_support=True,
                         transform=lambda item: {**item, "seen": True})
    direct = EpisodeDataset(src, 0, "test", 2, 4, 5, box_support=True)
    for i in range(4):
        a, b = built[i], direct[i]
        assert a.pop("seen") and a["support_ids"] == b["support_ids"]
        assert all(torch.equal(x, y) for x, y in zip(a["support_masks"], b["support_masks"]))
    assert built.box_support and built.shots == 2 and make_dataset(source=src).split == "train"


def test_collate_equal_and_unequal_sizes(world: SyntheticSource) -> None:
    src = TinySource()
    test_ds = EpisodeDataset(src, 0, "test", 1, 4, seed=0)
    items = [test_ds[i] for i in range(4)]
    assert len({tuple(it["query_image"].shape) for it in items}) > 1
    batch = collate_episodes(items)
    for key in (
        "query_image",
        "query_mask",
        "query_all_objects",
        "support_images",
        "support_masks",
    ):
        assert isinstance(batch[key], list) and len(batch[key]) == 4
        assert all(torch.equal(x, it[key]) for x, it in zip(batch[key], items))
    assert batch["class_id"].dtype == torch.int64 and batch["class_id"].tolist() == [
        it["class_id"] for it in items
    ]
    assert batch["index"].tolist() == [0, 1, 2, 3]
    assert batch["query_id"] == [it["query_id"] for it in items]
    assert batch["support_ids"] == [it["support_ids"] for it in items]
    one = collate_episodes(items[:1])  # a single episode always stacks
    assert one["query_image"].shape == (1, *items[0]["query_image"].shape)

    train_ds = EpisodeDataset(world, 0, "train", 2, 3, seed=0, train_size=48)
    loader = DataLoader(train_ds, batch_size=3, collate_fn=collate_episodes)
    batch = next(iter(loader))
    assert batch["query_image"].shape == (3, 3, 48, 48)
    assert batch["query_mask"].shape == (3, 48, 48) and batch["query_all_objects"].shape == (
        3,
        48,
        48,
    )
    assert batch["support_images"].shape == (3, 2, 3, 48, 48)
    assert batch["support_masks"].shape == (3, 2, 48, 48)
    assert batch["support_masks"].dtype == torch.int64
    with pytest.raises(ValueError, match="at least one item"):
        collate_episodes([])


def test_training_augmentation_and_set_epoch(world: SyntheticSource) -> None:
    ds = EpisodeDataset(world, 1, "train", shots=2, episodes=6, seed=0, train_size=72)
    ds.set_epoch(3)
    first = [ds[i] for i in range(6)]
    for item in first:
        assert (
            item["query_image"].shape == (3, 72, 72) and item["query_image"].dtype == torch.float32
        )
        assert item["support_images"].shape == (2, 3, 72, 72)
        assert item["query_mask"].shape == (72, 72) and item["support_masks"].shape == (2, 72, 72)
        for m in (item["query_mask"], item["query_all_objects"], item["support_masks"]):
            assert m.dtype == torch.int64 and set(torch.unique(m).tolist()) <= {0, 1, IGNORE_INDEX}
        assert (item["query_mask"] == 1).any()
        assert item["class_id"] in world.train_classes(1)
    ds.set_epoch(4)
    fourth = [ds[i] for i in range(6)]
    resumed = EpisodeDataset(world, 1, "train", shots=2, episodes=6, seed=0, train_size=72)
    resumed.set_epoch(3)
    for i in range(6):
        _assert_same_items(first[i], resumed[i])  # a resumed run reproduces the epoch
        # the query is the same sample every epoch (per-sample memory); supports move on
        assert fourth[i]["query_id"] == first[i]["query_id"]
        assert torch.equal(fourth[i]["query_image"], first[i]["query_image"])
    assert any(
        not torch.equal(f["support_images"], g["support_images"]) for f, g in zip(first, fourth)
    )
    with pytest.raises(ValueError, match="epoch must be >= 0, got -1"):
        ds.set_epoch(-1)


def test_transform_hook(world: SyntheticSource) -> None:
    def tag(item: dict) -> dict:
        item["tagged"] = True
        return item

    ds = EpisodeDataset(world, 0, "test", 1, 2, seed=0, transform=tag)
    assert ds[0]["tagged"] is True
