"""Faults, round two: mask files that are no masks, a full disk, archives in the wrong
folder, and flags of ``prepare``, ``segment``, ``bench`` and the Table 3 script checked before work."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import segment_inputs, table3_script, train_cli
from PIL import Image

from canetlib.cli import main
from canetlib.cli.segmentation import as_mask, load_mask
from canetlib.data.imageio import read_label, read_mask, voc_palette
from canetlib.model import checkpoint
from canetlib.model.files import atomic_path

H, W = 40, 48


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The single stderr line of a refused command, without ``error: `` and the newline."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err[len("error: "):-1]


def disc() -> np.ndarray:
    """A 0/1 ``(H, W)`` disc: round edges, so JPEG compression leaves values 0, 1, 2."""
    yy, xx = np.mgrid[:H, :W]
    return (((yy - H / 2) ** 2 + (xx - W / 3) ** 2) < (H / 3) ** 2).astype(np.uint8)


def alpha_only(path: Path) -> Path:
    """RGBA PNG: colour 0 everywhere, the object only in the alpha channel."""
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 3] = disc() * 255
    Image.fromarray(rgba).save(path)
    return path


def red_on_black(path: Path) -> Path:
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0] = disc() * 255
    Image.fromarray(rgb).save(path)
    return path


def jpeg_01(path: Path) -> Path:
    Image.fromarray(disc()).save(path, quality=75)
    return path


ALPHA = ("the mask is in the alpha channel: its colour is 0 everywhere and only the "
         "transparency marks the object; save a single-channel PNG mask (mode L or P): "
         "0 background, 1 object (or its class id), 255 ignore")
COLOUR = "it is an RGB colour mask (colours (0, 0, 0), (255, 0, 0)); save a single-channel PNG"
JPEG_LABEL = (" is a JPEG: its lossy compression changes label values at edges (found 0, 1, 2); "
              "save masks as PNG")
JPEG = ("is a JPEG: lossy compression changed its values (found 0, 1, 2), so a 0/1 mask no "
        "longer reads as one; save masks as PNG")
BAD_MASKS = {
    "alpha.png": (alpha_only, f": {ALPHA}", f": {ALPHA}"),
    "red.png": (red_on_black, f": {COLOUR}", f": {COLOUR}"),
    "m.jpg": (jpeg_01, f" {JPEG}", JPEG_LABEL),
}


def segment_argv(files: dict[str, Path], out: Path, *extra: str,
                 mask: Path | None = None) -> list[str]:
    """``segment`` arguments for the files of ``segment_inputs``, writing ``out``."""
    return ["segment", "--checkpoint", str(files["ckpt"]), "--support", str(files["support"]),
            "--support-mask", str(mask or files["mask"]), "--query", str(files["query"]),
            "--out", str(out), *extra]


@pytest.mark.parametrize("name", BAD_MASKS)
def test_mask_files_that_are_no_masks_name_the_cause(name: str, tmp_path: Path) -> None:
    make, segment_says, label_says = BAD_MASKS[name]
    path = make(tmp_path / name)
    with pytest.raises(ValueError) as err:
        as_mask(path, (H, W), "support mask 1")
    assert str(err.value).startswith(f"support mask 1 {path}{segment_says}"), err.value
    with pytest.raises(ValueError) as err:
        load_mask(path)
    assert str(err.value).startswith(f"mask file {path}{segment_says}"), err.value
    with Image.open(path) as img, pytest.raises(ValueError) as err:
        as_mask(img, (H, W))
    assert str(err.value).startswith(f"support mask{segment_says}"), err.value
    for read in (read_label, read_mask):
        with pytest.raises(ValueError) as err:
            read(path)
        assert str(err.value).startswith(f"label image {path}{label_says}"), err.value


@pytest.mark.parametrize("name", BAD_MASKS)
def test_segment_names_the_mask_cause_before_loading_the_model(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    files = segment_inputs(tmp_path)
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(files["support"])
    mask = BAD_MASKS[name][0](tmp_path / name)
    monkeypatch.setattr(checkpoint, "load", lambda *a, **k: pytest.fail("loaded"))
    out = tmp_path / "out" / "p.png"
    assert main(segment_argv(files, out, "--device", "cpu", mask=mask)) == 2
    assert one_error(capsys).startswith(f"support mask 1 {mask}{BAD_MASKS[name][1]}")
    assert not out.parent.exists()


def voc_style(path: Path) -> Path:
    """Palette PNG with VOC indices 0, 15 and 255 (the border)."""
    label = disc() * 15
    label[0, :] = 255
    img = Image.fromarray(label)
    img.putpalette(voc_palette())
    img.save(path)
    return path


def gray(values: np.ndarray, path: Path, **kw: int) -> Path:
    Image.fromarray(values.astype(np.uint8)).save(path, **kw)
    return path


def opaque_rgba(path: Path) -> Path:
    """A 0/255 gray mask saved as RGBA with alpha 255 everywhere."""
    g = disc() * 255
    Image.fromarray(np.dstack([g, g, g, np.full_like(g, 255)])).save(path)
    return path


def with_border(path: Path) -> Path:
    label = disc().copy()
    label[0, :] = 255
    return gray(label, path)


LEGITIMATE = {
    "voc.png": voc_style,
    "l01.png": lambda p: gray(disc(), p),
    "l01_255.png": with_border,
    "l0255.png": lambda p: gray(disc() * 255, p),
    "l0255.jpg": lambda p: gray(disc() * 255, p, quality=75),
    "rgba.png": opaque_rgba,
}


@pytest.mark.parametrize("name", LEGITIMATE)
def test_legitimate_masks_still_read(name: str, tmp_path: Path) -> None:
    path = LEGITIMATE[name](tmp_path / name)
    mask = as_mask(path, (H, W))
    assert np.array_equal(mask == 1, disc() == 1) or name in ("voc.png", "l01_255.png")
    assert (mask[1:] == 1).sum() == (disc()[1:] == 1).sum()
    if not name.endswith(".jpg"):
        read_mask(path)


# --------------------------------------------------------------------------- full disk
def enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def torch_enospc(*args: object, **kwargs: object) -> None:
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")


@pytest.mark.parametrize("failure", [enospc, torch_enospc])
def test_full_disk_during_training_names_the_file_and_keeps_the_checkpoint(
        failure: Callable[..., None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    saves: list[int] = []
    real_save = torch.save

    def save(*args: object, **kwargs: object) -> None:
        saves.append(1)
        if len(saves) == 2:  # the second last.pt: the disk is full now
            failure()
        real_save(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch, "save", save)
    out = tmp_path / "run"
    assert main(train_cli(out, "--max-steps", "3")) == 2
    last = out / "last.pt"
    assert one_error(capsys) == (f"cannot write {last}: no space left on device; the run "
                                 f"stopped at step 2; {last} of step 1 is intact; free space, "
                                 "then continue with --resume")
    assert checkpoint.load(last)["step"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["last.pt", "log.csv"]  # no temp file
    monkeypatch.setattr(torch, "save", real_save)  # space freed: the printed advice works
    assert main(train_cli(out, "--max-steps", "3", "--resume")) == 0
    assert checkpoint.load(last)["step"] == 3


def test_full_disk_on_the_first_checkpoint_says_nothing_was_saved(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(torch, "save", enospc)
    out = tmp_path / "run"
    assert main(train_cli(out, "--max-steps", "2")) == 2
    assert one_error(capsys) == (f"cannot write {out / 'last.pt'}: no space left on device; "
                                 "the run stopped at step 1; no checkpoint was saved yet; free "
                                 "space, then start again with --overwrite")
    assert not (out / "last.pt").exists()


def test_full_disk_while_logging_names_log_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from canetlib.training.engine import loop

    def append_row(path: Path, *args: object, **kwargs: object) -> None:
        enospc()

    monkeypatch.setattr(loop, "append_row", append_row)
    out = tmp_path / "run"
    assert main(train_cli(out, "--max-steps", "2")) == 2
    assert one_error(capsys).startswith(f"cannot write {out / 'log.csv'}: no space left on "
                                        "device; the run stopped at step 1")


def test_segment_on_a_full_disk_names_the_mask_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    files = segment_inputs(tmp_path)
    out = tmp_path / "out" / "p.png"
    monkeypatch.setattr(Image.Image, "save", enospc)
    assert main(segment_argv(files, out, "--size", "32", "--iterations", "1",
                             "--device", "cpu")) == 2
    assert one_error(capsys) == f"cannot write {out}: no space left on device; nothing was written"
    assert list(out.parent.iterdir()) == []


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_text("old")
    with pytest.raises(OSError, match=f"cannot write {target}: no space left on device; the "
                                      "previous r.json is unchanged"), atomic_path(target):
        enospc()
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    with pytest.raises(ConnectionResetError), atomic_path(target):  # not a write failure
        raise ConnectionResetError("reset")


# --------------------------------------------------------------------------- archives in the root
def fake_archive(path: Path) -> Path:
    """A tar holding ``data/a.txt``."""
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        body = b"hello"
        info = tarfile.TarInfo("data/a.txt")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return path


ROOT_ARCHIVES = [
    ("pascal", "VOCtrainval_11-May-2012.tar",
     "PASCAL-5i: VOC2012 JPEGImages not found at {root}/VOCdevkit/VOC2012/JPEGImages"),
    ("pascal", "benchmark.tgz", None),
    ("coco", "train2014.zip", "COCO-20i: {root}/train2014 not found"),
    ("coco", "annotations_trainval2014.zip", None),
]


@pytest.mark.parametrize(("dataset", "name", "first"), ROOT_ARCHIVES)
@pytest.mark.parametrize("where", [".", "downloads"])
def test_prepare_names_an_archive_left_in_the_root_folder(
        dataset: str, name: str, first: str | None, where: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    if name == "benchmark.tgz":  # VOC unpacked, SBD still an archive
        voc = root / "VOCdevkit" / "VOC2012"
        for folder in ("JPEGImages", "SegmentationClass", "SegmentationObject"):
            (voc / folder).mkdir(parents=True)
        (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
        for split in ("train", "val"):
            (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("")
    if name == "annotations_trainval2014.zip":  # images unpacked, annotations not
        (root / "train2014").mkdir(parents=True)
    archive = root / where / name
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.write_bytes(b"not unpacked yet")
    assert main(["prepare", dataset, "--root", str(root)]) == 2
    message = one_error(capsys)
    if first is not None:
        assert message.startswith(first.format(root=root) + f"; the archive {archive} is there"), \
            message
    assert message.endswith(f"is there but not unpacked: run python -m canetlib prepare {dataset} "
                            f"--root {root} --download to check and unpack it (an archive "
                            "already in the root folder or its downloads/ is used as it is, "
                            "nothing is downloaded; in Python: download=True)"), message
    assert archive.read_bytes() == b"not unpacked yet"


def test_prepare_without_any_archive_gives_the_prepare_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare", "pascal", "--root", str(tmp_path)]) == 2
    assert one_error(capsys).endswith(". Prepare the dataset with: python -m canetlib prepare "
                                      f"pascal --root {tmp_path} [--download]")


def test_download_uses_an_archive_in_the_root_folder(tmp_path: Path) -> None:
    from canetlib.data.archive import ensure_dataset
    from canetlib.data.download import RemoteFile, file_digest

    archive = fake_archive(tmp_path / "pack.tar")
    remote = RemoteFile(url=(tmp_path / "nowhere" / "pack.tar").as_uri(), filename="pack.tar",
                        md5=file_digest(archive))
    assert ensure_dataset(remote, tmp_path / "data", tmp_path, progress=False) == \
        tmp_path / "data"
    assert (tmp_path / "data" / "a.txt").read_bytes() == b"hello"
    assert not (tmp_path / "downloads").exists()  # nothing fetched


# --------------------------------------------------------------------------- bench and ablate
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if ``bench`` measures or the Table 3 script trains anything."""
    from canetlib.evaluation import bench
    from canetlib.teaching import table3 as ablations

    monkeypatch.setattr(bench, "_measure", lambda *a, **k: pytest.fail("measured"))
    monkeypatch.setattr(bench, "CANet", lambda *a, **k: pytest.fail("model built"))
    monkeypatch.setattr(ablations, "table3_rows", lambda **k: pytest.fail("rows made"))


BENCH_CASES = [
    (["--eval-checkpoint", "missing.pt"],
     "--eval-checkpoint missing.pt: checkpoint 'missing.pt' is neither a file nor a shipped name"),
    (["--eval-checkpoint", "synthetic-backbone"],
     "--eval-checkpoint synthetic-backbone: synthetic-backbone is a backbone checkpoint"),
    (["--eval-episodes", "0", "--eval-checkpoint", "x.pt"],
     ("--eval-checkpoint x.pt is timed by --eval-episodes, which is 0; give --eval-episodes N "
     "(or drop --eval-checkpoint)")),
    (["--repeats", "0"], "--repeats must be an integer >= 1 (timed runs per measurement), got 0"),
    (["--warmup", "-1"], "--warmup must be an integer >= 0 (untimed runs first), got -1"),
    (["--size", "8"], "--size is 8x8 pixels; the model needs at least 16x16"),
    (["--iterations", "100"], "--iterations must be an integer >= 0 and <= 20"),
    (["--batch", "0"], "--batch must be an integer >= 1 (episodes per call), got 0"),
    (["--train-batch", "0"], "--train-batch must be an integer >= 1"),
    (["--width", "0"], "--width must be an integer >= 1 (head channels), got 0"),
    (["--eval-episodes", "-1"], "--eval-episodes must be an integer >= 0"),
]


@pytest.mark.parametrize(("extra", "message"), BENCH_CASES)
def test_bench_checks_every_flag_before_timing(
        extra: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    no_work(monkeypatch)
    out = tmp_path / "out" / "b.json"
    assert main(["bench", "--device", "cpu", "--json", str(out), *extra]) == 2
    assert one_error(capsys).startswith(message)
    assert not out.parent.exists()


def test_bench_api_names_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    from canetlib.evaluation.bench import run_benchmark

    no_work(monkeypatch)
    with pytest.raises(ValueError, match=r"^eval_checkpoint missing.pt: checkpoint"):
        run_benchmark("cpu", eval_episodes=2, eval_checkpoint="missing.pt")
    with pytest.raises(ValueError, match=r"^backbone must be one of resnet50, vgg16, "
                                         r"resnet-tiny, got 'resnet18'"):
        run_benchmark("cpu", backbone="resnet18")


ABLATE_CASES = [
    (["--seeds", "0"], "--seeds must be an integer >= 1 (seeds 0..N-1), got 0"),
    (["--fold", "7"], "--fold must be in 0..3 (synthetic has 4 folds), got 7"),
    (["--epochs", "0"], "--epochs must be an integer >= 1 (training epochs per row), got 0"),
    (["--episodes", "0"], "--episodes must be an integer >= 1 (test episodes per seed), got 0"),
    (["--train-episodes", "1"], ("--train-episodes must be an integer >= 8 (training episodes "
                                "per epoch, at least one batch of synthetic-1shot), got 1")),
    (["--config", "pascal-1shot"], ("--config must be one of synthetic-1shot, "
                                   "synthetic-imagenet-1shot (a 1-shot config of the synthetic "
                                   "world, which the rows are tested on), got 'pascal-1shot'")),
    (["--config", "synthetic-pretrain"], "--config must be one of synthetic-1shot"),
    (["--rows", "block9"], "--rows: unknown Table 3 row 'block9'; valid rows: block2, "),
    (["--rows", ","], "--rows names no row, got ','"),
]


@pytest.mark.parametrize("dry", [False, True])
@pytest.mark.parametrize(("extra", "message"), ABLATE_CASES)
def test_ablate_checks_every_flag_before_training_or_printing(
        extra: list[str], message: str, dry: bool, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    no_work(monkeypatch)
    out, results = tmp_path / "runs", tmp_path / "results"
    argv = ["--out", str(out), "--results", str(results), *extra]
    assert table3_script().main([*argv, "--dry-run"] if dry else argv) == 2
    assert one_error(capsys).startswith(message)
    assert not out.exists() and not results.exists()


def test_ablate_refuses_an_unwritable_results_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    no_work(monkeypatch)
    (tmp_path / "file").write_text("")
    assert table3_script().main(["--out", str(tmp_path / "runs"), "--results",
                                 str(tmp_path / "file" / "r"), "--dry-run"]) == 2
    assert one_error(capsys) == (f"cannot write {tmp_path / 'file' / 'r'}: {tmp_path / 'file'} "
                                 "is a file, not a folder")


def test_table3_api_names_its_arguments() -> None:
    from canetlib.teaching.table3 import table3_rows

    with pytest.raises(ValueError, match=r"^seeds must be an integer >= 1 \(seeds 0..N-1\), "
                                         r"got 0$"):
        table3_rows(seeds=0)
    with pytest.raises(ValueError, match=r"^fold must be in 0..3"):
        table3_rows(fold=-1)


# --------------------------------------------------------------------------- the rest of the audit
def test_segment_size_too_small_for_multi_scale_is_refused_before_loading(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    files = segment_inputs(tmp_path)
    monkeypatch.setattr(checkpoint, "load", lambda *a, **k: pytest.fail("loaded"))
    out = tmp_path / "out" / "p.png"
    assert main(segment_argv(files, out, "--size", "16", "--multi-scale", "--device", "cpu")) == 2
    assert one_error(capsys) == ("--size 16 with --multi-scale: the query at scale 0.7 is "
                                 "11x11 pixels; the model needs at least 16x16 (two cells of "
                                 "its stride-8 feature grid)")
    assert not out.parent.exists()


@pytest.mark.parametrize("download", [False, True])
def test_prepare_fss1000_bad_splits_writes_nothing(
        download: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from canetlib.data.prepare import fss1000

    monkeypatch.setattr(fss1000, "ensure_dataset", lambda *a, **k: pytest.fail("downloaded"))
    root = tmp_path / "fss"
    extra = ["--download", "--url", "file:///x.zip", "--sha256", "a" * 64] if download else []
    assert main(["prepare", "fss1000", "--root", str(root), "--splits",
                 str(tmp_path / "nowhere"), *extra]) == 2
    assert one_error(capsys) == f"--splits {tmp_path / 'nowhere'}: no trn.txt or train.txt there"
    assert not root.exists()


@pytest.mark.parametrize("command", ["segment", "bench"])
def test_an_unknown_device_is_named(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    no_work(monkeypatch)
    monkeypatch.setattr(checkpoint, "load", lambda *a, **k: pytest.fail("loaded"))
    argv = ["bench", "--json", str(tmp_path / "b.json")] if command == "bench" else \
        ["segment", "--checkpoint", "x.pt", "--support", "s.png", "--support-mask", "m.png",
         "--query", "q.png", "--out", str(tmp_path / "p.png")]
    assert main([*argv, "--device", "tpu"]) == 2
    assert one_error(capsys) == ("--device 'tpu' is not a device torch knows; use cpu, cuda or "
                                 "cuda:N (or mps on a Mac)")


@pytest.mark.parametrize("value", [(32,), (32, 32.5), (True, 32), "big"])
def test_evaluate_api_input_size_must_be_a_size(value: object) -> None:
    from helpers import FakeEpisodes

    from canetlib.evaluation import resolve_input_size

    with pytest.raises((ValueError, TypeError), match=r"input_size must be an int, \(H, W\)"):
        resolve_input_size(FakeEpisodes(1), value)  # type: ignore[arg-type]
    assert resolve_input_size(FakeEpisodes(1), [32, 40]) == (32, 40)


def test_evaluate_api_device_is_named() -> None:
    from helpers import FakeEpisodes, tiny_model

    from canetlib.evaluation import evaluate

    with pytest.raises(ValueError, match=r"^device 'tpu' is not a device torch knows"):
        evaluate(tiny_model(), FakeEpisodes(1), device="tpu")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"size": (0, 0)}, r"^size must be \(H, W\), two integers >= 1 .*got \(0, 0\)$"),
    ({"size": (5,)}, r"^size must be \(H, W\), two integers >= 1 .*got \(5,\)$"),
    ({"size": (1.5, 2)}, r"^size must be \(H, W\)"),
    ({"size": 32}, r"^size must be \(H, W\)"),
    ({"scales": 1.0}, r"^scales must be a sequence of numbers such as \(1.0,\)"),
])
def test_predict_arguments_are_named(kwargs: dict[str, object], message: str) -> None:
    from helpers import make_episode, tiny_model

    q, s, m = make_episode(size=32)
    with pytest.raises(ValueError, match=message):
        tiny_model().predict(q, s, m, **kwargs)  # type: ignore[arg-type]


def test_predict_refuses_float64_images_for_a_float32_model() -> None:
    from helpers import make_episode, tiny_model

    q, s, m = make_episode(size=32)
    with pytest.raises(ValueError, match=r"^query image: a float64 tensor, but the model's "
                                         r"weights are float32; convert with .float\(\)$"):
        tiny_model().predict(q.double(), s.double(), m)
    assert tiny_model().predict(q, s, m, size=(8, 8)).probs[-1].shape[-2:] == (8, 8)


def test_a_download_that_never_starts_leaves_no_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "fss"
    missing = (tmp_path / "nowhere.zip").as_uri()
    assert main(["prepare", "fss1000", "--root", str(root), "--download", "--url", missing,
                 "--sha256", "a" * 64, "--no-progress"]) == 2
    assert one_error(capsys) == f"download source not found: {missing}"
    assert not root.exists()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"scales": 1.0}, (r"^scales must be a non-empty sequence of finite numbers > 0 such as "
                      r"\(1.0,\) or MULTI_SCALE \(0.7, 1.0, 1.3\), got 1.0$")),
    ({"scales": ()}, r"^scales must be a non-empty sequence .*got \(\)$"),
    ({"scales": (0.7, float("nan"))}, r"^scales must be a non-empty sequence .*got \(0.7, nan\)$"),
    ({"batch_size": 0}, (r"^batch_size must be an integer >= 1 \(episodes per forward pass\), "
                        r"got 0$")),
    ({"num_workers": -1}, r"^num_workers must be an integer >= 0 .*got -1$"),
    ({"classes": []}, r"^classes is empty; give the test class ids or leave it out"),
])
def test_evaluate_api_arguments_are_named_before_any_episode(
        kwargs: dict[str, object], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers import FakeEpisodes, tiny_model

    from canetlib.evaluation import loop

    monkeypatch.setattr(loop, "_score_batch", lambda *a, **k: pytest.fail("scored"))
    with pytest.raises(ValueError, match=message):
        loop.evaluate(tiny_model(), FakeEpisodes(2), **kwargs)  # type: ignore[arg-type]


def test_evaluate_seeds_refuses_a_repeated_seed() -> None:
    from helpers import FakeEpisodes, tiny_model

    from canetlib.evaluation import evaluate_seeds

    with pytest.raises(ValueError, match=r"^seeds must be distinct .*got \[0, 0\]$"):
        evaluate_seeds(tiny_model(), [0, 0], lambda s: pytest.fail("built"))  # type: ignore
    assert evaluate_seeds(tiny_model(), [0, 1], lambda s: FakeEpisodes(2)).seeds == [0, 1]


# --------------------------------------------------------------------------- issue 24 leftovers
BOX_RULE = ("(a box is x0,y0,x1,y1 in pixels with x0 < x1 and y0 < y1, clipped to the image)")


def test_an_empty_support_box_names_its_support(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from helpers import tiny_model

    from canetlib.cli.segmentation import run_segmentation

    files = segment_inputs(tmp_path)
    monkeypatch.setattr(checkpoint, "load", lambda *a, **k: pytest.fail("loaded"))
    out = tmp_path / "out" / "p.png"
    support = ["--support", str(files["support"])]
    assert main(["segment", "--checkpoint", str(files["ckpt"]), *support, "--support-mask",
                 str(files["mask"]), *support, "--support-box=-50,-50,-10,-10", "--query",
                 str(files["query"]), "--out", str(out), "--device", "cpu"]) == 2
    expected = f"support box 2 (-50, -50, -10, -10) is empty inside a 48x40 image {BOX_RULE}"
    assert one_error(capsys) == expected
    assert not out.parent.exists()
    image = np.asarray(Image.open(files["support"]))
    mask = np.asarray(Image.open(files["mask"]))
    with pytest.raises(ValueError) as err:
        run_segmentation(tiny_model(), image, [image, image], [mask, (60, 0, 80, 10.5)],
                         iterations=0, size=32)
    assert str(err.value) == ("support box 2 (60, 0, 80, 10.5) is empty inside a 48x40 image "
                              f"{BOX_RULE}")
    with pytest.raises(ValueError, match=r"^support box \(nan, 0, 10, 10\): coordinates must "
                                         r"be finite numbers \(pixels\)$"):
        as_mask((float("nan"), 0, 10, 10), (H, W))


@pytest.mark.parametrize("command", ["evaluate", "bench", "segment"])
def test_threads_0_names_the_flag_and_its_value(
        command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    no_work(monkeypatch)
    if command != "bench":  # bench reads its eval checkpoint while checking its flags
        monkeypatch.setattr(checkpoint, "load", lambda *a, **k: pytest.fail("loaded"))
    argv = {"evaluate": ["evaluate", "--dataset", "synthetic", "--checkpoint",
                         "synthetic-imagenet-1shot-fold0", "--episodes", "2", "--no-progress"],
            "bench": ["bench", "--json", str(tmp_path / "b.json")]}.get(command)
    if argv is None:
        files = segment_inputs(tmp_path)
        argv = segment_argv(files, tmp_path / "out" / "p.png")
    before = torch.get_num_threads()
    assert main([*argv, "--device", "cpu", "--threads", "0"]) == 2
    assert one_error(capsys) == "--threads must be >= 1, got 0"
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("call", ["evaluate", "load_model"])
def test_cuda_through_the_python_api_says_no_cuda_device(call: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from canetlib.data import make_dataset
    from canetlib.evaluation import evaluate
    from canetlib.model import checkpoint

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    name = "device" if call == "evaluate" else "map_location"
    with pytest.raises(ValueError, match=rf"^{name} cuda: no CUDA device is available .*"
                                         rf"use {name}='cpu'$"):
        if call == "evaluate":
            model = checkpoint.load_model("synthetic-imagenet-1shot-fold0")
            evaluate(model, make_dataset("synthetic", split="test", fold=0, shots=1, episodes=1, seed=0),
                     device="cuda", progress=False)
        else:
            checkpoint.load_model("synthetic-imagenet-1shot-fold0", map_location="cuda")
