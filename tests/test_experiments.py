"""The experiment scripts that run from a clone (``experiments/``), not part of the wheel."""

from __future__ import annotations

import json

import pytest
from helpers import ROOT, load_script

from canetlib.model import checkpoint

PROBES = ROOT / "data" / "results" / "imagenet-backbone" / "input-size"


@pytest.mark.parametrize(("probe", "size"), [("fold0-validation.json", 224),
                                             ("fold1-validation.json", 192)])
def test_the_size_rule_gives_the_decisions_the_readme_records(probe: str, size: int) -> None:
    retrain = load_script("retrain_at_size", "experiments")
    assert retrain.choose_size(json.loads((PROBES / probe).read_text())) == size


def test_the_size_rule_takes_the_smallest_size_within_the_noise() -> None:
    retrain = load_script("retrain_at_size", "experiments")

    def probe(scores: dict[int, tuple[float, float]]) -> dict:
        return {"sizes": {str(s): {"miou_per_iteration": [0.0, m],
                                   "miou_per_iteration_std": [0.0, sd]}
                          for s, (m, sd) in scores.items()}}

    assert retrain.choose_size(probe({128: (50.0, 1.0), 192: (52.0, 0.5), 256: (52.5, 1.0)})) == 192
    assert retrain.choose_size(probe({128: (51.6, 0.4), 192: (53.0, 1.0)})) == 192  # 1.4 > 1.0
    assert retrain.choose_size(probe({128: (52.0, 1.5), 192: (53.0, 1.0)})) == 128  # 1.0 <= 1.5


@pytest.mark.slow
def test_the_retraining_job_runs_every_step_and_resumes(tmp_path, capsys) -> None:
    """The whole job on tiny counts (``--quick``, one fold), then again: every step is skipped."""
    retrain = load_script("retrain_at_size", "experiments")
    argv = ["--quick", "--folds", "0", "--train-size", "64", "--eval-sizes", "64,96",
            "--out", str(tmp_path), "--device", "cpu"]
    assert retrain.main(argv) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())["fold0"]
    assert summary["eval_size"] in (64, 96)
    for shots in ("1shot", "5shot"):
        result = json.loads((tmp_path / "fold0" / f"{shots}-at{summary['eval_size']}.json").read_text())
        assert "prototype" in json.dumps(result)  # the matcher in the same run
        side = summary["eval_size"]
        assert result["settings"]["input_size"] == [side, side]  # the recorded size, not given
        model = checkpoint.load(summary[f"{shots}_model"])
        assert model["input_size"] == side and "held-out" in model["input_size_chosen_by"]
    capsys.readouterr()
    assert retrain.main(argv) == 0
    assert "+ " not in capsys.readouterr().out  # nothing ran again
