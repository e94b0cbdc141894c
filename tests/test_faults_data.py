"""Wrong results and lost data: each fault is refused with one clear line or fixed.

Inputs overwritten by ``segment --out``, two trainers in one folder, EXIF-rotated
photos, unbounded IOM iterations, raw pixels given to ``predict``, ``predict`` in
training mode, and an uncreatable ``evaluate --json`` folder.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY, make_episode, rect, rgb, segment_inputs, tiny_config, tiny_model
from PIL import Image

from canetlib.cli import main
from canetlib.cli.segmentation import as_mask, as_rgb, load_mask, run_segmentation, write_outputs
from canetlib.data.imageio import image_size, read_image, read_mask
from canetlib.data.source import ImageMaskSource
from canetlib.model.inputs import MAX_ITERATIONS
from canetlib.training.engine.run_folder import LOCK, open_run_folder, release_run_folder
from canetlib.training.recipe import train


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    """A tiny model checkpoint, a support image with its mask and a query ``q2_overlay.png``."""
    return segment_inputs(tmp_path, query="q2_overlay.png")


def segment(files: dict[str, Path], out: Path | str, *extra: str) -> list[str]:
    return ["segment", "--checkpoint", str(files["ckpt"]), "--support", str(files["support"]),
            "--support-mask", str(files["mask"]), "--query", str(files["query"]),
            "--out", str(out), "--size", "32", "--iterations", "1", "--device", "cpu", *extra]


def inputs_bytes(files: dict[str, Path]) -> dict[str, bytes]:
    return {k: files[k].read_bytes() for k in ("support", "mask", "query")}


# --------------------------------------------------------------------------- segment --out
@pytest.mark.parametrize(("out", "message"), [
    ("query", r"--out .*q2_overlay.png is the query .*would overwrite an input"),
    ("mask", r"--out .*m.png is the support mask 1 .*would overwrite an input"),
    ("support-dotted", r"is the support 1 .*s.png"),
    ("q2.png", r"--out .*q2.png writes its overlay to .*q2_overlay.png, which is the query"),
    ("hardlink", r"--out .*link.png is the query .*q2_overlay.png"),
])
def test_segment_out_never_overwrites_an_input(files: dict[str, Path], out: str, message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    folder = files["query"].parent
    target = {"query": files["query"], "mask": files["mask"],
              "support-dotted": folder / "sub" / ".." / "s.png",
              "q2.png": folder / "q2.png", "hardlink": folder / "link.png"}[out]
    if out == "hardlink":
        if not hasattr(os, "link"):
            pytest.skip("no hard links here")
        os.link(files["query"], target)
    (folder / "sub").mkdir()
    before = inputs_bytes(files)
    assert main(segment(files, target)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ")
    assert re.search(message, err), err
    assert inputs_bytes(files) == before
    assert not (folder / "q2.png").exists()


def test_write_outputs_refuses_the_query_file(files: dict[str, Path]) -> None:
    before = files["query"].read_bytes()
    with pytest.raises(ValueError, match="writes its overlay to .*which is the query"):
        write_outputs(files["query"], np.ones((36, 60), np.uint8), files["query"].parent / "q2.png")
    assert files["query"].read_bytes() == before


def test_segment_out_beside_the_inputs_works(files: dict[str, Path]) -> None:
    out = files["query"].parent / "mask_out.png"
    assert main(segment(files, out)) == 0
    assert out.is_file() and (out.parent / "mask_out_overlay.png").is_file()


# --------------------------------------------------------------------------- iterations
@pytest.mark.parametrize("iterations", [MAX_ITERATIONS + 1, 100000])
def test_iterations_above_the_bound_are_refused(iterations: int) -> None:
    model = tiny_model()
    query, supports, masks = make_episode(size=32)
    with pytest.raises(ValueError, match=rf"iterations must be an integer >= 0 and <= "
                                         rf"{MAX_ITERATIONS} .*got {iterations}"):
        model.predict(query, supports, masks, iterations=iterations)


def test_segment_iterations_above_the_bound_fail_before_work(
        files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = files["query"].parent / "o.png"
    args = segment(files, out)
    args[args.index("--iterations") + 1] = "100000"
    assert main(args) == 2
    assert capsys.readouterr().err == (
        f"error: --iterations must be an integer >= 0 and <= {MAX_ITERATIONS} (IOM refinements "
        "after CANet-Init; the paper uses 4), got 100000\n")
    assert not out.exists()


@pytest.mark.parametrize("scales", [(1.0,), (0.7, 1.0)])
def test_segmentation_can_keep_the_last_iteration_only(scales: tuple[float, ...]) -> None:
    image, mask = rgb(36, 60), rect(36, 60)
    kwargs = {"iterations": 3, "size": 32, "scales": scales}
    every = run_segmentation(tiny_model(), image, [image], [mask], **kwargs)
    last = run_segmentation(tiny_model(), image, [image], [mask], all_iterations=False, **kwargs)
    assert len(every.probs) == 4 and len(last.probs) == 1
    assert np.array_equal(last.mask, every.mask)
    assert np.allclose(last.probs[0], every.probs[-1], atol=1e-6)


def test_evaluate_iterations_above_the_bound_fail_before_work(
        files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    args = ["evaluate", "--dataset", "synthetic", "--checkpoint", str(files["ckpt"]),
            "--iterations", str(MAX_ITERATIONS + 1)]
    assert main(args) == 2
    assert capsys.readouterr().err.startswith(
        f"error: --iterations must be an integer >= 0 and <= {MAX_ITERATIONS} ")


def test_iterations_at_the_bound_run() -> None:
    query, supports, masks = make_episode(size=32)
    pred = tiny_model().predict(query, supports, masks, iterations=MAX_ITERATIONS)
    assert len(pred.probs) == MAX_ITERATIONS + 1


# --------------------------------------------------------------------------- predict
@pytest.mark.parametrize(("scale", "hint"), [(255.0, "0..255"), (1.0, "0..1")])
def test_raw_pixels_warn_once_naming_the_normaliser(scale: float, hint: str) -> None:
    query, supports, masks = make_episode(size=32)
    raw_q, raw_s = torch.rand_like(query) * scale, torch.rand_like(supports) * scale
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny_model().predict(raw_q, raw_s, masks, iterations=0)
    texts = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(texts) == 1 and "\n" not in texts[0]
    assert f"values in {hint}" in texts[0] and "image_to_tensor" in texts[0]
    assert caught[0].filename == __file__


def test_normalised_images_do_not_warn() -> None:
    query, supports, masks = make_episode(size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_model().predict(query, supports, masks, iterations=0)


def test_predict_after_train_is_deterministic_and_keeps_the_mode() -> None:
    model = tiny_model()
    query, supports, masks = make_episode(size=32)
    model.train()
    first = model.predict(query, supports, masks, iterations=1).probs[-1]
    second = model.predict(query, supports, masks, iterations=1).probs[-1]
    assert torch.equal(first, second)
    assert model.training
    model.eval()
    assert torch.equal(model.predict(query, supports, masks, iterations=1).probs[-1], first)
    assert not model.training


def test_predict_restores_training_mode_on_error(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model().train()
    query, supports, masks = make_episode(size=32)
    seen: list[bool] = []

    def failing_refine(*args: object, **kwargs: object) -> None:
        seen.append(model.training)
        raise RuntimeError("refine failed")

    monkeypatch.setattr(model, "refine", failing_refine)
    with pytest.raises(RuntimeError, match="refine failed"):
        model.predict(query, supports, masks, iterations=1)
    assert seen == [False] and model.training


# --------------------------------------------------------------------------- evaluate --json
def _evaluate_json(files: dict[str, Path], target: Path) -> list[str]:
    return ["evaluate", "--dataset", "synthetic", "--checkpoint", str(files["ckpt"]),
            "--episodes", "2", "--json", str(target)]


PROC_MISSING = "/proc/canetlib-no-such-folder/deeper/r.json"
PROC_MISSING_ERR = (r"cannot write /proc/canetlib-no-such-folder/deeper/r.json: "
                    r"(cannot create the folder /proc/canetlib-no-such-folder/deeper"
                    r"|no write permission in /proc)")
PROC_SELF_ERR = (r"cannot write /proc/self/r.json: (cannot create a file in /proc/self"
                 r"|no write permission in /proc/self)")


@pytest.mark.parametrize(("where", "message"), [
    (PROC_MISSING, PROC_MISSING_ERR),
    ("/proc/self/r.json", PROC_SELF_ERR),
    ("file/r.json", r"cannot write .*file/r.json: .*file is a file, not a folder"),
    ("file/sub/r.json", r"cannot write .*file/sub/r.json: .*file is a file, not a folder"),
])
def test_evaluate_json_that_cannot_be_created_fails_before_evaluating(
        files: dict[str, Path], where: str, message: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import canetlib.evaluation as ev

    if where.startswith("/proc") and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here (not Linux)")
    monkeypatch.setattr(ev, "evaluate", lambda *a, **k: pytest.fail("evaluated"))
    folder = files["ckpt"].parent
    (folder / "file").write_text("a file, not a folder")
    target = Path(where) if where.startswith("/") else folder / where
    assert main(_evaluate_json(files, target)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc here (not Linux)")
@pytest.mark.parametrize("command", ["segment", "bench"])
def test_segment_and_bench_outputs_under_proc_fail_before_work(
        files: dict[str, Path], command: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import canetlib.cli.segmentation as seg
    from canetlib.evaluation import bench

    monkeypatch.setattr(bench, "run_benchmark", lambda *a, **k: pytest.fail("benchmarked"))
    monkeypatch.setattr(seg, "run_segmentation", lambda *a, **k: pytest.fail("segmented"))
    args = segment(files, PROC_MISSING.replace(".json", ".png")) if command == "segment" \
        else ["bench", "--json", PROC_MISSING]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write /proc/canetlib-no-such-folder/deeper/r." in err


def test_evaluate_json_probe_leaves_nothing_and_the_result_is_written(
        files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from canetlib.cli import evaluate as command

    target = files["ckpt"].parent / "new" / "deeper" / "r.json"
    seen: list[bool] = []

    def measure(*args: object, **kwargs: object) -> dict[str, object]:
        seen.append(target.parent.parent.exists())
        raise RuntimeError("stopped after the check")

    monkeypatch.setattr(command, "_measure", measure)
    assert main(_evaluate_json(files, target)) == 2
    assert seen == [False] and not target.parent.parent.exists()
    command.write_json({"miou": 1.0}, str(target))
    assert target.is_file()


# --------------------------------------------------------------------------- EXIF orientation
RAW_H, RAW_W = 24, 40  #: stored layout; orientation 6 shows it rotated 90 degrees clockwise


def rotated_file(path: Path, array: np.ndarray, orientation: int = 6) -> Path:
    """Save ``array`` (stored layout) with an EXIF orientation tag."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(array).save(path, exif=exif)
    return path


def stored_image() -> np.ndarray:
    """A (24, 40) RGB image: a bright block at the stored top-left corner."""
    arr = np.zeros((RAW_H, RAW_W, 3), np.uint8)
    arr[:8, :8] = 250
    return arr


def stored_mask() -> np.ndarray:
    mask = np.zeros((RAW_H, RAW_W), np.uint8)
    mask[:8, :8] = 1
    return mask


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_rotated_photo_is_read_as_displayed(tmp_path: Path, suffix: str) -> None:
    path = rotated_file(tmp_path / f"photo{suffix}", stored_image())
    shown = read_image(path)
    assert shown.shape == (RAW_W, RAW_H, 3) and image_size(path) == (RAW_W, RAW_H)
    assert shown[:8, -8:].mean() > 200 and shown[:8, :8].mean() < 50  # top-left -> top-right
    assert as_rgb(path).shape == (RAW_W, RAW_H, 3)
    with Image.open(path) as img:
        assert as_rgb(img).shape == (RAW_W, RAW_H, 3)


def test_exif_rotated_mask_is_read_as_displayed(tmp_path: Path) -> None:
    path = rotated_file(tmp_path / "mask.png", stored_mask())
    assert read_mask(path).shape == (RAW_W, RAW_H)
    assert load_mask(path).shape == (RAW_W, RAW_H)
    assert as_mask(path, (RAW_W, RAW_H)).shape == (RAW_W, RAW_H)
    assert np.array_equal(read_mask(path), np.rot90(stored_mask(), k=-1))


def test_exif_rotated_folder_source_matches_image_and_mask(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rotated_file(tmp_path / "images" / "a.jpg", stored_image())
    rotated_file(tmp_path / "masks" / "a.png", stored_mask())
    source = ImageMaskSource.from_folder(tmp_path, ["block"])
    assert source.load_image("a").shape == (RAW_W, RAW_H, 3)
    assert source.load_mask("a").shape == (RAW_W, RAW_H)
    assert source.image_pairs("test") == [("a", 1)]


def test_upright_mask_of_a_rotated_photo_loads(tmp_path: Path) -> None:
    """The usual case: a photo with a tag and a mask drawn on it as displayed (no tag)."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rotated_file(tmp_path / "images" / "a.jpg", stored_image())
    Image.fromarray(np.rot90(stored_mask(), k=-1).copy()).save(tmp_path / "masks" / "a.png")
    source = ImageMaskSource.from_folder(tmp_path, ["block"])
    assert source.load_mask("a").shape == source.load_image("a").shape[:2]


# --------------------------------------------------------------------------- run folder lock
HAS_FCNTL = importlib.util.find_spec("fcntl") is not None
HOLD = ("import sys, time; from pathlib import Path; "
        "from canetlib.training.engine.run_folder import open_run_folder; "
        "open_run_folder(Path(sys.argv[1]), True, False, lock=True); "
        "print('locked', flush=True); time.sleep(120)")


def train_cli(out: Path, *args: str) -> list[str]:
    sets = [x for item in TINY for x in ("--set", item)]
    return ["train", "--config", "synthetic-1shot", "--fold", "0", "--out", str(out), *sets,
            "--no-progress", *args]


@pytest.fixture()
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the run folder ``tmp_path/run`` (a run of 1 step inside)."""
    out = tmp_path / "run"
    train(tiny_config(), out, max_steps=1, progress=False)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.skipif(not HAS_FCNTL, reason="run folders are locked with fcntl (POSIX)")
@pytest.mark.parametrize("how", [("--overwrite",), ("--resume",), ()])
def test_second_trainer_on_a_running_folder_is_refused(
        tmp_path: Path, holder: subprocess.Popen[str], how: tuple[str, ...],
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(train_cli(out, *how, "--max-steps", "2")) == 2
    assert capsys.readouterr().err == (
        f"error: {out} is in use by another run (process {holder.pid} holds {out / LOCK}); "
        "wait for it to end or choose another --out\n")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.skipif(not HAS_FCNTL, reason="run folders are locked with fcntl (POSIX)")
def test_killed_trainer_leaves_no_stale_lock(tmp_path: Path,
                                             holder: subprocess.Popen[str]) -> None:
    out = tmp_path / "run"
    holder.kill()
    holder.wait()
    assert (out / LOCK).is_file()  # the killed run's file stays, its lock is gone
    result = train(tiny_config(), out, max_steps=2, resume=True, progress=False)
    assert result.step == 2 and not (out / LOCK).exists()


def test_finished_or_failed_runs_release_the_folder(tmp_path: Path) -> None:
    train(tiny_config(), tmp_path, max_steps=1, progress=False)
    assert not (tmp_path / LOCK).exists()
    with pytest.raises(ValueError, match="already holds a run"):
        train(tiny_config(), tmp_path, max_steps=1, progress=False)
    with pytest.raises(ValueError, match="--max-steps 0 is below step 1|must be >= 1"):
        train(tiny_config(), tmp_path, max_steps=0, resume=True, progress=False)
    open_run_folder(tmp_path, True, False, lock=True)
    try:
        with pytest.raises(ValueError, match=rf"in use by another run \(process {os.getpid()}"):
            train(tiny_config(), tmp_path, max_steps=2, resume=True, progress=False)
    finally:
        release_run_folder(tmp_path)
    assert train(tiny_config(), tmp_path, max_steps=2, resume=True, progress=False).step == 2
