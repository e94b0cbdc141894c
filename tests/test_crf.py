"""DenseCRF: snaps a blurred prediction to colour edges, keeps shapes, names bad input."""

from __future__ import annotations

import pytest
import torch
from helpers import FakeEpisodes, tiny_model

from canetlib.evaluation import evaluate
from canetlib.evaluation.crf import DenseCRF
from canetlib.model.inputs import IMAGENET_MEAN, IMAGENET_STD


def two_regions(h: int = 90, w: int = 120) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An image with a colour edge at w/2, a truth mask, and noisy probabilities off by 15 px."""
    g = torch.Generator().manual_seed(0)
    image = torch.zeros(3, h, w, dtype=torch.uint8)
    image[:, :, : w // 2] = torch.tensor([30, 60, 200], dtype=torch.uint8)[:, None, None]
    image[:, :, w // 2:] = torch.tensor([220, 180, 20], dtype=torch.uint8)[:, None, None]
    truth = torch.zeros(h, w, dtype=torch.long)
    truth[:, w // 2:] = 1
    fg = torch.full((h, w), 0.35)
    fg[:, w // 2 - 15:] = 0.65
    fg = (fg + 0.2 * torch.randn(h, w, generator=g)).clamp(0.02, 0.98)
    return image, truth, torch.stack([1 - fg, fg])


def iou(pred: torch.Tensor, truth: torch.Tensor) -> float:
    return float(((pred == 1) & (truth == 1)).sum() / ((pred == 1) | (truth == 1)).sum())


def test_crf_moves_the_boundary_to_the_colour_edge() -> None:
    image, truth, probs = two_regions()
    before = iou(probs.argmax(0), truth)
    after = DenseCRF()(image, probs)
    assert after.shape == probs.shape
    torch.testing.assert_close(after.sum(0), torch.ones(probs.shape[1:]))
    assert before < 0.85 and iou(after.argmax(0), truth) > 0.97


def test_normalised_image_batched_probs_and_no_iterations() -> None:
    image, _, probs = two_regions(40, 50)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    normalised = (image.float() / 255 - mean) / std
    a = DenseCRF()(image, probs)
    b = DenseCRF()(normalised, probs[None])
    assert b.shape == (1, *probs.shape)
    torch.testing.assert_close(a, b[0], atol=1e-4, rtol=1e-4)
    # zero mean-field steps return the (grid-resampled) input
    same = DenseCRF(iterations=0, max_side=64)(image, probs)
    torch.testing.assert_close(same, probs)


def test_grid_size_changes_little() -> None:
    """A full-resolution grid (one node per pixel) and a coarse one land on the same edge.
    A small image: the dense kernel has (h w)^2 entries, so 90 x 120 took half a minute."""
    image, truth, probs = two_regions(48, 64)
    before = probs.argmax(0)
    fine = DenseCRF(max_side=64)(image, probs).argmax(0)
    coarse = DenseCRF(max_side=24)(image, probs).argmax(0)
    assert iou(before, truth) < 0.85  # so agreeing is not agreeing on the input
    assert iou(fine, truth) > 0.97 and iou(coarse, truth) > 0.97
    assert (fine == coarse).float().mean() > 0.97


def test_bad_input_is_named() -> None:
    image, _, probs = two_regions(20, 30)
    with pytest.raises(ValueError, match="probs must be"):
        DenseCRF()(image, probs[:1])
    with pytest.raises(ValueError, match="probabilities' size"):
        DenseCRF()(image[:, :10], probs)
    with pytest.raises(ValueError, match="iterations"):
        DenseCRF(iterations=-1)
    with pytest.raises(ValueError, match="widths"):
        DenseCRF(appearance_rgb=0)


def test_evaluator_applies_the_postprocess_at_original_size() -> None:
    model, data = tiny_model(), FakeEpisodes(4)
    seen: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def spy(image: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        seen.append((tuple(image.shape), tuple(probs.shape)))
        assert torch.allclose(probs.sum(1), torch.ones(()))  # probabilities, not logits
        return probs.flip(1)  # swap background and foreground

    plain = evaluate(model, data, iterations=1, input_size=24)
    flipped = evaluate(model, data, iterations=1, input_size=24, postprocess=spy)
    assert len(seen) == 2 * len(data)
    for i, (img, pr) in enumerate(seen):
        h, w = data[i // 2]["query_mask"].shape
        assert img == (3, h, w) and pr == (1, 2, h, w)
    assert flipped["miou"] != pytest.approx(plain["miou"])
    crf = evaluate(model, data, iterations=0, input_size=24, postprocess=DenseCRF())
    assert crf["settings"]["postprocess"]["appearance_rgb"] == 13.0


def test_pydensecrf_backend_snaps_to_the_edge_like_the_exact_one() -> None:
    """The field's full-resolution CRF (pydensecrf2) on the same noisy map: IoU goes up, and
    its output has the exact backend's shape, dtype and normalisation (batched or not)."""
    pytest.importorskip("pydensecrf.densecrf")
    image, truth, probs = two_regions()
    crf = DenseCRF(backend="pydensecrf")
    assert crf.settings()["backend"] == "pydensecrf"
    assert DenseCRF(backend="auto").settings()["backend"] == "pydensecrf"
    after, exact = crf(image, probs), DenseCRF(backend="exact")(image, probs)
    assert after.shape == exact.shape == probs.shape and after.dtype == exact.dtype
    torch.testing.assert_close(after.sum(0), torch.ones(probs.shape[1:]))
    before = iou(probs.argmax(0), truth)
    assert before < 0.85 and iou(after.argmax(0), truth) > max(before, 0.97)
    assert (after.argmax(0) == exact.argmax(0)).float().mean() > 0.97
    batched = crf(image, probs[None].double())
    assert batched.shape == (1, *probs.shape) and batched.dtype == torch.float64
    torch.testing.assert_close(batched[0].float(), after)


def test_pydensecrf_backend_missing_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pydensecrf", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(ImportError, match=r'pip install "canetlib\[crf\]"'):
        DenseCRF(backend="pydensecrf")
    assert DenseCRF(backend="auto").settings()["backend"] == "exact"
    with pytest.raises(ValueError, match="backend"):
        DenseCRF(backend="lattice")  # type: ignore[arg-type]
