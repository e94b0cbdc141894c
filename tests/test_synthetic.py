"""Tests of the embedded OpenMoji world and the pretraining pool (canetlib.data.world.synthetic)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from canetlib.data import (
    IGNORE_INDEX,
    OPENMOJI_CREDIT,
    PASCAL_CLASSES,
    make_dataset,
)
from canetlib.data.world import cache, catalog
from canetlib.data.world import synthetic as syn
from canetlib.data.world.catalog import CLASS_GLYPHS, PRETRAIN_GLYPHS
from canetlib.data.world.glyphs import WORLD_VERSION, openmoji_version, render_glyph
from canetlib.data.world.pretraining import PretrainingPool
from canetlib.data.world.synthetic import SyntheticSource


@pytest.fixture(scope="module")
def world() -> SyntheticSource:
    """The default world (its test pool pairs take a few seconds on a cold cache)."""
    return SyntheticSource()


@pytest.fixture(scope="module")
def small_world() -> SyntheticSource:
    return SyntheticSource(train_images_per_class=6, test_images_per_class=6)


def test_credit_is_present() -> None:
    assert "OpenMoji" in OPENMOJI_CREDIT and "CC BY-SA 4.0" in OPENMOJI_CREDIT
    assert syn.__doc__ is not None and "CC BY-SA 4.0" in syn.__doc__


def test_class_table_follows_pascal_and_every_glyph_renders() -> None:
    assert tuple(CLASS_GLYPHS) == PASCAL_CLASSES
    seen: set[str] = set()
    for name, glyphs in CLASS_GLYPHS.items():
        assert glyphs, name
        assert not seen & set(glyphs), f"{name} shares a glyph with another class"
        seen |= set(glyphs)
        for g in glyphs:
            rgba = render_glyph(g)
            assert rgba.dtype == np.uint8 and rgba.ndim == 3 and rgba.shape[2] == 4
            opaque = (rgba[..., 3] >= 128).mean()
            assert opaque > 0.1, f"{name} glyph {g} is (nearly) empty"
            assert len(np.unique(rgba[..., :3][rgba[..., 3] >= 128], axis=0)) > 3, "not in colour"


def test_cache_root_honours_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("CANETLIB_CACHE", str(tmp_path / "c"))
    assert cache.cache_root() == tmp_path / "c"
    monkeypatch.setenv("CANETLIB_CACHE", "")
    assert cache.cache_root() is None
    monkeypatch.delenv("CANETLIB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache.cache_root() == tmp_path / "x" / "canetlib"


def test_images_are_a_pure_function_of_seed_and_id(small_world: SyntheticSource) -> None:
    ids = ["train/000003", "test/000017"]
    first = [(small_world.load_image(i), small_world.load_mask(i)) for i in ids]
    syn.clear_caches()  # force a fresh render
    again = SyntheticSource(train_images_per_class=6, test_images_per_class=6)
    for (img, mask), i in zip(first, ids):
        assert np.array_equal(img, again.load_image(i))
        assert np.array_equal(mask, again.load_mask(i))
    other = SyntheticSource(seed=1, train_images_per_class=6, test_images_per_class=6)
    assert not np.array_equal(first[0][0], other.load_image(ids[0]))


def test_image_format_and_masks(small_world: SyntheticSource) -> None:
    for image_id in small_world.image_ids("test")[:20]:
        img = small_world.load_image(image_id)
        sem = small_world.load_mask(image_id)
        h, w = sem.shape
        assert img.shape == (h, w, 3) and img.dtype == np.uint8 and sem.dtype == np.uint8
        assert 160 <= h <= 200 and 160 <= w <= 200 and h % 8 == 0 and w % 8 == 0
        values = set(np.unique(sem).tolist())
        assert values <= set(range(21)) | {IGNORE_INDEX}
        assert IGNORE_INDEX in values and 0 in values  # outline band, background
        assert img.std() > 5  # textured, not flat
        for c in values - {0, IGNORE_INDEX}:
            inst = small_world.load_instances(image_id, c)
            assert inst.dtype == np.int32 and inst.shape == (h, w)
            assert np.all(inst[sem == c] > 0)  # every class pixel belongs to an instance
            assert np.all(np.isin(sem[inst > 0], [c, IGNORE_INDEX]))
        assert not small_world.load_instances(image_id, 99).any()


def test_outline_band_surrounds_objects(small_world: SyntheticSource) -> None:
    sem = small_world.load_mask("train/000000")
    obj = (sem != 0) & (sem != IGNORE_INDEX)
    # no object pixel touches background directly: the 255 ring separates them
    for axis in (0, 1):
        a, b = np.moveaxis(sem, axis, 0)[1:], np.moveaxis(sem, axis, 0)[:-1]
        touching = ((a == 0) & (b != 0) & (b != IGNORE_INDEX)) | ((b == 0) & (a != 0) & (a != 255))
        assert not touching.any()
    assert obj.any()


def test_pools_are_disjoint_and_pairs_follow_the_area_rule(small_world: SyntheticSource) -> None:
    train_ids, test_ids = small_world.image_ids("train"), small_world.image_ids("test")
    assert len(train_ids) == 6 * 20 and len(test_ids) == 6 * 20
    assert not set(train_ids) & set(test_ids)
    pairs = small_world.image_pairs("test")
    assert all(i.startswith("test/") for i, _ in pairs)
    for image_id, c in pairs[:40]:
        sem = small_world.load_mask(image_id)
        assert (sem == c).sum() >= small_world.min_area_frac * sem.size
    primary_hits = sum((i, small_world.primary_class(i)) in set(pairs) for i in test_ids)
    assert primary_hits >= 0.8 * len(test_ids)
    with pytest.raises(ValueError, match="unknown image id"):
        small_world.load_image("test/999999")


def test_all_objects_oracle_is_a_poor_answer(world: SyntheticSource) -> None:
    """Marking every object scores <= 45 mIoU (per-class pooled IoU, 255 ignored) over
    300 seeded fold-0 1-shot test episodes: distractors matter."""
    ds = make_dataset(
        "synthetic", fold=0, split="test", shots=1, episodes=300, seed=0, source=world
    )
    inter: dict[int, int] = {}
    union: dict[int, int] = {}
    for i in range(len(ds)):
        spec = ds.spec(i)
        sem = world.load_mask(spec.query_id)  # the query's masks, without building the supports
        valid = sem != IGNORE_INDEX
        gt = (sem == spec.class_id) & valid
        pred = (sem != 0) & valid
        inter[spec.class_id] = inter.get(spec.class_id, 0) + int((gt & pred).sum())
        union[spec.class_id] = union.get(spec.class_id, 0) + int((gt | pred).sum())
    assert sorted(inter) == world.test_classes(0)
    miou = 100.0 * float(np.mean([inter[c] / union[c] for c in inter]))
    assert miou <= 45.0, miou
    assert miou >= 10.0, miou  # targets are not vanishingly small either


def test_pretraining_pool_is_disjoint_from_the_twenty_classes() -> None:
    used = {g for glyphs in CLASS_GLYPHS.values() for g in glyphs}
    assert len(PRETRAIN_GLYPHS) >= 300
    assert len(set(PRETRAIN_GLYPHS)) == len(PRETRAIN_GLYPHS)
    assert not used & set(PRETRAIN_GLYPHS)
    for g in PRETRAIN_GLYPHS:
        assert int(g, 16) not in catalog.EXTRA_EXCLUDED
        name = catalog.glyph_name(g)
        if not name.startswith("U+"):  # the running Python knows the name: re-check the rule
            assert catalog.depicts_category(name) is None, (g, name)
            assert catalog.is_object_like(name), (g, name)
    for g in used:  # the rule flags every world glyph that has a Unicode name
        name = catalog.glyph_name(g)
        if not name.startswith("U+"):
            assert catalog.depicts_category(name) is not None, (g, name)
    assert catalog.depicts_category("BICYCLE") == "bicycle"
    assert catalog.depicts_category("BABY CHICK") == "bird"
    assert catalog.depicts_category("ROCKET") is None
    with pytest.raises(ValueError, match="20 world classes"):
        PretrainingPool(glyphs=("1F6B2", "1F680"))


def test_pretraining_samples_are_deterministic() -> None:
    pool = PretrainingPool(split="train", images_per_class=2, image_size=96)
    assert len(pool) == 2 * pool.num_classes and len(pool.class_names) == pool.num_classes
    for index in (0, 1, pool.num_classes + 5):
        image, label, mask = pool[index]
        assert image.shape == (3, 96, 96) and image.dtype == torch.float32
        assert mask.shape == (96, 96) and mask.dtype == torch.int64
        assert label == index % pool.num_classes
        assert set(torch.unique(mask).tolist()) == {0, 1}
        raw, label2, raw_mask = pool.sample(index)
        assert raw.shape == (96, 96, 3) and raw.dtype == np.uint8 and label2 == label
        assert np.array_equal(raw_mask, mask.numpy())
    a, b = pool.sample(3)[0], PretrainingPool(images_per_class=2, image_size=96).sample(3)[0]
    assert np.array_equal(a, b)
    val = PretrainingPool(split="val", images_per_class=2, image_size=96)
    assert not np.array_equal(a, val.sample(3)[0])
    with pytest.raises(IndexError):
        pool.sample(len(pool))


# -- a world drawn for one fold -------------------------------------------------------------
def test_one_fold_world_never_shows_a_test_class_in_training_images() -> None:
    import numpy as np

    world = SyntheticSource(fold=0, train_images_per_class=4, test_images_per_class=2)
    assert all(c > 5 for _, c in world.image_pairs("train"))
    for image_id in world.image_ids("train"):
        labels = set(np.unique(world.load_mask(image_id)).tolist()) - {0, 255}
        assert labels and not labels & {1, 2, 3, 4, 5}, image_id
    # the test pool is the same picture whatever the fold
    old = SyntheticSource(train_images_per_class=4, test_images_per_class=2)
    for image_id in world.image_ids("test")[:6]:
        assert (world.load_mask(image_id) == old.load_mask(image_id)).all()


def test_base_classes_train_only_and_fold_is_checked() -> None:
    world = SyntheticSource(fold=2, base_classes=3, base_images_per_class=2,
                            train_images_per_class=2, test_images_per_class=2)
    assert world.train_classes(2)[-3:] == [21, 22, 23]
    assert world.test_classes(2) == [11, 12, 13, 14, 15]
    assert world.class_names[20].endswith("(base)")
    assert {world.primary_class(i) for i in world.image_ids("train")[-6:]} == {21, 22, 23}
    assert all(c <= 20 for _, c in world.image_pairs("test"))
    with pytest.raises(ValueError, match="drawn for fold 2"):
        world.train_classes(0)
    with pytest.raises(ValueError, match="need fold"):
        SyntheticSource(base_classes=3)


# -- the default world stays the same picture ------------------------------------------------
def test_default_fingerprint_is_the_hash_of_the_world_spec() -> None:
    """The scene and pair caches are keyed by this fingerprint."""
    kw = {"train_images_per_class": 3, "test_images_per_class": 1}
    spec = {"version": WORLD_VERSION, "openmoji": openmoji_version(), "seed": 0,
            "per_class": {"train": 3, "test": 1}, "size": (160, 200), "main": 0.85,
            "area": 0.015, "glyphs": CLASS_GLYPHS}
    expected = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    assert SyntheticSource(**kw).fingerprint == expected
    spec.update(fold=0, base=[[], 40])
    expected = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    assert SyntheticSource(fold=0, **kw).fingerprint == expected


#: (class id, glyph) of every object of the default world's first layouts, back to front
DEFAULT_OBJECTS = [
    [(7, "1F697"), (1, "2708"), (3, "1F426")],
    [(14, "1F6F5"), (8, "1F408"), (10, "1F404"), (8, "1F431")],
    [(20, "1F5A5"), (4, "26F5"), (19, "1F686"), (2, "1F6B2")],
    [(20, "1F4FA"), (19, "1F686"), (9, "1FA91")],
]


def test_default_world_draws_the_same_objects(world: SyntheticSource) -> None:
    ids = ["train/000000", "train/000007", "test/000003", "test/000019"]
    assert [[(o.class_id, o.glyph) for o in world.layout(i).objects] for i in ids] \
        == DEFAULT_OBJECTS


def test_the_world_says_which_episodes_show_the_query_s_drawing(world: SyntheticSource) -> None:
    """A class's glyphs come from its catalogue entry; an image shares its own drawing; a
    one-glyph class always shares one, a class of several glyphs sometimes does not."""
    from canetlib.data import make_dataset

    ds = make_dataset("synthetic", source=world, fold=0, split="test", shots=1, seed=0,
                      episodes=200)
    shared: dict[str, list[bool]] = {}
    for i in range(len(ds)):
        spec = ds.spec(i)
        name = PASCAL_CLASSES[spec.class_id - 1]
        query = world.drawings(spec.query_id, spec.class_id)
        assert query and query <= set(CLASS_GLYPHS[name])
        assert world.shares_drawing(spec.query_id, [spec.query_id], spec.class_id)
        same = world.shares_drawing(spec.query_id, spec.support_ids, spec.class_id)
        assert same == bool(query & world.drawings(spec.support_ids[0], spec.class_id))
        shared.setdefault(name, []).append(same)
    assert len(CLASS_GLYPHS["bicycle"]) == 1 and all(shared["bicycle"])
    for name in ("aeroplane", "bird", "bottle"):
        assert len(CLASS_GLYPHS[name]) > 1 and 0 < sum(shared[name]) < len(shared[name])
