"""Result tables read back from `evaluate --json` files."""

import json
from pathlib import Path

import pytest
from helpers import load_script

from canetlib.teaching import report

update_tables = load_script("update_tables")
from canetlib.teaching.shipped import shipped_path

ROOT = Path(__file__).resolve().parent.parent
#: the shipped result files the book quotes, and the README that says how each was made
RESULTS = shipped_path("results/imagenet-backbone")
RESULTS_README = ROOT / "data" / "results" / "imagenet-backbone" / "README.md"


def write(path: Path, fold: int, shots: int, final: float, **settings) -> None:
    s = {"fold": fold, "shots": shots, "checkpoint": f"ck-{shots}-{fold}",
         "fusion": "attention" if shots > 1 else None, "episodes_per_seed": 10,
         "seeds": [0, 1], "scales": [1.0], "box_support": False, "dense_crf": False,
         "glyphs": "all", **settings}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "settings": s, "miou": final, "miou_std": 1.0, "fbiou": 70.0, "fbiou_std": 0.5,
        "miou_per_iteration": [final - 2, final], "miou_per_iteration_std": [1.0, 1.0],
        "all_objects_miou": 30.0, "all_objects_miou_std": 0.2,
        "baselines": {"prototype": {"miou": 40.0, "miou_std": 0.3}}}))


def test_mean_only_over_all_folds(tmp_path: Path) -> None:
    for fold in range(4):
        write(tmp_path / f"fold{fold}" / "1shot.json", fold, 1, 50.0 + fold)
    write(tmp_path / "fold0" / "5shot.json", 0, 5, 60.0)
    write(tmp_path / "fold0" / "box.json", 0, 1, 45.0, box_support=True)
    write(tmp_path / "fold0" / "seen.json", 1, 1, 75.0, trained_fold=0)
    (tmp_path / "probe.json").write_text(json.dumps({"val": 1}))  # not a result: skipped
    rows = report.read_results(tmp_path)
    assert len(rows) == 7 and {r.variant for r in rows} == {
        "standard", "box supports", "seen classes (model of fold 0)"}
    table = report.benchmark_table(rows)
    assert "| mean of 4 | 1 | 49.5 | **51.5** | 40.0 | 30.0 |" in table
    assert "measured on 1 of 4 folds: no mean" in table
    assert "45.0" not in table and "75.0" not in table  # variants, not the benchmark
    assert "box supports" in report.variants_table(rows)
    assert report.pick(rows, variant="box supports").final[0] == 45.0
    assert report.pick(rows, fold=3, shots=1).final[0] == 53.0
    assert report.pick(rows, fold=3, shots=5) is None


def test_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.json").write_text("[]")
    with pytest.raises(ValueError, match="not a result"):
        report.read_result(tmp_path / "x.json")
    assert update_tables.main([str(tmp_path / "nothing")]) == 2
    assert update_tables.main([str(tmp_path)]) == 1
    assert "no evaluation result" in capsys.readouterr().err


def test_shipped_results_read() -> None:
    assert RESULTS == ROOT / "canetlib" / "teaching" / "results" / "imagenet-backbone"  # editable install
    rows = report.read_results(RESULTS)
    standard = [r for r in rows if r.variant == "standard" and r.fusion in (None, "attention")]
    assert {(r.fold, r.shots) for r in standard} == {(f, k) for f in range(4) for k in (1, 5)}
    shipped = {p.stem for p in (ROOT / "canetlib" / "model" / "weights").glob("synthetic-imagenet-*.pt")}
    assert {r.checkpoint for r in standard} == shipped  # every shipped model is measured
    assert all(r.checkpoint == f"synthetic-imagenet-{r.shots}shot-fold{r.fold}" and r.seeds == 5
               and r.episodes_per_seed == 1000 for r in standard)  # what the tables' text says
    for r in standard:  # the floor every shipped model must clear: above both yardsticks
        assert r.final[0] > r.matcher[0] > r.all_objects[0]


def test_write_into_replaces_only_the_marked_block(tmp_path: Path) -> None:
    write(tmp_path / "r" / "fold0" / "a.json", 0, 1, 50.0)
    doc = tmp_path / "doc.md"
    begin, end = report.markers("variants")
    doc.write_text(f"before\n{report.BEGIN}\nold table\n{report.END}\n{begin}\n{end}\nafter\n")
    assert update_tables.main([str(tmp_path / "r"), "--write-into", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old table" not in text
    write(tmp_path / "r" / "fold0" / "experiment" / "b.json", 0, 1, 99.0)  # not shipped
    rows = report.read_results(tmp_path / "r")
    assert [r.path.name for r in rows] == ["a.json"]
    assert report.read_block(text) == report.benchmark_table(rows)
    assert report.read_block(text, "variants") == report.variants_table(rows)
    (tmp_path / "plain.md").write_text("no markers")
    assert update_tables.main([str(tmp_path / "r"), "--write-into", str(tmp_path / "plain.md")]) == 1


DOCS = (ROOT / "README.md", ROOT / "book" / "intro.md", RESULTS_README)


def test_readme_and_intro_quote_the_result_files() -> None:
    """The tables in the READMEs and the book's introduction are the result files' tables."""
    rows = report.read_results(RESULTS)
    for doc in DOCS:
        text = doc.read_text()
        hint = (f"{doc} is out of date: python scripts/update_tables.py "
                "canetlib/teaching/results/imagenet-backbone --write-into "
                + " ".join(str(d.relative_to(ROOT)) for d in DOCS))
        assert report.read_block(text) == report.benchmark_table(rows), hint
        variants = report.read_block(text, "variants")
        assert variants is None or variants == report.variants_table(rows), hint


def test_variant_names_the_crf_backend() -> None:
    from canetlib.teaching.report import variant_of

    assert variant_of({"dense_crf": True}) == "DenseCRF"  # files written before the option
    assert variant_of({"dense_crf": True, "postprocess": {"backend": "exact"}}) == "DenseCRF"
    assert variant_of({"dense_crf": True, "postprocess": {"backend": "pydensecrf"}}) == (
        "DenseCRF (pydensecrf)")
    assert variant_of({"scales": [1.0]}) == "standard"
