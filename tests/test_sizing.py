"""The evaluator's default input size per dataset agrees with the training configs."""

from __future__ import annotations

import pytest

from canetlib.evaluation.sizing import REFERENCE_INPUT_SIZE, default_input_size
from canetlib.training.configs import CONFIGS


@pytest.mark.parametrize("name", [n for n in CONFIGS if n.endswith("-1shot")])
def test_default_input_size_is_the_training_crop(name: str) -> None:
    dataset = name.removesuffix("-1shot")
    assert default_input_size(dataset) == CONFIGS[name].train_size  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["folder", "fss1000", "own", None])
def test_other_datasets_use_the_reference_size(name: str | None) -> None:
    assert default_input_size(name) == REFERENCE_INPUT_SIZE == 321


def test_the_synthetic_world_is_fed_at_128() -> None:
    assert default_input_size("synthetic") == 128
