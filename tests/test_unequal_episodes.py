"""The world's partial matches (``part_recolour``) and supports of unequal quality
(``support_damage``): options of the data layer, off by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import load_script, tiny_config, tiny_model
from scipy import ndimage

from canetlib.data import make_dataset
from canetlib.data.damage import DAMAGES, damage_support, damage_supports
from canetlib.data.world.catalog import CLASS_GLYPHS
from canetlib.data.world.glyphs import glyph_parts
from canetlib.data.world.layout import SceneObject
from canetlib.data.world.recolour import MAX_REGIONS, OUTLINE_MAX, colour_regions, recoloured_rgb
from canetlib.data.world.synthetic import SyntheticSource
from canetlib.evaluation import evaluate
from canetlib.training.configs import get_config
from canetlib.training.episodes import validation_config

CAT = CLASS_GLYPHS["cat"][0]


def _object(**kw: object) -> SceneObject:
    base = {"class_id": 8, "glyph": CAT, "size": 60.0, "angle": 0.0, "flip": False,
            "cx": 50.0, "cy": 50.0, "hue": 0.0, "sat": 1.0, "val": 1.0}
    return SceneObject(**{**base, **kw})  # type: ignore[arg-type]


def test_colour_regions_are_the_glyph_s_large_flat_colours_never_its_outline() -> None:
    labels, palette = colour_regions(CAT)
    assert 1 <= len(palette) <= MAX_REGIONS
    assert labels.min() == -1 and labels.max() == len(palette) - 1
    assert (palette * 255).max(1).min() > OUTLINE_MAX  # no region is outline-dark
    assert (labels[np.asarray(glyph_parts(CAT)[1]) < 128] == -1).all()  # transparent: none


def test_a_repainted_region_takes_its_new_colour_and_the_others_keep_theirs() -> None:
    labels, palette = colour_regions(CAT)
    original = np.asarray(glyph_parts(CAT)[0])
    assert recoloured_rgb(_object()) is glyph_parts(CAT)[0]  # nothing to repaint: the glyph
    new = (0.1, 0.9, 0.2)
    out = np.asarray(recoloured_rgb(_object(region_colours=(new,) + (None,) * (len(palette) - 1))))
    pure = (original == np.round(palette[0] * 255)).all(-1) & (labels == 0)
    assert pure.any() and np.abs(out[pure] - np.round(np.array(new) * 255)).max() <= 1
    assert (out[labels != 0] == original[labels != 0]).all()


def test_part_recolour_changes_object_pixels_only_never_masks_or_layouts() -> None:
    plain = SyntheticSource(test_images_per_class=1)
    parts = SyntheticSource(test_images_per_class=1, part_recolour=1.0)
    assert plain.fingerprint != parts.fingerprint
    changed = 0
    for image_id in plain.image_ids("test")[:4]:
        assert plain.layout(image_id) == parts.layout(image_id)
        mask = plain.load_mask(image_id)
        assert (mask == parts.load_mask(image_id)).all()
        a, b = plain.load_image(image_id), parts.load_image(image_id)
        away = ~ndimage.binary_dilation(mask != 0)  # beyond the faint edge of any glyph
        assert (a[away] == b[away]).all()  # the background is untouched
        changed += int((a != b).any(-1).sum())
    assert changed > 0


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_part_recolour_outside_0_1_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="part_recolour must be in"):
        SyntheticSource(part_recolour=bad)
    with pytest.raises(ValueError, match="world_part_recolour must be in"):
        get_config("synthetic-1shot", [f"world_part_recolour={bad}"])


def _support(h: int = 60, w: int = 80) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), dtype=np.int64)
    mask[15:45, 20:60] = 1
    mask[14, 20:60] = 255
    return image, mask


@pytest.mark.parametrize("kind", DAMAGES)
def test_each_damage_keeps_part_of_the_object_and_leaves_its_inputs_alone(kind: str) -> None:
    image, mask = _support()
    before = (image.copy(), mask.copy())
    out_image, out_mask = damage_support(image, mask, kind, np.random.default_rng(1))
    assert (image == before[0]).all() and (mask == before[1]).all()
    assert out_image.shape[:2] == out_mask.shape and out_image.dtype == image.dtype
    assert 0 < (out_mask == 1).sum() < (mask == 1).sum()
    if kind == "occluded":
        assert out_mask.shape == mask.shape and (out_image != image).any()
    if kind == "truncated":
        assert out_mask.shape != mask.shape
    if kind == "small":
        assert out_mask.shape == mask.shape and set(np.unique(out_mask)) <= {0, 1, 255}


def test_a_support_without_object_pixels_is_left_as_it_is() -> None:
    image, mask = _support()
    empty = np.zeros_like(mask)
    images, masks, kinds = damage_supports([image], [empty], 1.0, np.random.default_rng(0))
    assert images[0] is image and masks[0] is empty and kinds == [""]
    with pytest.raises(ValueError, match="support damage must be one of"):
        damage_support(image, mask, "blurred", np.random.default_rng(0))


def test_damaged_episodes_are_seeded_and_touch_supports_only() -> None:
    kw: dict[str, Any] = {"fold": 0, "split": "test", "shots": 5, "episodes": 3, "seed": 0}
    plain = make_dataset("synthetic", **kw)
    damaged = make_dataset("synthetic", support_damage=1.0, **kw)
    again = make_dataset("synthetic", support_damage=1.0, **kw)
    assert "support_damage" not in plain[0]
    for i in range(3):
        a, b, c = plain[i], damaged[i], again[i]
        assert (a["query_image"] == b["query_image"]).all() and a["support_ids"] == b["support_ids"]
        assert b["support_damage"] == c["support_damage"]
        assert set(b["support_damage"]) <= set(DAMAGES) | {""} and any(b["support_damage"])
        for x, y in zip(b["support_masks"], c["support_masks"]):
            assert (x == y).all()
    with pytest.raises(ValueError, match="support_damage must be in"):
        make_dataset("synthetic", support_damage=2.0, **kw)


def test_training_episodes_draw_new_damage_each_epoch() -> None:
    ds = make_dataset("synthetic", fold=0, split="train", shots=5, episodes=4, seed=0,
                      train_size=64, support_damage=0.5)
    first = [ds[i]["support_damage"] for i in range(4)]
    assert ds[0]["support_masks"].shape == (5, 64, 64)
    ds.set_epoch(1)
    assert [ds[i]["support_damage"] for i in range(4)] != first


def test_the_damage_probe_groups_attention_weights_by_what_spoiled_each_support() -> None:
    probe = load_script("damage_probe")
    model = tiny_model("attention")
    recorder = probe.WeightRecorder(model, shots=5)
    data = make_dataset("synthetic", fold=0, split="test", shots=5, episodes=3, seed=0,
                        support_damage=0.5)
    evaluate(model, data, iterations=2, progress=False, batch_size=2)
    weights = recorder.weights()
    assert weights.shape == (3, 5) and torch.allclose(weights.sum(1), torch.ones(3))
    kinds = [data[i]["support_damage"] for i in range(3)]
    summary = probe.weight_summary(weights, kinds)
    damaged = [w for row, ks in zip(weights.tolist(), kinds) for w, k in zip(row, ks) if k]
    assert summary["damaged"]["supports"] == len(damaged) > 0
    assert summary["damaged"]["mean_weight"] == round(sum(damaged) / len(damaged), 4)
    assert sum(v["supports"] for k, v in summary.items() if k != "damaged") == 15
    with pytest.raises(RuntimeError, match="recorded 3 episodes of weights, expected 4"):
        probe.weight_summary(weights, kinds + [["", "", "", "", ""]])


def test_a_run_s_validation_config_is_read_from_its_last_checkpoint(tmp_path: Path) -> None:
    torch.save({"train_config": tiny_config("val_by=classes").to_dict()}, tmp_path / "last.pt")
    cfg = validation_config(tmp_path, val_episodes=7, support_damage=0.5)
    assert (cfg.val_by, cfg.val_episodes, cfg.support_damage) == ("classes", 7, 0.5)
    torch.save({"train_config": tiny_config().to_dict()}, tmp_path / "last.pt")
    with pytest.raises(ValueError, match="was trained without a validation split"):
        validation_config(tmp_path)


def test_the_damage_probe_splits_weights_by_drawing_at_the_side_asked(tmp_path: Path) -> None:
    """On the embedded world the probe also reports the weights of supports that show the
    query's drawing and of those that do not, and runs the model at ``input_size``."""
    from canetlib.model import checkpoint

    probe = load_script("damage_probe")
    cfg = tiny_config("val_by=classes", "shots=5", "fusion=attention", "world_images=12")
    torch.save({"train_config": cfg.to_dict()}, tmp_path / "last.pt")
    model = tiny_model("attention")
    checkpoint.save_atomic({**checkpoint.model_payload(model), "train_config": cfg.to_dict()},
                           tmp_path / "model.pt")
    val = validation_config(tmp_path, val_episodes=6, support_damage=0.0)
    row = probe.score(str(tmp_path / "model.pt"), "attention", val, [0], input_size=48)
    drawing = row["weights_by_drawing"]
    assert drawing["mixed_episodes"] > 0
    assert 0.0 < drawing["mean_weight_same_drawing"] < 1.0
    assert row["weights"]["intact"]["supports"] == 30  # 6 episodes x 5 supports, none damaged
    sticks = probe.yardsticks(str(tmp_path / "model.pt"), val, [0], input_size=48)
    assert sticks["matcher"]["input_size"] == 48
