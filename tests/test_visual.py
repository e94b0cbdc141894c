"""Visual helpers: every figure renders to PNG bytes without pyplot."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from helpers import FakeEpisodes
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.text import Text

from canetlib.model.inputs import IMAGENET_MEAN, IMAGENET_STD
from canetlib.teaching import visual


def png(fig: Figure) -> bytes:
    assert isinstance(fig, Figure)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    data = buf.getvalue()
    assert data.startswith(b"\x89PNG")
    return data


def probs(h: int, w: int, n: int) -> list[torch.Tensor]:
    out = []
    for t in range(n):
        fg = torch.zeros(h, w)
        fg[5: 10 + 3 * t, 5:20] = 0.9
        out.append(torch.stack([1 - fg, fg]))
    return out


def test_denormalize_inverts_the_imagenet_normalisation() -> None:
    rgb = torch.tensor([[[0.2]], [[0.5]], [[0.8]]])
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    out = visual.denormalize((rgb - mean) / std)
    assert out.dtype == np.uint8 and out.shape == (1, 1, 3)
    assert out[0, 0].tolist() == [51, 128, 204]


def test_overlay_colours_only_the_object() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    mask = np.zeros((4, 4), np.int64)
    mask[1, 1] = 1
    mask[2, 2] = 255
    out = visual.overlay(image, mask, color=(200, 0, 0), alpha=0.5)
    assert out[1, 1].tolist() == [100, 0, 0]
    assert out[2, 2].tolist() == [0, 0, 0] and out[0, 0].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="size"):
        visual.overlay(image, np.zeros((3, 3)))


def test_iou_per_iteration() -> None:
    gt = torch.zeros(30, 30, dtype=torch.long)
    gt[5:10, 5:20] = 1
    gt[0] = 255
    ious = visual.iou_per_iteration(probs(30, 30, 3), gt)
    assert ious[0] == pytest.approx(100.0)
    assert ious[1] == pytest.approx(100 * 75 / 120)


def test_every_figure_renders() -> None:
    item = FakeEpisodes(1, shots=2)[0]
    image = item["query_image"]
    h, w = image.shape[-2:]
    ps = probs(h, w, 5)
    gt = item["query_mask"]
    png(visual.plot_episode(item))
    png(visual.plot_episode(item, pred=ps[-1].argmax(0)))
    png(visual.plot_iterations(image, ps, gt=gt))
    png(visual.plot_iterations(visual.denormalize(image), [p[1].numpy() for p in ps]))
    png(visual.plot_iteration(image, ps[2], 2, gt=gt, iou=50.0))
    png(visual.plot_attention(item["support_images"], item["support_masks"],
                              torch.tensor([0.3, 0.7]), query=image, prediction=gt == 1))
    png(visual.plot_attention(list(item["support_images"]), list(item["support_masks"]),
                              [0.5, 0.5]))
    png(visual.plot_iou_per_iteration({"1-shot": [40, 45, 46, 46, 47]},
                                      stds={"1-shot": [1, 1, 1, 1, 1]}))
    png(visual.plot_iou_per_iteration([40, 45, 46]))


def test_shape_errors_are_named() -> None:
    with pytest.raises(ValueError, match="attention weights"):
        item = FakeEpisodes(1, shots=2)[0]
        visual.plot_attention(item["support_images"], item["support_masks"], [1.0])
    with pytest.raises(ValueError, match="IoUs"):
        visual.plot_iterations(np.zeros((8, 8, 3), np.uint8), probs(8, 8, 2), ious=[1.0])


def test_paper_vs_ours_bars_mark_each_panels_best_row() -> None:
    paper = {"a": 46.6, "b": 50.8, "c": 48.4}
    fig = visual.plot_paper_vs_ours(paper, {"a": 20.0, "b": 18.0, "c": 25.0},
                                    {"a": 1.0, "b": 0.5, "c": 0.8})
    png(fig)
    left, right = fig.axes
    assert [t.get_text() for t in left.get_yticklabels()] == ["a", "b", "c"]
    darkest = [max(ax.patches, key=lambda p: p.get_alpha()).get_width() for ax in (left, right)]
    assert darkest == [50.8, 25.0]
    with pytest.raises(ValueError, match=r"rows \['c'\]"):
        visual.plot_paper_vs_ours(paper, {"a": 1.0, "b": 2.0})


def test_plot_episode_titles_the_class_by_name():
    item = {"support_images": torch.zeros(1, 3, 32, 32), "support_masks": torch.zeros(1, 32, 32),
            "query_image": torch.zeros(3, 32, 32),
            "query_mask": torch.ones(32, 32, dtype=torch.long), "class_id": 3}
    named = visual.plot_episode(item, pred=torch.ones(32, 32), class_name="bird")
    titles = [ax.get_title() for ax in named.axes]
    assert titles[1] == "query + truth (bird)" and titles[2] == "prediction\nIoU 100.0"
    assert visual.plot_episode(item).axes[1].get_title() == "query + truth (class 3)"


def test_plot_attention_shows_the_truth_and_the_iou():
    sup = torch.zeros(2, 3, 16, 16)
    masks = torch.ones(2, 16, 16, dtype=torch.long)
    gt = torch.zeros(16, 16, dtype=torch.long)
    gt[:8] = 1
    pred = torch.zeros(16, 16, dtype=torch.long)
    pred[:4] = 1
    fig = visual.plot_attention(sup, masks, [0.4, 0.6], query=torch.zeros(3, 16, 16),
                                prediction=pred, gt=gt)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[2:] == ["query + truth", "prediction\nIoU 50.0", "attention weights"]


def test_iou_per_iteration_axis_starts_at_zero_unless_asked():
    fig = visual.plot_iou_per_iteration([51.8, 52.5, 52.8])
    assert fig.axes[0].get_ylim()[0] == 0
    zoomed = visual.plot_iou_per_iteration([51.8, 52.5, 52.8], zero=False)
    assert zoomed.axes[0].get_ylim()[0] > 50


def test_iteration_names_are_shared_by_axes_and_captions():
    assert [visual.iteration_name(t) for t in range(3)] == ["Init", "1", "2"]
    fig = visual.plot_iou_per_iteration([40.0, 45.0, 47.0])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["Init", "1", "2"]
    probs = torch.stack([torch.zeros(16, 16), torch.ones(16, 16)])  # all foreground
    panel = visual.plot_iteration(torch.zeros(3, 16, 16), probs, 0).axes[0]
    assert panel.images[0].get_cmap().name == visual.PROBABILITY_CMAP



def _outline_axes() -> Axes:
    return Figure().add_subplot()


def test_draw_outline_traces_the_mask_boundary_in_its_colour() -> None:
    """The contour runs half a pixel outside the object, on all four sides, in ``color``;
    the 255 (ignored) pixels are not outlined; a dark halo is drawn under it."""
    mask = torch.zeros(30, 40, dtype=torch.long)
    mask[5:15, 8:20] = 1  # rows 5..14, columns 8..19
    mask[20:25, 25:35] = 255
    ax = _outline_axes()
    visual.draw_outline(ax, mask, color=(255, 0, 0))
    assert len(ax.collections) == 1
    contour = ax.collections[0]
    points = np.concatenate([p.vertices for p in contour.get_paths()])
    assert len(points) >= 4
    x, y = points[:, 0], points[:, 1]
    assert x.min() == pytest.approx(7.5) and x.max() == pytest.approx(19.5)
    assert y.min() == pytest.approx(4.5) and y.max() == pytest.approx(14.5)
    on_edge = (np.isclose(x, 7.5) | np.isclose(x, 19.5) | np.isclose(y, 4.5)
               | np.isclose(y, 14.5))
    assert on_edge.all(), points[~on_edge]
    assert np.allclose(contour.get_edgecolor()[0][:3], (1.0, 0.0, 0.0))
    assert contour.get_path_effects(), "the dark halo that keeps the outline visible"
    assert ax.get_legend_handles_labels()[1] == []


def test_draw_outline_of_an_empty_mask_draws_nothing_but_its_legend_entry() -> None:
    empty = np.zeros((16, 16), np.int64)
    ax = _outline_axes()
    visual.draw_outline(ax, empty)
    visual.draw_outline(ax, np.full((16, 16), 255))  # only ignored pixels: nothing either
    assert len(ax.collections) == 0 and len(ax.lines) == 0
    labelled = _outline_axes()
    visual.draw_outline(labelled, empty, color=(0, 0, 255), label="prediction",
                        linestyle="dashed")
    assert len(labelled.collections) == 0
    assert labelled.get_legend_handles_labels()[1] == ["prediction"]
    (line,) = labelled.lines
    assert len(line.get_xdata()) == 0 and line.get_linestyle() == "--"
    assert to_rgb(line.get_color()) == (0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="mask"):
        visual.draw_outline(_outline_axes(), np.zeros((2, 3, 4)))


def test_plot_outlines_titles_each_panel_and_names_each_label_once() -> None:
    image = np.zeros((20, 20, 3), np.uint8)
    truth = np.zeros((20, 20), np.int64)
    truth[4:12, 4:12] = 1
    empty = np.zeros((20, 20), np.int64)
    panels = [
        (image, [(truth, visual.GT_COLOR, "truth: bottle")], "support"),
        (image, [(truth, visual.GT_COLOR, "truth: bottle"),
                 (empty, visual.PRED_COLOR, "prediction")], "query"),
    ]
    fig = visual.plot_outlines(panels)
    png(fig)
    assert [ax.get_title() for ax in fig.axes] == ["support", "query"]
    assert [len(ax.collections) for ax in fig.axes] == [1, 1]  # the empty prediction: none
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["truth: bottle", "prediction"]
    texts = [t.get_text() for t in fig.findobj(Text)]
    assert texts.count("truth: bottle") == 1 and texts.count("prediction") == 1
    assert not visual.plot_outlines([(image, [], "no outlines")]).legends


def test_predicted_mask_follows_the_models_rule() -> None:
    """Foreground beats background, a tie is background, for both accepted layouts."""
    from canetlib.model.outputs import binary_prediction

    fg = torch.tensor([[0.2, 0.5, 0.5001], [0.9, 0.0, 1.0]])
    two = torch.stack([1 - fg, fg])
    expected = [[0, 0, 1], [1, 0, 1]]
    assert visual.predicted_mask(two).tolist() == expected
    assert visual.predicted_mask(two[None]).tolist() == expected
    assert visual.predicted_mask(fg.numpy()).tolist() == expected
    assert (visual.predicted_mask(two) == binary_prediction(two[None])[0].numpy()).all()
    with pytest.raises(ValueError, match=r"expected \(2, H, W\) probabilities"):
        visual.predicted_mask(torch.zeros(3, 4, 4))


def test_plot_iteration_draws_the_mask_it_is_given() -> None:
    probs = torch.stack([torch.ones(16, 16), torch.zeros(16, 16)])  # all background
    mask = torch.ones(16, 16, dtype=torch.long)
    image = np.zeros((16, 16, 3), np.uint8)
    drawn = visual.plot_iteration(image, probs, 1, mask=mask).axes[1].images[0].get_array()
    assert (np.asarray(drawn)[..., 0] > 0).all()
    default = visual.plot_iteration(image, probs, 1).axes[1].images[0].get_array()
    assert (np.asarray(default) == 0).all()
