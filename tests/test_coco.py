"""COCO-20i preparation and reading, on a miniature COCO 2014 tree."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fakes import (
    COCO_SHAPE,
    CocoTree,
    build_coco_tree,
    class_of,
    compressed_rle,
    make_zip,
    rect_polygon,
    uncompressed_rle,
)

from canetlib.data.coco import COCO_CATEGORY_IDS, COCO_CLASSES, CocoSource, scheme_classes
from canetlib.data.download import RemoteFile, file_digest
from canetlib.data.prepare import coco as preparation
from canetlib.data.prepare.coco import decode_segmentation, prepare_coco


@pytest.fixture()
def tree(tmp_path: Path) -> CocoTree:
    return build_coco_tree(tmp_path / "coco")


@pytest.fixture()
def prepared(tree: CocoTree) -> CocoTree:
    prepare_coco(tree.root, progress=False)
    return tree


def _outputs(root: Path) -> dict[str, bytes]:
    out = root / "canet"
    return {
        p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
    }


def test_constants() -> None:
    assert len(COCO_CLASSES) == len(COCO_CATEGORY_IDS) == 80
    assert COCO_CATEGORY_IDS[-1] == 90 and class_of(90) == 80 and COCO_CLASSES[79] == "toothbrush"
    assert COCO_CLASSES[class_of(62) - 1] == "chair"


def test_pairs_and_counts(tree: CocoTree, capsys: pytest.CaptureFixture[str]) -> None:
    counts = prepare_coco(tree.root, progress=False)
    assert (
        "COCO-20i: 2 train2014 images (3 pairs), 2 val2014 images (1 pairs)"
        in capsys.readouterr().out
    )
    assert counts["train_images"] == 2 and counts["val_images"] == 2
    # person=1 (fold 0), bottle=40 (fold 3), toothbrush=80 (fold 3) under the interleaved split
    assert counts["interleaved"]["train_pairs_per_fold"] == [1, 0, 0, 2]
    assert counts["blocks"]["train_pairs_per_fold"] == [1, 1, 0, 1]
    assert counts["interleaved"]["val_pairs_per_fold"] == [1, 0, 0, 0]  # chair = 57
    assert counts["canet"] == {"train_pairs": 2, "val_pairs": 1, "test_pairs": 0}
    source = CocoSource(tree.root)
    assert source.image_pairs("train") == tree.train_pairs
    assert source.image_pairs("test") == tree.val_pairs


def test_masks_polygons_rle_and_crowd(prepared: CocoTree) -> None:
    source = CocoSource(prepared.root)
    train9 = "COCO_train2014_000000000009"
    mask = source.load_mask(train9)
    assert mask.shape == COCO_SHAPE and mask.dtype == np.uint8
    assert np.all(mask[prepared.crowd[train9]] == 255)  # crowd (uncompressed RLE) -> ignore
    assert abs(int((mask == 1).sum()) - 50 * 48) <= 100  # person polygon
    assert int((mask == class_of(18)).sum()) in range(80, 130)  # small dog polygon, kept in mask
    assert (train9, class_of(18)) not in source.image_pairs("train")  # but below the area rule
    for (image_id, class_id), region in prepared.exact.items():  # compressed RLE, exact
        assert np.array_equal(source.load_mask(image_id) == class_id, region)
    assert not source.load_mask("COCO_val2014_000000000073").any()  # no annotation
    bottle = source.load_mask("COCO_train2014_000000000025") == class_of(44)
    assert int(bottle.sum()) == 2 * 36 * 30  # two-part polygon, both parts


def test_instances(prepared: CocoTree) -> None:
    source = CocoSource(prepared.root)
    train9 = "COCO_train2014_000000000009"
    person = source.load_instances(train9, 1)
    assert person.dtype == np.int32
    assert len(np.unique(person[person > 0])) == 1  # crowd is not an instance
    assert np.array_equal(person > 0, source.load_mask(train9) == 1)
    dog = source.load_instances(train9, class_of(18))
    assert (
        len(np.unique(dog[dog > 0])) == 1
        and not np.intersect1d(dog[dog > 0], person[person > 0]).size
    )
    image = source.load_image(train9)
    assert image.shape == (*COCO_SHAPE, 3) and image.dtype == np.uint8


def test_decode_segmentation_formats() -> None:
    h, w = 20, 30
    region = np.zeros((h, w), dtype=bool)
    region[3:11, 5:17] = True
    region[15:18, 0:30] = True
    assert np.array_equal(decode_segmentation(uncompressed_rle(region), h, w).astype(bool), region)
    assert np.array_equal(decode_segmentation(compressed_rle(region), h, w).astype(bool), region)
    square = decode_segmentation([rect_polygon(5, 3, 17, 11)], h, w)
    assert abs(int(square.sum()) - 12 * 8) <= 20
    assert not decode_segmentation([], h, w).any()
    assert not decode_segmentation([[1.0, 2.0, 3.0, 4.0]], h, w).any()  # degenerate polygon
    with pytest.raises(ValueError, match="size"):
        decode_segmentation(compressed_rle(region), w, h)
    with pytest.raises(ValueError, match="unsupported"):
        decode_segmentation("nope", h, w)


@pytest.mark.parametrize("scheme", ["interleaved", "blocks"])
def test_four_fold_schemes_partition_the_classes(scheme: str) -> None:
    folds = [scheme_classes(scheme, f)["test"] for f in range(4)]
    assert sorted(c for fold in folds for c in fold) == list(range(1, 81))
    for fold, test in enumerate(folds):
        train = scheme_classes(scheme, fold)["train"]
        assert len(test) == 20 and len(train) == 60 and not set(test) & set(train)


def test_split_schemes_on_the_source(prepared: CocoTree) -> None:
    interleaved = CocoSource(prepared.root)
    assert interleaved.num_folds == 4
    assert interleaved.test_classes(0) == list(range(1, 81, 4))
    assert interleaved.test_classes(3)[:3] == [4, 8, 12]
    assert interleaved.val_classes(0) == []
    blocks = CocoSource(prepared.root, split_scheme="blocks")
    assert blocks.test_classes(1) == list(range(21, 41))
    assert blocks.classes(1, "train") == list(range(1, 21)) + list(range(41, 81))
    canet = CocoSource(prepared.root, split_scheme="canet")
    assert canet.num_folds == 1
    assert canet.train_classes(0) == list(range(1, 41))
    assert canet.val_classes(0) == list(range(41, 61))
    assert canet.test_classes(0) == list(range(61, 81))
    with pytest.raises(ValueError, match="fold"):
        canet.test_classes(1)
    with pytest.raises(ValueError, match="fold"):
        interleaved.test_classes(4)
    with pytest.raises(ValueError, match="split_scheme"):
        CocoSource(prepared.root, split_scheme="random")


def test_rerun_and_restart(tree: CocoTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = build_coco_tree(tmp_path / "reference")
    prepare_coco(reference.root, progress=False)
    real_write = preparation.write_label_png
    calls = {"n": 0}

    def crash_after_three(label: np.ndarray, path: Path) -> None:
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt("simulated interruption")
        real_write(label, path)

    monkeypatch.setattr(preparation, "write_label_png", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        prepare_coco(tree.root, progress=False)
    assert not (tree.root / "canet" / ".prepared-coco.json").exists()
    monkeypatch.setattr(preparation, "write_label_png", real_write)
    first = prepare_coco(tree.root, progress=False)
    assert _outputs(tree.root) == _outputs(reference.root)

    def no_write(*_args: object) -> None:
        raise AssertionError("a finished mask was rewritten")

    monkeypatch.setattr(preparation, "write_label_png", no_write)
    assert prepare_coco(tree.root, progress=False) == first
    (tree.root / "canet" / ".prepared-coco.json").unlink()
    assert prepare_coco(tree.root, progress=False) == first


def test_worker_processes_give_the_same_output(tree: CocoTree, tmp_path: Path) -> None:
    reference = build_coco_tree(tmp_path / "reference")
    prepare_coco(reference.root, progress=False)
    prepare_coco(tree.root, progress=False, workers=2)
    assert _outputs(tree.root) == _outputs(reference.root)


def test_missing_and_bad_inputs(tree: CocoTree, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="python -m canetlib prepare coco --root"):
        prepare_coco(tmp_path / "empty", progress=False)
    with pytest.raises(FileNotFoundError, match="python -m canetlib prepare coco"):
        CocoSource(tree.root)
    ann = tree.root / "annotations" / "instances_val2014.json"
    data = json.loads(ann.read_text())
    data["categories"] = data["categories"][:3]
    ann.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="80 COCO categories"):
        prepare_coco(tree.root, progress=False)
    ann.write_text("{ truncated")
    with pytest.raises(ValueError, match="instances_val2014.json"):
        prepare_coco(tree.root, progress=False)


def test_download_from_zips(
    tree: CocoTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    for attr, folder in (
        ("TRAIN_ARCHIVE", "train2014"),
        ("VAL_ARCHIVE", "val2014"),
        ("ANNOTATIONS_ARCHIVE", "annotations"),
    ):
        staging = tmp_path / "staging" / folder
        shutil.copytree(tree.root / folder, staging / folder)
        archive = make_zip(staging, served / f"{folder}.zip")
        monkeypatch.setattr(
            preparation, attr, RemoteFile(archive.as_uri(), archive.name, md5=file_digest(archive))
        )
    root = tmp_path / "downloaded"
    counts = prepare_coco(root, download=True, progress=False)
    assert counts["train_pairs"] == 3 and counts["val_pairs"] == 1
    assert CocoSource(root).image_pairs("train") == tree.train_pairs
