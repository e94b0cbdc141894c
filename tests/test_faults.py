"""Bad input and faults (issue 12): refused at the door with one clear line, never garbage.

One test (or parametrised case) per bad input, checking the message and that nothing
was written or overwritten.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import (
    make_episode,
    rect,
    rgb,
    segment_inputs,
    tiny_config,
    tiny_model,
    tiny_pretrain_config,
    train_cli,
)
from PIL import Image

from canetlib.cli import describe_os_error, glue_negative_values, main
from canetlib.cli.segmentation import as_mask, run_segmentation
from canetlib.data.prepared import write_pairs
from canetlib.data.world.cache import write_cache_file
from canetlib.model import checkpoint
from canetlib.model.files import atomic_path, check_writable, write_atomic
from canetlib.training.engine import check_max_steps
from canetlib.training.pretrain import pretrain
from canetlib.training.recipe import train

NAN, INF = float("nan"), float("inf")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, str]:
    """A tiny model checkpoint, a support image with its mask and a query (paths as text)."""
    return {k: str(v) for k, v in segment_inputs(tmp_path).items()}


def segment(files: dict[str, str], out: Path, *extra: str, mask: str | None = None,
            query: str | None = None) -> list[str]:
    annotation = list(extra) or ["--support-mask", mask or files["mask"]]
    return ["segment", "--checkpoint", files["ckpt"], "--support", files["support"],
            *annotation, "--query", query or files["query"], "--out", str(out),
            "--size", "32", "--iterations", "1", "--device", "cpu"]


# --------------------------------------------------------------------------- wrong results
def test_resume_below_the_saved_step_stops_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train(tiny_config(), tmp_path, max_steps=3, progress=False)
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"--max-steps 1 is below step 3.*nothing was trained"):
        train(tiny_config(), tmp_path, max_steps=1, resume=True, progress=False)
    assert main(train_cli(tmp_path, "--resume", "--max-steps", "2")) == 2
    assert "--max-steps 2 is below step 3" in capsys.readouterr().err
    assert snapshot(tmp_path) == before  # last.pt, model.pt and log.csv untouched


def test_resume_at_the_saved_step_has_nothing_left_to_do(tmp_path: Path) -> None:
    train(tiny_config(), tmp_path, max_steps=2, progress=False)
    res = train(tiny_config(), tmp_path, max_steps=2, resume=True, progress=False)
    assert res.step == 2 and res.losses == []


@pytest.mark.parametrize("steps", [0, -3])
def test_max_steps_below_one_is_refused(tmp_path: Path, steps: int,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=f"--max-steps must be >= 1, got {steps}"):
        train(tiny_config(), out, max_steps=steps, progress=False)
    with pytest.raises(ValueError, match="--max-steps must be >= 1"):
        pretrain(tiny_pretrain_config(), out, max_steps=steps, progress=False)
    assert main(train_cli(out, f"--max-steps={steps}")) == 2
    assert f"--max-steps must be >= 1, got {steps}" in capsys.readouterr().err
    assert not out.exists()


def test_overwrite_with_bad_max_steps_keeps_the_old_run(tmp_path: Path) -> None:
    train(tiny_config(), tmp_path, max_steps=1, progress=False)
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="--max-steps must be >= 1"):
        train(tiny_config(), tmp_path, max_steps=0, overwrite=True, progress=False)
    assert snapshot(tmp_path) == before
    check_max_steps(None, 5)  # no limit: always fine


@pytest.mark.parametrize("where", ["query", "support"])
@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_non_finite_images_are_refused(where: str, value: float) -> None:
    q, s, m = make_episode()
    (q if where == "query" else s).view(-1)[5] = value
    with pytest.raises(ValueError, match=f"{where}.*1 value\\(s\\) are NaN or infinite"):
        tiny_model().predict(q, s, m)


@pytest.mark.parametrize("value", [NAN, INF])
def test_non_finite_weights_are_refused_at_load(tmp_path: Path, files: dict[str, str],
                                                value: float,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    payload = checkpoint.model_payload(tiny_model())
    name = next(k for k in payload["model"] if k.startswith("iom."))
    payload["model"][name].view(-1)[0] = value
    path = checkpoint.save_atomic(payload, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=f"bad.pt: tensor '{name}' holds 1 NaN or infinite"):
        checkpoint.load_model(path)
    files["ckpt"] = str(path)
    out = tmp_path / "out" / "pred.png"
    assert main(segment(files, out)) == 2
    assert "NaN or infinite" in capsys.readouterr().err
    assert not out.parent.exists()


@pytest.mark.parametrize("size", ["0", "3", "15"])
def test_model_input_size_out_of_range(files: dict[str, str], tmp_path: Path, size: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pred.png"
    assert main([*segment(files, out), "--size", size]) == 2
    assert f"--size is {size}x{size} pixels; the model needs at least 16x16" in \
        capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(ValueError, match="model input.*at least 16x16"):
        run_segmentation(tiny_model(), rgb(40, 40), [rgb(40, 40)], [rect(40, 40)],
                         size=int(size))


def test_all_255_support_mask_is_an_error(files: dict[str, str], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="holds only 255.*whole image.*'ignore'"):
        as_mask(np.full((8, 8), 255, np.uint8), (8, 8))
    full = tmp_path / "full.png"
    Image.fromarray(np.full((40, 48), 255, np.uint8)).save(full)
    assert main(segment(files, tmp_path / "pred.png", mask=str(full))) == 2
    assert "holds only 255" in capsys.readouterr().err


@pytest.mark.parametrize("mask", [np.ones((40, 40), np.uint8), np.ones((40, 40), bool),
                                  np.full((40, 40), 200, np.uint8), (0, 0, 40, 40)])
def test_support_marking_the_whole_image_warns(mask: Any) -> None:
    with pytest.warns(UserWarning, match="marks the whole image as the object"):
        run_segmentation(tiny_model(), rgb(40, 40), [rgb(40, 40)], [mask], iterations=0,
                         size=32)


def test_whole_image_warning_is_one_cli_line(files: dict[str, str], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    ones = tmp_path / "ones.png"
    Image.fromarray(np.ones((40, 48), np.uint8)).save(ones)
    assert main(segment(files, tmp_path / "pred.png", mask=str(ones))) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: support mask 1") and "marks the whole image" in err
    assert "UserWarning" not in err


# --------------------------------------------------------------------------- unclear messages
def test_evaluate_json_into_an_unwritable_place_fails_before_evaluating(
        tmp_path: Path, files: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import canetlib.evaluation as ev

    monkeypatch.setattr(ev, "evaluate", lambda *a, **k: pytest.fail("evaluated"))
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    rc = main(["evaluate", "--dataset", "synthetic", "--checkpoint", files["ckpt"],
               "--episodes", "2", "--json", str(blocker / "result.json")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{blocker} is a file, not a folder" in err


@pytest.mark.parametrize("command", ["segment", "train", "prepare", "bench"])
def test_unwritable_outputs_are_refused_up_front(command: str, tmp_path: Path,
                                                files: dict[str, str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    target = blocker / "sub"
    argv = {"segment": segment(files, target / "pred.png"),
            "train": train_cli(target, "--max-steps", "1"),
            "prepare": ["prepare", "pascal", "--root", str(target)],
            "bench": ["bench", "--json", str(target / "b.json"), "--device", "cpu"]}[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write") and str(blocker) in err
    assert err.count("\n") == 1


def test_json_naming_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="it is a folder; name a file"):
        check_writable(tmp_path)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root may write into read-only folders")
def test_read_only_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match=f"no write permission in {folder}"):
            check_writable(folder / "result.json")
    finally:
        folder.chmod(0o755)


def test_os_errors_are_one_line_naming_the_path(
        files: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import canetlib.cli.segmentation as seg

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device", str(tmp_path / "pred.png"))

    monkeypatch.setattr(seg, "write_outputs", full_disk)
    assert main(segment(files, tmp_path / "pred.png")) == 2
    assert capsys.readouterr().err == \
        f"error: No space left on device: {tmp_path / 'pred.png'}\n"
    assert describe_os_error(PermissionError("plain message")) == "plain message"


@pytest.fixture()
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_outputs_get_the_usual_permissions(tmp_path: Path, umask_022: None) -> None:
    ckpt = checkpoint.save_atomic(checkpoint.model_payload(tiny_model()), tmp_path / "m.pt")
    with atomic_path(tmp_path / "r.json") as tmp:
        tmp.write_text("{}")
    for path in (ckpt, tmp_path / "r.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    os.umask(0o077)
    with atomic_path(tmp_path / "private.json") as tmp:
        tmp.write_text("{}")
    assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "private.json", "r.json"]


def test_text_bytes_lists_and_cache_files_use_the_same_atomic_writer(
        tmp_path: Path, umask_022: None) -> None:
    text = write_atomic(tmp_path / "t.json", "{}\n")
    data = write_atomic(tmp_path / "new" / "b.bin", b"\x00\x01")  # folders made as needed
    write_pairs(tmp_path / "pairs.txt", [("a", 1), ("b", 2)])
    write_cache_file(tmp_path / "cache" / "pairs.json", b"[]")
    written = (text, data, tmp_path / "pairs.txt", tmp_path / "cache" / "pairs.json")
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert text.read_text() == "{}\n" and data.read_bytes() == b"\x00\x01"
    assert (tmp_path / "pairs.txt").read_text() == "a 1\nb 2\n"
    (tmp_path / "plain").write_text("")
    write_cache_file(tmp_path / "plain" / "x.json", b"[]")  # unwritable: the cache skips it
    with pytest.raises(OSError):
        write_atomic(tmp_path / "plain" / "x.json", b"[]")  # ... the writer itself does not
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no temp left


def test_backbone_checkpoint_is_not_a_model(tmp_path: Path, files: dict[str, str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    model = tiny_model()
    payload = {"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "kind": "backbone",
               "model_config": {"backbone": "resnet-tiny", "backbone_widths": [8, 8, 16, 16],
                                "blocks": [2, 3]},
               "model": {k: v.clone() for k, v in model.backbone.state_dict().items()}}
    files["ckpt"] = str(checkpoint.save_atomic(payload, tmp_path / "backbone.pt"))
    with pytest.raises(ValueError, match="is a backbone checkpoint.*not a CANet model"):
        checkpoint.load_model(files["ckpt"])
    for argv in (segment(files, tmp_path / "p.png"),
                 ["evaluate", "--dataset", "synthetic", "--checkpoint", files["ckpt"]]):
        assert main(argv) == 2
        assert "is a backbone checkpoint" in capsys.readouterr().err


def test_shipped_backbone_name_is_not_a_model(capsys: pytest.CaptureFixture[str]) -> None:
    if "synthetic-backbone" not in checkpoint.shipped_names():
        pytest.skip("no shipped synthetic-backbone checkpoint here")
    assert main(["evaluate", "--dataset", "synthetic", "--checkpoint", "synthetic-backbone",
                 "--episodes", "1"]) == 2
    assert "synthetic-backbone is a backbone checkpoint" in capsys.readouterr().err


def test_model_config_missing_a_key_names_it(tmp_path: Path) -> None:
    payload = checkpoint.model_payload(tiny_model())
    del payload["model_config"]["width"], payload["model_config"]["dropout"]
    path = checkpoint.save_atomic(payload, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="old.pt: model_config lacks 'width', 'dropout'"):
        checkpoint.load_model(path)


@pytest.mark.parametrize("at_call", [1, 3])
def test_ctrl_c_during_training_says_how_to_resume(
        tmp_path: Path, at_call: int, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import canetlib.training.recipe as tr

    real, calls = tr._train_step, {"n": 0}

    def interrupted(*args: Any, **kwargs: Any) -> float:
        calls["n"] += 1
        if calls["n"] == at_call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tr, "_train_step", interrupted)
    assert main(train_cli(tmp_path, "--max-steps", "5")) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    if at_call == 1:
        assert "before the first checkpoint" in err and "--overwrite" in err
        return
    assert f"the last checkpoint is {tmp_path / 'last.pt'}" in err
    assert "--resume" in err and "--max-steps 5" in err
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 2
    monkeypatch.setattr(tr, "_train_step", real)
    assert main(train_cli(tmp_path, "--max-steps", "5", "--resume")) == 0


@pytest.mark.parametrize("value", [2, 100])
def test_grey_class_index_mask_names_values_and_rule(
        value: int, files: dict[str, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match=f"values found: 0, {value}.*0/1 mask.*>= 128"):
        as_mask(rect(16, 16, value), (16, 16))
    grey = tmp_path / "grey.png"
    Image.fromarray(rect(40, 48, value)).save(grey)
    assert main(segment(files, tmp_path / "pred.png", mask=str(grey))) == 2
    err = capsys.readouterr().err
    assert f"values found: 0, {value}" in err and "binarise" in err


@pytest.mark.parametrize("text", ["nan,0,10,10", "0,0,inf,10", "1,2,3", "a,b,c,d"])
def test_bad_box_values_are_refused(text: str, files: dict[str, str], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(segment(files, tmp_path / "p.png", "--support-box", text))
    assert exc.value.code == 2
    assert "--support-box expects four finite numbers" in capsys.readouterr().err


def test_non_finite_box_in_the_api() -> None:
    with pytest.raises(ValueError, match="coordinates must be finite"):
        as_mask((NAN, 0, 10, 10), (20, 20))


@pytest.mark.parametrize("form", ["space", "equals"])
def test_negative_box_is_accepted_and_clipped(form: str, files: dict[str, str], tmp_path: Path
                                              ) -> None:
    box = ["--support-box", "-50,-50,20,20"] if form == "space" else \
        ["--support-box=-50,-50,20,20"]
    out = tmp_path / "pred.png"
    assert main(segment(files, out, *box)) == 0
    assert out.is_file()
    assert glue_negative_values(["--x", "-5,-5,2,2", "--fold", "-1"]) == \
        ["--x=-5,-5,2,2", "--fold", "-1"]


def test_box_outside_the_image_is_a_clear_error(files: dict[str, str], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(segment(files, tmp_path / "p.png", "--support-box", "-50,-50,-10,-10")) == 2
    assert "is empty inside a 48x40 image" in capsys.readouterr().err


@pytest.mark.parametrize("kw,message", [
    ({"iterations": -1}, "iterations must be an integer >= 0"),
    ({"iterations": 1.5}, "iterations must be an integer >= 0"),
    ({"scales": (0,)}, "scales must be finite numbers > 0"),
    ({"scales": (1.0, NAN)}, "scales must be finite numbers > 0"),
    ({"scales": ()}, "scales is empty"),
    ({"scales": (0.1,)}, "query at scale 0.1 is 6x6 pixels"),
])
def test_iterations_and_scales_are_validated(kw: dict[str, Any], message: str) -> None:
    model = tiny_model()
    q, s, m = make_episode()
    with pytest.raises(ValueError, match=message):
        model.predict(q, s, m, **kw)
    if "iterations" in kw:
        with pytest.raises(ValueError, match=message):
            model.refine(model.encode(q, s[:, 0:1], m[:, 0:1]), kw["iterations"])


@pytest.mark.parametrize("side", [1, 8, 15])
def test_tiny_query_is_refused_before_writing(side: int, files: dict[str, str], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match=f"query is {side}x{side} pixels.*at least 16x16"):
        run_segmentation(tiny_model(), rgb(side, side), [rgb(40, 40)], [rect(40, 40)],
                         size=32)
    query = tmp_path / "tiny.png"
    Image.fromarray(rgb(side, side)).save(query)
    out = tmp_path / "out" / "pred.png"
    assert main(segment(files, out, query=str(query))) == 2
    assert f"{query} is {side}x{side} pixels" in capsys.readouterr().err
    assert not out.parent.exists()
    q, s, m = make_episode(size=side, support_size=40)
    with pytest.raises(ValueError, match="query image is"):
        tiny_model().predict(q, s, m)


def test_threads_and_bf16_errors(capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    args = ["evaluate", "--dataset", "synthetic", "--checkpoint",
            "synthetic-imagenet-1shot-fold0", "--episodes", "2", "--no-progress"]
    try:
        assert main([*args, "--threads", "0"]) == 2
        assert "threads must be >= 1, got 0" in capsys.readouterr().err
        from canetlib.evaluation import speed

        monkeypatch.setattr(speed, "cpu_bf16_supported", lambda: False)
        assert main([*args, "--bf16", "--device", "cpu", "--threads", "1"]) == 2
        assert "needs a CPU with native bf16 instructions" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
