"""PASCAL-5i preparation and reading, on a miniature VOC2012 + SBD tree."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fakes import PascalTree, build_pascal_tree, make_tar, save_palette_png
from PIL import Image

from canetlib.data.download import RemoteFile, file_digest
from canetlib.data.imageio import read_image, read_label, read_mask
from canetlib.data.pascal import MIN_AREA, PascalSource
from canetlib.data.prepare import pascal as preparation
from canetlib.data.prepare.pascal import prepare_pascal


@pytest.fixture()
def tree(tmp_path: Path) -> PascalTree:
    return build_pascal_tree(tmp_path / "pascal")


@pytest.fixture()
def prepared(tree: PascalTree) -> PascalTree:
    prepare_pascal(tree.root, progress=False)
    return tree


def _snapshot(root: Path) -> dict[str, bytes]:
    out = root / "canet"
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != ".prepared-pascal.json"
    }


# --------------------------------------------------------------------------- prepare


def test_counts_lists_and_printout(tree: PascalTree, capsys: pytest.CaptureFixture[str]) -> None:
    counts = prepare_pascal(tree.root, progress=False)
    assert counts["val_pairs_per_fold"] == tree.val_per_fold == [1, 0, 2, 1]
    assert counts["train_pairs_per_fold"] == tree.train_per_fold == [2, 1, 0, 1]
    assert counts["val_images"] == 3 and counts["train_images"] == 4
    assert counts["reference_val_pairs_per_fold"] == [346, 451, 725, 346]
    assert counts["reference_train_pairs_per_fold"] == [2286, 3425, 5883, 2086]
    printed = capsys.readouterr().out
    assert "fold 2: val pairs 2 (reference 725), train pairs 0 (reference 5883)" in printed

    lists = tree.root / "canet" / "lists"
    assert (lists / "val_all.txt").read_text().split("\n")[0] == "2008_000001 1"
    assert (lists / "val_fold2.txt").read_text() == "2008_000002 11\n2008_000002 15\n"
    assert (lists / "train_fold0.txt").read_text() == "2007_000010 2\n2009_000100 3\n"
    assert (lists / "val_fold1.txt").read_text() == ""

    source = PascalSource(tree.root)
    assert source.image_pairs("test") == tree.val_pairs
    assert source.image_pairs("train") == tree.train_pairs


def test_val_images_never_in_training_pool(prepared: PascalTree) -> None:
    source = PascalSource(prepared.root)
    train_ids = {i for i, _ in source.image_pairs("train")}
    assert train_ids == set(prepared.train_ids)
    # 2008_000001 / 2008_000003 are listed by SBD (val / train) but are VOC val images
    assert not train_ids & set(prepared.val_ids)
    assert {i for i, _ in source.image_pairs("test")} == set(prepared.val_ids)


def test_area_rule_at_the_threshold(prepared: PascalTree) -> None:
    source = PascalSource(prepared.root)
    assert MIN_AREA == 2048
    pairs = set(source.image_pairs("test")) | set(source.image_pairs("train"))
    assert int((source.load_mask("2008_000002") == 11).sum()) == 2048
    assert ("2008_000002", 11) in pairs  # exactly 2 * 32 * 32: kept
    assert int((source.load_mask("2008_000003") == 16).sum()) == 2047
    assert ("2008_000003", 16) not in pairs  # one pixel short: dropped
    for image_id, small in [("2008_000001", 6), ("2007_000010", 7), ("2009_000100", 12)]:
        assert (source.load_mask(image_id) == small).sum() == 400  # still in the mask
        assert (image_id, small) not in pairs


def test_voc_mask_wins_and_sbd_masks_are_converted(prepared: PascalTree) -> None:
    source = PascalSource(prepared.root)
    both = source.load_mask("2007_000020")  # VOC says class 7, SBD says 8
    assert set(np.unique(both).tolist()) == {0, 7, 255}
    sbd_only = source.load_mask("2009_000100")
    assert set(np.unique(sbd_only).tolist()) == {0, 3, 12}
    assert sbd_only.dtype == np.uint8 and sbd_only.shape == (96, 128)
    stored = Image.open(prepared.root / "canet" / "SegmentationClassAug" / "2009_000100.png")
    assert stored.mode == "P"
    for path in (prepared.root / "canet" / "SegmentationClassAug").glob("*.png"):
        values = set(np.unique(read_mask(path)).tolist())
        assert values <= set(range(21)) | {255}


def test_rerun_is_idempotent(
    prepared: PascalTree, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _snapshot(prepared.root)
    first = PascalSource(prepared.root).image_pairs("train")

    def no_write(*_args: object, **_kw: object) -> None:
        raise AssertionError("a finished file was rewritten")

    monkeypatch.setattr(preparation, "write_label_png", no_write)
    again = prepare_pascal(prepared.root, progress=False)  # marker: nothing recomputed
    assert again["train_pairs_per_fold"] == prepared.train_per_fold
    assert "fold 0" in capsys.readouterr().out
    (prepared.root / "canet" / ".prepared-pascal.json").unlink()
    rebuilt = prepare_pascal(prepared.root, progress=False)  # no marker: masks skipped
    assert rebuilt["val_pairs_per_fold"] == prepared.val_per_fold
    assert _snapshot(prepared.root) == before
    assert PascalSource(prepared.root).image_pairs("train") == first


def test_restart_after_interruption(
    tree: PascalTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = build_pascal_tree(tmp_path / "reference")
    prepare_pascal(reference.root, progress=False)

    real_write = preparation.write_label_png
    calls = {"n": 0}

    def crash_after_five(label: np.ndarray, path: Path) -> None:
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt("simulated interruption")
        real_write(label, path)

    monkeypatch.setattr(preparation, "write_label_png", crash_after_five)
    with pytest.raises(KeyboardInterrupt):
        prepare_pascal(tree.root, progress=False)
    out = tree.root / "canet"
    assert not (out / ".prepared-pascal.json").exists()
    assert not (out / "lists" / "train_all.txt").exists()
    stale = out / "SegmentationClassAug" / ".2009_000200.png.abc123.part"
    stale.write_bytes(b"half a png")  # what a killed process leaves behind
    with pytest.raises(FileNotFoundError):
        PascalSource(tree.root)

    monkeypatch.setattr(preparation, "write_label_png", real_write)
    counts = prepare_pascal(tree.root, progress=False)
    assert counts["train_pairs_per_fold"] == tree.train_per_fold
    assert not list(out.rglob("*.part"))
    assert _snapshot(tree.root) == _snapshot(reference.root)


def test_instances_follow_the_mask_source(prepared: PascalTree) -> None:
    source = PascalSource(prepared.root)
    persons = source.load_instances("2008_000002", 15)  # VOC object PNG: ids 2, 3
    assert persons.dtype == np.int32 and persons.shape == (96, 128)
    assert set(np.unique(persons).tolist()) == {0, 2, 3}
    assert np.array_equal(persons > 0, source.load_mask("2008_000002") == 15)
    assert set(np.unique(source.load_instances("2008_000002", 11)).tolist()) == {0, 1}
    sbd = source.load_instances("2009_000100", 3)  # SBD GTinst: two objects
    assert set(np.unique(sbd).tolist()) == {0, 1, 2}
    assert (sbd == 1).sum() == 56 * 40 and (sbd == 2).sum() == 56 * 40
    assert not source.load_instances("2009_000100", 12)[source.load_mask("2009_000100") != 12].any()
    assert not source.load_instances("2007_000020", 8).any()  # SBD's class for it is not used
    assert not source.load_instances("2008_000001", 9).any()


def test_instances_fall_back_to_connected_components(prepared: PascalTree) -> None:
    (prepared.root / "canet" / "SegmentationObjectAug" / "2007_000010.png").unlink()
    inst = PascalSource(prepared.root).load_instances("2007_000010", 2)
    assert set(np.unique(inst).tolist()) == {0, 1, 2}


def test_source_reading_and_folds(prepared: PascalTree) -> None:
    source = PascalSource(str(prepared.root))
    image = source.load_image("2008_000001")
    assert image.shape == (96, 128, 3) and image.dtype == np.uint8
    gray_sbd_only = source.load_image("2009_000200")  # only in SBD img/, grayscale JPEG
    assert gray_sbd_only.shape == (96, 128, 3)
    assert np.array_equal(gray_sbd_only[:, :, 0], gray_sbd_only[:, :, 2])
    assert source.num_folds == 4 and source.num_classes == 20
    assert source.test_classes(3) == [16, 17, 18, 19, 20]
    assert 1 not in source.train_classes(0) and len(source.train_classes(0)) == 15
    pairs = source.image_pairs("train")
    pairs.clear()
    assert source.image_pairs("train")  # a copy was returned
    with pytest.raises(ValueError, match="split"):
        source.image_pairs("val")
    with pytest.raises(FileNotFoundError, match="2099_000000"):
        source.load_image("2099_000000")


# --------------------------------------------------------------------------- errors


def test_missing_dataset_names_path_and_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        prepare_pascal(tmp_path / "nothing", progress=False)
    message = str(err.value)
    assert str(tmp_path / "nothing") in message
    assert "python -m canetlib prepare pascal --root" in message and "--download" in message
    with pytest.raises(FileNotFoundError, match="python -m canetlib prepare pascal"):
        PascalSource(tmp_path / "nothing")


def test_missing_sbd_is_reported(tree: PascalTree) -> None:
    shutil.rmtree(tree.root / "benchmark_RELEASE")
    with pytest.raises(FileNotFoundError, match="benchmark_RELEASE"):
        prepare_pascal(tree.root, progress=False)


def test_corrupt_sbd_file_is_named(tree: PascalTree) -> None:
    bad = tree.root / "benchmark_RELEASE" / "dataset" / "cls" / "2009_000100.mat"
    bad.write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(ValueError, match="2009_000100.mat"):
        prepare_pascal(tree.root, progress=False)


def test_out_of_range_mask_value_is_named(tree: PascalTree) -> None:
    path = tree.root / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000020.png"
    mask = np.array(Image.open(path))
    mask[0, 0] = 42
    save_palette_png(mask, path)
    with pytest.raises(ValueError, match="2007_000020.png"):
        prepare_pascal(tree.root, progress=False)


def test_download_from_archives(
    tree: PascalTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    voc_tar = make_tar(tree.root / "VOCdevkit", served / "VOCtrainval_11-May-2012.tar", "VOCdevkit")
    sbd_tgz = make_tar(
        tree.root / "benchmark_RELEASE", served / "benchmark.tgz", "benchmark_RELEASE"
    )
    for name, archive in (("VOC_ARCHIVE", voc_tar), ("SBD_ARCHIVE", sbd_tgz)):
        remote = RemoteFile(archive.as_uri(), archive.name, md5=file_digest(archive))
        monkeypatch.setattr(preparation, name, remote)
    root = tmp_path / "downloaded"
    counts = prepare_pascal(root, download=True, progress=False)
    assert counts["val_pairs_per_fold"] == tree.val_per_fold
    assert (root / "downloads" / "benchmark.tgz").is_file()
    assert not list((root / "downloads").glob("*.part"))
    shutil.rmtree(served)  # present now: a second call downloads nothing
    assert prepare_pascal(root, download=True, progress=False) == counts


def test_prepare_command_line(tree: PascalTree, capsys: pytest.CaptureFixture[str]) -> None:
    from canetlib.cli import main

    assert main(["prepare", "pascal", "--root", str(tree.root), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    counts = json.loads(printed[printed.index("{"):])
    assert counts["val_pairs_per_fold"] == tree.val_per_fold
    assert PascalSource(tree.root).image_pairs("train") == tree.train_pairs


# --------------------------------------------------------------------------- image reading


def test_read_image_converts_every_mode(tmp_path: Path) -> None:
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    rgba = np.zeros((6, 8, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    palette = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8))
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.save(tmp_path / "palette.png")
    Image.fromarray(np.full((6, 8), 0.5, dtype=np.float32)).save(tmp_path / "float.tiff")

    g = read_image(tmp_path / "gray.png")
    assert g.shape == (6, 8, 3) and g.dtype == np.uint8 and np.array_equal(g[:, :, 1], gray)
    assert read_image(tmp_path / "rgba.png")[0, 0].tolist() == [200, 0, 0]
    assert np.array_equal(read_image(tmp_path / "sixteen.png")[:, :, 0], gray)
    assert read_image(tmp_path / "palette.png")[0, 1].tolist() == [10, 20, 30]
    assert read_image(tmp_path / "float.tiff")[0, 0].tolist() == [128, 128, 128]
    assert read_label(tmp_path / "palette.png").tolist() == [[0, 1], [1, 0]]  # indices


def test_corrupt_and_missing_files(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    for name in ("cut.jpg", "junk.png"):
        with pytest.raises(ValueError, match=name):
            read_image(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="absent.png"):
        read_mask(tmp_path / "absent.png")
    Image.fromarray(np.full((4, 4, 3), [1, 2, 3], dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="rgb.png"):
        read_mask(tmp_path / "rgb.png")
