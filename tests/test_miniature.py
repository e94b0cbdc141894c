"""The embedded-world VOC2012 + SBD tree of canetlib.data.world.miniature, read back by prepare_pascal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from canetlib.data.imageio import read_label
from canetlib.data.pascal import PascalSource
from canetlib.data.prepare.pascal import prepare_pascal
from canetlib.data.world.miniature import build_world_tree


@pytest.fixture(scope="module")
def world_tree(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("world") / "pascal"
    return build_world_tree(root, images_per_class=1, image_size=(256, 256))


def test_layout_and_lists(world_tree) -> None:
    root: Path = world_tree.root
    voc = root / "VOCdevkit" / "VOC2012"
    sbd = root / "benchmark_RELEASE" / "dataset"
    assert world_tree.images == 40
    assert len(world_tree.voc_val) == 20 and len(world_tree.voc_train) == 10
    assert len(world_tree.sbd_train) + len(world_tree.sbd_val) == 10
    sets = voc / "ImageSets" / "Segmentation"
    assert (sets / "val.txt").read_text().split() == world_tree.voc_val
    assert (sbd / "train.txt").read_text().split() == world_tree.sbd_train
    for image_id in world_tree.voc_val + world_tree.voc_train:
        assert (voc / "JPEGImages" / f"{image_id}.jpg").is_file()
    for image_id in world_tree.sbd_train + world_tree.sbd_val:
        assert (sbd / "img" / f"{image_id}.jpg").is_file()


def test_voc_masks_have_outlines_sbd_masks_do_not(world_tree) -> None:
    voc = world_tree.root / "VOCdevkit" / "VOC2012"
    sbd = world_tree.root / "benchmark_RELEASE" / "dataset"
    image_id = world_tree.voc_val[0]
    cls = read_label(voc / "SegmentationClass" / f"{image_id}.png")
    obj = read_label(voc / "SegmentationObject" / f"{image_id}.png")
    assert (cls == 255).any() and set(np.unique(cls)) <= set(range(21)) | {255}
    assert np.array_equal(cls == 255, obj == 255)
    assert ((obj > 0) & (obj < 255) == (cls > 0) & (cls < 255)).all()
    sbd_id = world_tree.sbd_train[0]
    gt = scipy.io.loadmat(sbd / "cls" / f"{sbd_id}.mat")["GTcls"]["Segmentation"][0, 0]
    inst = scipy.io.loadmat(sbd / "inst" / f"{sbd_id}.mat")["GTinst"]["Segmentation"][0, 0]
    assert not (gt == 255).any() and gt.max() > 0
    assert np.array_equal(gt > 0, inst > 0)


def test_prepare_and_episodes(world_tree, capsys: pytest.CaptureFixture[str]) -> None:
    counts = prepare_pascal(world_tree.root, progress=False)
    capsys.readouterr()
    assert counts["val_images"] == 20 and counts["train_images"] == 20
    source = PascalSource(world_tree.root)
    train_ids = {i for i, _ in source.image_pairs("train")}
    assert not train_ids & set(world_tree.voc_val)
    assert sum(counts["val_pairs_per_fold"]) == counts["val_pairs"] > 0
    for image_id, class_id in source.image_pairs("train")[:3]:
        image, mask = source.load_image(image_id), source.load_mask(image_id)
        assert image.shape == (*mask.shape, 3)
        assert (mask == class_id).sum() >= 2048
        assert source.load_instances(image_id, class_id).max() >= 1
