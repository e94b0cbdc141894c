"""Segment your own images: library function, command line, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import rect, rgb, tiny_model
from PIL import Image

from canetlib.cli import main
from canetlib.cli.segmentation import as_mask, run_segmentation, segment_images
from canetlib.model import checkpoint


def test_mask_and_probs_at_query_size() -> None:
    model = tiny_model()
    mask, probs = segment_images(model, Image.fromarray(rgb(50, 70)), [rgb(40, 44, 1)],
                                 [rect(40, 44)], iterations=3, size=48)
    assert mask.shape == (50, 70) and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) <= {0, 1}
    assert len(probs) == 4 and probs[0].shape == (50, 70)
    assert np.array_equal(mask, (probs[-1] > 0.5).astype(np.uint8))


def test_boxes_and_kshot_on_a_one_shot_model() -> None:
    model = tiny_model()
    with pytest.warns(UserWarning, match="Mask-Avg"):
        mask, probs = segment_images(model, rgb(40, 40), [rgb(40, 40, 1), rgb(36, 52, 2)],
                                     [(4, 4, 30, 20), rect(36, 52, 1)], iterations=1, size=40)
    assert mask.shape == (40, 40) and len(probs) == 2
    assert model.fusion is None  # the caller's model is untouched


def test_attention_weights_are_returned() -> None:
    model = tiny_model(fusion="attention")
    seg = run_segmentation(model, rgb(40, 40), [rgb(40, 40, 1), rgb(40, 40, 2)],
                           [rect(40, 40), rect(40, 40)], iterations=1, size=40)
    assert seg.attention is not None and seg.attention.shape == (2,)
    assert seg.attention.sum() == pytest.approx(1.0, abs=1e-5)
    assert seg.note == "" and seg.fusion == "attention"


def test_mask_conventions() -> None:
    assert as_mask(rect(8, 8), (8, 8)).max() == 1  # 0/255
    assert as_mask(rect(8, 8, 1), (8, 8)).max() == 1  # 0/1
    m = rect(8, 8, 1)
    m[0] = 255
    assert set(np.unique(as_mask(m, (8, 8))).tolist()) == {0, 1, 255}  # 255 = ignore
    assert as_mask(rect(8, 8) > 0, (8, 8)).sum() == (rect(8, 8) > 0).sum()


def test_errors_are_clear() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match="40x30 but its support image is 44x40"):
        segment_images(model, rgb(40, 40), [rgb(40, 44)], [rect(30, 40)], size=40)
    with pytest.raises(ValueError, match="empty"):
        segment_images(model, rgb(40, 40), [rgb(40, 40)], [np.zeros((40, 40), np.uint8)], size=40)
    with pytest.raises(ValueError, match="every support needs"):
        segment_images(model, rgb(40, 40), [rgb(40, 40)], [], size=40)
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        segment_images(model, "nowhere.png", [rgb(40, 40)], [rect(40, 40)], size=40)


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, str]:
    paths = {"ckpt": tmp_path / "tiny.pt", "support": tmp_path / "s.png",
             "mask": tmp_path / "m.png", "query": tmp_path / "q.jpg",
             "small_mask": tmp_path / "small.png", "empty": tmp_path / "empty.png"}
    checkpoint.save_atomic(checkpoint.model_payload(tiny_model()), paths["ckpt"])
    Image.fromarray(rgb(40, 48, 1)).save(paths["support"])
    Image.fromarray(rect(40, 48)).save(paths["mask"])
    Image.fromarray(rgb(36, 60)).save(paths["query"])
    Image.fromarray(rect(20, 20)).save(paths["small_mask"])
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(paths["empty"])
    return {k: str(v) for k, v in paths.items()}


def test_command_writes_mask_and_overlay(files: dict[str, str], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "pred.png"
    rc = main(["segment", "--checkpoint", files["ckpt"], "--support", files["support"],
               "--support-mask", files["mask"], "--support", files["support"], "--support-box",
               "2,2,30,30", "--query", files["query"], "--out", str(out), "--size", "40",
               "--iterations", "2", "--device", "cpu"])
    assert rc == 0
    mask = np.asarray(Image.open(out))
    assert mask.shape == (36, 60) and set(np.unique(mask).tolist()) <= {0, 255}
    assert Image.open(tmp_path / "out" / "pred_overlay.png").size == (60, 36)
    assert "Mask-Avg" in capsys.readouterr().out


@pytest.mark.parametrize("extra,message", [
    (["--support-mask", "SMALL"], "must match"),
    (["--support-mask", "EMPTY"], "empty"),
    (["--support-mask", "/no/such/mask.png"], "/no/such/mask.png"),
    ([], "has no --support-mask or --support-box"),
])
def test_command_errors(files: dict[str, str], tmp_path: Path, extra: list[str], message: str,
                        capsys: pytest.CaptureFixture[str]) -> None:
    extra = [files["small_mask"] if e == "SMALL" else files["empty"] if e == "EMPTY" else e
             for e in extra]
    rc = main(["segment", "--checkpoint", files["ckpt"], "--support", files["support"], *extra,
               "--query", files["query"], "--out", str(tmp_path / "o.png"), "--size", "40"])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_annotation_before_support_is_refused(files: dict[str, str], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.png"
    with pytest.raises(SystemExit) as exc:
        main(["segment", "--checkpoint", files["ckpt"], "--support-mask", files["mask"],
              "--support", files["support"], "--query", files["query"], "--out", str(out)])
    assert exc.value.code == 2  # a usage error, not a clean exit
    assert "--support-mask must follow a --support IMG" in capsys.readouterr().err
    assert not out.exists()
