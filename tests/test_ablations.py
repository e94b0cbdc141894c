"""Table 3: the rows' commands and the runner script's skipping, resuming and failures
(no training here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from helpers import table3_script

from canetlib.teaching import table3 as ablations

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "experiments" / "table3.py"


@pytest.fixture(scope="module")
def runner() -> ModuleType:
    """``experiments/table3.py`` imported as a module."""
    return table3_script()


def test_rows_cover_the_paper_table_and_parse(runner):
    assert [ablations.row_name(b) for b in ablations.BLOCK_SETS] == list(ablations.PAPER_TABLE3)
    assert runner.parse_rows("block4, block2+block3") == [("block4",), ("block2", "block3")]
    assert runner.parse_rows(None) == list(ablations.BLOCK_SETS)
    with pytest.raises(ValueError, match="unknown Table 3 row 'block5'.*block2\\+block3"):
        runner.parse_rows("block5")


def test_commands_change_only_blocks_and_evaluate_canet_init(tmp_path):
    rows = ablations.table3_rows(out=tmp_path / "runs", results=tmp_path / "res", epochs=2)
    assert len(rows) == 7
    for row in rows:
        sets = [row.train[i + 1] for i, a in enumerate(row.train) if a == "--set"]
        assert sets == [f"blocks={row.name.replace('+', ',')}", "mask_dropout=1.0", "epochs=2"]
        ev = row.evaluate
        assert ev[ev.index("--iterations") + 1] == "0"
        assert ev[ev.index("--checkpoint") + 1] == str(tmp_path / "runs" / row.name / "model.pt")
        assert row.result == tmp_path / "res" / f"{row.name}.json"
    lines = ablations.table3_commands(rows=[("block2", "block3")])
    assert lines[0].startswith("python -m canetlib train --config synthetic-1shot --fold 0 ")
    assert "--out runs/table3/block2+block3" in lines[0]


def test_run_table3_skips_done_rows_resumes_and_writes(runner, tmp_path):
    out, res = tmp_path / "runs", tmp_path / "res"
    res.mkdir()
    (res / "block2.json").write_text("{}")                      # done: skipped
    (out / "block3").mkdir(parents=True)
    (out / "block3" / "last.pt").write_bytes(b"x")               # killed: resumed
    (out / "block4").mkdir()
    (out / "block4" / "model.pt").write_bytes(b"x")              # trained: only evaluated
    calls: list[list[str]] = []

    def fake_cli(argv):
        calls.append(argv)
        if argv[0] == "evaluate":
            path = Path(argv[argv.index("--json") + 1])
            path.write_text(json.dumps({"miou": float(len(calls)), "miou_std": 0.5}))
        return 0

    written = runner.run_table3(rows=runner.parse_rows("block2,block3,block4"),
                                out=out, results=res, cli=fake_cli, log=lambda m: None)
    assert written == [res / "block3.json", res / "block4.json"]
    assert [c[0] for c in calls] == ["train", "evaluate", "evaluate"]
    assert calls[0][-1] == "--resume"
    found = ablations.load_table3(res)
    assert set(found) == {"block2", "block3", "block4"}
    assert found["block4"]["miou"] == 3.0


def test_run_table3_names_the_failing_row(runner, tmp_path):
    with pytest.raises(RuntimeError, match="row block2\\+block3: `train` exited with 3"):
        runner.run_table3(rows=[("block2", "block3")], out=tmp_path, results=tmp_path,
                          cli=lambda argv: 3, log=lambda m: None)


def test_script_refuses_a_bad_row_in_one_line(runner, tmp_path, capsys):
    argv = ["--rows", "nope", "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "r")]
    assert runner.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --rows: unknown Table 3 row 'nope'") and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_script_dry_run_from_a_clone():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--rows", "block3",
                          "--epochs", "1"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout.splitlines()
    assert len(out) == 2 and "--set epochs=1" in out[0] and "--iterations 0" in out[1]
    assert out == ablations.table3_commands(rows=[("block3",)], epochs=1)


# --------------------------------------------------------------------------- validation sweep
def _rows(*pairs):
    return [{"epoch": e, "miou": m, "fbiou": 50.0} for e, m in pairs]


def test_sweep_decision_rule(tmp_path):
    from canetlib.teaching.sweep import decide, load_sweep

    (tmp_path / "round1.json").write_text(json.dumps({
        "base": _rows((4, 40.0), (8, 30.0)), "a": _rows((4, 99.0), (8, 31.5))}))
    (tmp_path / "round2.json").write_text(json.dumps({
        "base-seed1": _rows((8, 29.0)), "b": _rows((8, 30.5)), "empty": []}))
    summary = load_sweep(tmp_path)
    d = decide(summary)
    # the last epoch counts (a's epoch-4 peak does not); noise = |30 - 29|
    assert d.scores["a"] == 31.5 and "empty" not in d.scores
    assert d.best == "a" and d.gain == pytest.approx(1.5) and d.noise == pytest.approx(1.0)
    assert d.adopt
    summary["base-seed1"] = _rows((8, 32.0))  # noisier base: the same gain is not enough
    assert not decide(summary).adopt
    with pytest.raises(ValueError, match="no validated run 'base-seed1'"):
        decide({"base": _rows((8, 1.0)), "a": _rows((8, 2.0))})
    (tmp_path / "round3.json").write_text(json.dumps({"a": _rows((8, 1.0))}))
    with pytest.raises(ValueError, match="'a' occurs twice"):
        load_sweep(tmp_path)
    assert load_sweep(tmp_path / "missing") == {}


def test_shipped_sweep_results_keep_the_base_settings():
    """The shipped sweep (canetlib/teaching/results/val_sweep) and the shipped config agree."""
    from canetlib.teaching.shipped import shipped_path
    from canetlib.teaching.sweep import decide, load_sweep
    from canetlib.training.configs import get_config

    summary = load_sweep(shipped_path("results/val_sweep"))
    d = decide(summary)
    assert not d.adopt  # so synthetic-1shot keeps its settings:
    cfg = get_config("synthetic-1shot")
    assert (cfg.dropout, cfg.weight_decay, cfg.lr, cfg.width, cfg.epochs) == (
        0.1, 1e-4, 1e-3, 64, 8)


@pytest.mark.slow
def test_val_sweep_script_runs_and_summarises(tmp_path):
    """scripts/val_sweep.sh end to end with tiny settings (two variants)."""
    import os
    import subprocess

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHON=sys.executable, CANETLIB_NO_PROGRESS="1",
               PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               SWEEP_EXTRA="backbone_widths=8,16,16,16 backbone_checkpoint=none train_size=64 "
                           "episodes=8 batch_size=2 epochs=4 val_episodes=4 world_images=3 "
                           "num_workers=0")
    res = subprocess.run(["bash", str(root / "scripts/val_sweep.sh"), str(tmp_path), "0",
                          "base:", "wide:width=24"], env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert sorted(summary) == ["base", "wide"]
    assert [r["epoch"] for r in summary["wide"]] == [4]
    import torch

    state = torch.load(tmp_path / "wide" / "last.pt", weights_only=True)
    assert state["train_config"]["width"] == 24 and state["train_config"]["val_by"] == "classes"


def test_gpu_check_script_parses():
    root = Path(__file__).resolve().parent.parent
    import subprocess

    for script in ("gpu_check.sh", "val_sweep.sh"):
        subprocess.run(["bash", "-n", str(root / "scripts" / script)], check=True)


def test_sweep_readme_table_matches_the_results():
    from canetlib.teaching.shipped import shipped_path
    from canetlib.teaching.sweep import final_scores, load_sweep

    scores = final_scores(load_sweep(shipped_path("results/val_sweep")))
    readme = Path(__file__).resolve().parent.parent / "data/results/val_sweep/README.md"
    rows = {}
    for line in readme.read_text().splitlines():
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in scores:
            rows[cells[0]] = float(cells[2])
    assert rows.keys() == scores.keys()
    for name, value in rows.items():
        assert value == round(scores[name], 1), name
