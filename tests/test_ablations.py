"""Table 3 runner: commands, skipping, resuming and failures (no training here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from canetlib import ablations
from canetlib.cli import main


def test_rows_cover_the_paper_table_and_parse():
    assert [ablations.row_name(b) for b in ablations.BLOCK_SETS] == list(ablations.PAPER_TABLE3)
    assert ablations.parse_rows("block4, block2+block3") == [("block4",), ("block2", "block3")]
    assert ablations.parse_rows(None) == list(ablations.BLOCK_SETS)
    with pytest.raises(ValueError, match="unknown Table 3 row 'block5'.*block2\\+block3"):
        ablations.parse_rows("block5")


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


def test_run_table3_skips_done_rows_resumes_and_writes(tmp_path):
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

    written = ablations.run_table3(rows=ablations.parse_rows("block2,block3,block4"),
                                   out=out, results=res, cli=fake_cli, log=lambda m: None)
    assert written == [res / "block3.json", res / "block4.json"]
    assert [c[0] for c in calls] == ["train", "evaluate", "evaluate"]
    assert calls[0][-1] == "--resume"
    found = ablations.load_table3(res)
    assert set(found) == {"block2", "block3", "block4"}
    assert found["block4"]["miou"] == 3.0


def test_run_table3_names_the_failing_row(tmp_path):
    with pytest.raises(RuntimeError, match="row block2\\+block3: `train` exited with 3"):
        ablations.run_table3(rows=[("block2", "block3")], out=tmp_path, results=tmp_path,
                             cli=lambda argv: 3, log=lambda m: None)


def test_cli_dry_run_and_bad_row(capsys):
    assert main(["ablate", "--dry-run", "--rows", "block3", "--epochs", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "--set epochs=1" in out[0] and "--iterations 0" in out[1]
    assert main(["ablate", "--rows", "nope"]) == 2
    assert "unknown Table 3 row" in capsys.readouterr().err
