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
    side = summary["eval_size"]
    avg = json.loads((tmp_path / "fold0" / f"5shot-feature-avg-at{side}.json").read_text())
    assert avg["settings"]["fusion"] == "feature-avg"  # the same weights, averaged
    capsys.readouterr()
    assert retrain.main(argv) == 0
    assert "+ " not in capsys.readouterr().out  # nothing ran again
    # another 5-shot recipe: only the 5-shot steps run, under a tag, beside the first
    assert retrain.main([*argv, "--five-shot-set", "attention_pool=similar"]) == 0
    ran = [line for line in capsys.readouterr().out.splitlines() if line.startswith("+ ")]
    assert len(ran) == 4 and all("im5-similar" in line for line in ran)  # train, stamp, 2 evaluations
    tagged = json.loads((tmp_path / "summary.json").read_text())["fold0"]
    assert tagged["5shot_model"].endswith(f"im5-similar/model-at{side}.pt")
    assert tagged["5shot"].endswith(f"5shot-similar-at{side}.json")
    assert tagged["5shot-feature-avg"].endswith(f"5shot-similar-feature-avg-at{side}.json")
    assert checkpoint.load(tagged["5shot_model"])["model_config"]["attention_pool"] == "similar"
    assert (tmp_path / "fold0" / "im5" / f"model-at{side}.pt").is_file()  # the first one stays


SHIPPED = ROOT / "canetlib" / "teaching" / "results" / "imagenet-backbone"


def test_every_shipped_evaluation_turns_back_into_its_command() -> None:
    """Each command the regenerator builds, parsed by ``canetlib evaluate``, asks for the
    recorded settings; the files it cannot re-create are the retired and experiment ones."""
    from canetlib.cli import build_parser

    regen = load_script("regenerate_results", "experiments")
    todo, skipped = regen.plan(SHIPPED, None)
    assert set(skipped) == {"fold0/1shot-held-glyphs.json", "fold0/iom-training/test-memory.json",
                            "fold0/iom-training/test-own.json",
                            "fold0/iom-training/validation.json"}
    evaluations = [(rel, argv) for rel, argv in todo if argv[:2] == ["-m", "canetlib"]]
    assert len(evaluations) == len(todo) - 1  # and the IOM history probe
    for rel, argv in evaluations:
        s = json.loads((SHIPPED / rel).read_text())["settings"]
        a = build_parser().parse_args(argv[2:])
        asked = {"fold": a.fold, "shots": a.shots, "episodes_per_seed": a.episodes,
                 "checkpoint": a.checkpoint, "iterations": a.iterations,
                 "multi_scale": a.multi_scale, "box_support": a.box_support,
                 "dense_crf": a.dense_crf, "seeds": list(range(a.seed, a.seed + a.seeds))}
        assert asked == {k: s[k] for k in asked}, rel
        assert a.fusion == s["fusion"] or (a.fusion is None and s["shots"] == 1), rel
        assert a.input_size is None  # the new checkpoint's own size
        if a.dense_crf:  # a result from before the choice of backend ran the exact one
            assert a.crf_backend == s["postprocess"].get("backend", "exact"), rel
        assert (a.baseline == "prototype") == ("baselines" in json.loads((SHIPPED / rel).read_text()))


def test_the_regenerator_refuses_to_write_into_its_own_results(tmp_path, capsys) -> None:
    regen = load_script("regenerate_results", "experiments")
    assert regen.main([str(SHIPPED), "--weights", str(tmp_path), "--out", str(SHIPPED)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is the results tree itself" in err[0]


def test_the_regenerator_reruns_a_result_with_the_new_weights(tmp_path, capsys) -> None:
    """A two-episode result re-created with a renamed copy of another checkpoint: the new file
    records the staged weights' numbers under the same name; a second run skips it."""
    import shutil

    from canetlib.cli import main as canetlib_main

    old, new, weights = tmp_path / "old", tmp_path / "new", tmp_path / "weights"
    for d in (old / "fold0", weights):
        d.mkdir(parents=True)
    name = "synthetic-imagenet-1shot-fold0"
    shutil.copy(checkpoint.shipped_dir() / "synthetic-imagenet-1shot-fold1.pt",
                weights / f"{name}.pt")
    argv = ["evaluate", "--dataset", "synthetic", "--fold", "0", "--episodes", "2", "--seeds",
            "1", "--checkpoint", name, "--device", "cpu", "--no-progress"]
    assert canetlib_main([*argv, "--json", str(old / "fold0" / "1shot.json")]) == 0
    before = json.loads((old / "fold0" / "1shot.json").read_text())
    missing = {**before, "settings": {**before["settings"], "checkpoint": "not-staged"}}
    (old / "fold0" / "0-missing.json").write_text(json.dumps(missing))
    regen = load_script("regenerate_results", "experiments")
    # the failing command comes first; the other still runs, and the job reports the failure
    assert regen.main([str(old), "--weights", str(weights), "--out", str(new)]) == 1
    after = json.loads((new / "fold0" / "1shot.json").read_text())
    assert after["settings"]["checkpoint"] == name and after["episodes"] == 2
    assert after["per_class_iou"] != before["per_class_iou"]  # another model's numbers
    manifest = json.loads((new / "regenerated.json").read_text())
    assert list(manifest["commands"]) == ["fold0/0-missing.json", "fold0/1shot.json"]
    assert list(manifest["failed"]) == ["fold0/0-missing.json"]
    assert not (new / "fold0" / "0-missing.json").exists()
    capsys.readouterr()
    assert regen.main([str(old), "--weights", str(weights), "--out", str(new)]) == 1
    out = capsys.readouterr()
    assert "skip (exists): fold0/1shot.json" in out.out
    assert "1 command(s) failed: fold0/0-missing.json" in out.err


def _retrained_job(root, fold: int, sizes=(224, 288), shots_trained=(1, 5)):
    """A ``retrain_at_size`` output folder for one fold, its models made from a shipped file."""
    train_size, eval_size = sizes
    (root).mkdir(parents=True, exist_ok=True)
    base = checkpoint.load("synthetic-imagenet-1shot-fold0")
    for shots in shots_trained:
        ckpt = {**base, "train_config": {**base["train_config"], "fold": fold, "shots": shots,
                                          "train_size": train_size}}
        stamped = checkpoint.with_input_size(ckpt, eval_size, "validation (a test)")
        checkpoint.save_atomic(stamped, root / f"fold{fold}" / f"im{shots}" / f"model-at{eval_size}.pt")
    summary = {f"fold{fold}": {"train_size": train_size, "eval_size": eval_size}}
    (root / "summary.json").write_text(json.dumps(summary))
    return root / "summary.json"


def test_staging_gathers_every_fold_under_the_shipped_names(tmp_path, capsys) -> None:
    """Two jobs' summaries give the four files; a rerun keeps them; a different file already
    staged is refused, as is a model that is not what its summary says."""
    stage = load_script("stage_retrained", "experiments")
    a = _retrained_job(tmp_path / "a", 0)
    b = _retrained_job(tmp_path / "b", 1)
    out = tmp_path / "weights"
    argv = [str(a), str(b), "--folds", "0,1", "--out", str(out)]
    assert stage.main(argv) == 0
    manifest = json.loads((out / "staged.json").read_text())
    assert sorted(manifest) == [f"synthetic-imagenet-{s}shot-fold{f}.pt" for s in (1, 5) for f in (0, 1)]
    staged = checkpoint.load(out / "synthetic-imagenet-5shot-fold1.pt")
    assert staged["input_size"] == 288 and staged["train_config"]["fold"] == 1
    assert stage.main(argv) == 0  # identical files are kept
    # a summary that names its models (another 5-shot recipe) is staged from those files
    tagged = tmp_path / "a" / "fold0" / "im5-similar" / "model-at288.pt"
    tagged.parent.mkdir()
    ckpt = checkpoint.load(tmp_path / "a" / "fold0" / "im5" / "model-at288.pt")
    checkpoint.save_atomic({**ckpt, "input_size_chosen_by": "another recipe"}, tagged)
    entry = json.loads(a.read_text())
    entry["fold0"]["5shot_model"] = str(tagged)
    a.write_text(json.dumps(entry))
    assert stage.main([str(a), "--folds", "0", "--out", str(tmp_path / "w1")]) == 0
    assert checkpoint.load(tmp_path / "w1" / "synthetic-imagenet-5shot-fold0.pt")[
        "input_size_chosen_by"] == "another recipe"
    (out / "synthetic-imagenet-1shot-fold0.pt").write_bytes(b"other")
    capsys.readouterr()
    assert stage.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists and differs" in err[0]
    assert stage.main([str(a), "--folds", "0,1", "--out", str(tmp_path / "w2")]) == 2
    assert "no summary lists fold(s) [1]" in capsys.readouterr().err
    wrong = _retrained_job(tmp_path / "c", 2, sizes=(224, 256))
    stamped = wrong.parent / "fold2" / "im5" / "model-at256.pt"
    ckpt = checkpoint.load(stamped)
    checkpoint.save_atomic({**ckpt, "input_size": 320}, stamped)
    assert stage.main([str(wrong), "--folds", "2", "--out", str(tmp_path / "w3")]) == 2
    err = capsys.readouterr().err
    assert "input_size 320 (summary: 256)" in err and not (tmp_path / "w3").exists()
