"""Your own images: the README's "Your own images" block on a tiny in-memory source."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import scenes, tiny_model
from PIL import Image

from canetlib.data import (
    EpisodeDataset,
    ImageMaskSource,
    SegmentationSource,
    make_dataset,
)
from canetlib.evaluation import EvalResult, resolve_input_size
from canetlib.evaluation.metrics import all_objects_iou, all_objects_miou
from canetlib.model import checkpoint

README = Path(__file__).resolve().parents[1] / "README.md"
CHECKPOINT = "synthetic-imagenet-1shot-fold0"


def readme_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Your own images", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "README.md: the 'Your own images' section lost its python block"
    return match.group(1)


def test_the_readme_block_runs_at_the_checkpoint_size(capsys: pytest.CaptureFixture[str]) -> None:
    images, masks = scenes()
    namespace: dict[str, Any] = {"images": images, "masks": masks}
    exec(compile(readme_block(), str(README), "exec"), namespace)  # noqa: S102 - our README
    result, episodes = namespace["result"], namespace["episodes"]
    assert isinstance(result, EvalResult)
    assert result.input_size == (128, 128)  # the checkpoint's train_size, not 321
    assert result.settings["input_size"] == [128, 128]
    assert namespace["model"].input_size == 128
    assert result.episodes == len(episodes) == 20
    assert set(result.per_class_iou) == {"square", "disc"}
    assert 0 <= result.miou <= 100 and result["miou"] == result.miou
    # one place computes the all-objects baseline: the helper agrees with the evaluator
    assert result.all_objects_miou == pytest.approx(all_objects_miou(episodes))
    assert 0 < result.all_objects_miou < 100  # each image shows both classes
    assert "input (128, 128)" in capsys.readouterr().out


def test_episodes_need_no_training_pool_and_no_known_name() -> None:
    images, masks = scenes()
    source = ImageMaskSource(images, masks, ["square", "disc"], name="mine")
    assert source.image_pairs("train") == [] and source.test_classes(0) == [1, 2]
    direct = make_dataset(source=source, split="test", shots=1, episodes=4, seed=3)
    assert isinstance(direct, EpisodeDataset) and direct.classes == [1, 2]
    again = EpisodeDataset(source, 0, "test", 1, 4, 3)
    assert [again.spec(i) for i in range(4)] == [direct.spec(i) for i in range(4)]
    item = direct[0]
    assert item["query_image"].shape == (3, 72, 96)
    assert item["query_mask"].shape == (72, 96)
    assert all_objects_iou(item) is not None


def test_a_model_without_a_training_size_falls_back_to_the_source_default() -> None:
    episodes = make_dataset(source=ImageMaskSource(*scenes(), ["square", "disc"]), split="test",
                            episodes=2)
    assert resolve_input_size(episodes, None, tiny_model()) == (321, 321)
    assert resolve_input_size(episodes, 64, checkpoint.load_model(CHECKPOINT)) == (64, 64)


def test_load_model_records_the_size_outside_the_state_dict() -> None:
    model = checkpoint.load_model(CHECKPOINT)
    assert model.input_size == checkpoint.trained_input_size(checkpoint.load(CHECKPOINT)) == 128
    assert "input_size" not in model.config.to_dict()
    assert not any("input_size" in k for k in model.state_dict())
    assert set(checkpoint.model_payload(model)["model"]) == set(checkpoint.load(CHECKPOINT)["model"])


def test_a_folder_gives_the_same_episodes(tmp_path: Path) -> None:
    images, masks = scenes(4, seed=1)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i, (image, mask) in enumerate(zip(images, masks)):
        Image.fromarray(image).save(tmp_path / "images" / f"{i}.png")
        Image.fromarray(mask).save(tmp_path / "masks" / f"{i}.png")
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    folder = ImageMaskSource.from_folder(tmp_path, ["square", "disc"])
    memory = ImageMaskSource(images, masks, ["square", "disc"])
    assert folder.image_pairs("test") == memory.image_pairs("test")
    a, b = (make_dataset(source=s, split="test", episodes=3, seed=0)[2] for s in (folder, memory))
    assert torch.equal(a["query_image"], b["query_image"])
    assert torch.equal(a["support_masks"], b["support_masks"])


def test_a_minimal_subclass_is_enough() -> None:
    images, masks = scenes(4)

    class Mine(SegmentationSource):
        class_names = ("square", "disc")
        num_folds = 1

        def image_pairs(self, split: str) -> list[tuple[str, int]]:
            return [(str(i), c) for i in range(4) for c in (1, 2)] if split == "test" else []

        def load_image(self, image_id: str) -> np.ndarray:
            return images[int(image_id)]

        def load_mask(self, image_id: str) -> np.ndarray:
            return masks[int(image_id)]

    ds = make_dataset(source=Mine(), split="test", episodes=3, box_support=True)
    box = ds[0]["support_masks"][0]  # default instances: the class's connected component
    assert set(box.unique().tolist()) == {0, 1}


def test_bad_inputs_are_named() -> None:
    images, masks = scenes(2)
    with pytest.raises(ValueError, match="beyond 1..1"):
        ImageMaskSource(images, masks, ["square"])
    with pytest.raises(ValueError, match="like its image"):
        ImageMaskSource(images, [m[:10] for m in masks], ["square", "disc"])
    with pytest.raises(ValueError, match="differ in ids"):
        ImageMaskSource(images, masks[:1], ["square", "disc"])

    class TooFew(SegmentationSource):
        class_names = ("a", "b")

        def image_pairs(self, split: str) -> list[tuple[str, int]]:
            return []

        load_image = load_mask = image_pairs  # type: ignore[assignment]

    with pytest.raises(ValueError, match="num_folds = 1"):
        TooFew().test_classes(0)
