"""The book's architecture figure: scripts/draw_architecture.py writes a usable SVG and PNG."""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path

from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "draw_architecture.py"
CLASS_NAMES = ("DenseComparison", "IterativeOptimization", "AttentionFusion",
               "masked_average_pooling")


def _load_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("draw_architecture", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_architecture_figure(tmp_path: Path) -> None:
    svg, png = _load_script().main(tmp_path)
    assert svg == tmp_path / "canet-architecture.svg" and svg.is_file()
    assert png == tmp_path / "canet-architecture.png" and png.is_file()

    # sized for the book's content column: ~1500 px wide at 150 dpi, landscape
    with Image.open(png) as image:
        width, height = image.size
        dpi = image.info.get("dpi", (0, 0))[0]
    assert 1400 <= width <= 1600, width
    assert 800 <= height <= 1300, height
    assert round(dpi) == 150, dpi

    # the class names are drawn as text (svg.fonttype "none"), not only as element ids
    root = ET.parse(svg).getroot()
    drawn = " ".join(el.text or "" for el in root.iter()
                     if el.tag.endswith(("}text", "}tspan")))
    for name in CLASS_NAMES:
        assert name in drawn, f"{name} is not a label in the SVG"
