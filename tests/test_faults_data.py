"""Wrong results and lost data: each fault is refused with one clear line or fixed.

Inputs overwritten by ``segment --out``, two trainers in one folder, EXIF-rotated
photos, unbounded IOM iterations, raw pixels given to ``predict``, ``predict`` in
training mode, and an uncreatable ``evaluate --json`` folder.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import make_episode
from evalfakes import tiny_model

from canetlib.cli import main
from canetlib.inputs import MAX_ITERATIONS


# --------------------------------------------------------------------------- iterations
@pytest.mark.parametrize("iterations", [MAX_ITERATIONS + 1, 100000])
def test_iterations_above_the_bound_are_refused(iterations: int) -> None:
    model = tiny_model()
    query, supports, masks = make_episode(size=32)
    with pytest.raises(ValueError, match=rf"iterations must be an integer >= 0 and <= "
                                         rf"{MAX_ITERATIONS} .*got {iterations}"):
        model.predict(query, supports, masks, iterations=iterations)


def test_iterations_at_the_bound_run() -> None:
    query, supports, masks = make_episode(size=32)
    pred = tiny_model().predict(query, supports, masks, iterations=MAX_ITERATIONS)
    assert len(pred.probs) == MAX_ITERATIONS + 1


# --------------------------------------------------------------------------- predict
@pytest.mark.parametrize(("scale", "shift", "hint"), [(255.0, 0.0, "0..255"),
                                                      (1.0, 0.0, "0..1")])
def test_raw_pixels_warn_once_naming_the_normaliser(scale: float, shift: float,
                                                    hint: str) -> None:
    query, supports, masks = make_episode(size=32)
    raw_q = torch.rand_like(query) * scale + shift
    raw_s = torch.rand_like(supports) * scale + shift
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
