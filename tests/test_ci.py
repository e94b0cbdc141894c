"""How the suite runs: CI runs the README's full test command, and that command (not the
quick ``python -m pytest``) runs the tests marked slow."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import runs_slow_tests
from test_publish import ROOT, readme_command


def ci_commands() -> list[str]:
    """The command lines of ``.ci/run`` (comments and blank lines left out)."""
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_ci_runs_readme_command_2_verbatim() -> None:
    full = readme_command(2)
    assert full == 'python -m pip install -e ".[test]" && python -m pytest --nbval tests/ book/'
    assert full in ci_commands()  # the very line, not a variant of it
    assert "-m " not in full.split("pytest", 1)[1]  # no marker filter: slow tests included


class Options:
    """A stand-in for ``pytest.Config``: only ``getoption``, as the slow-test rule uses it."""

    def __init__(self, **given: Any) -> None:
        self.given = {"--runslow": False, "-m": "", **given}

    def getoption(self, name: str, default: Any = None) -> Any:
        return self.given.get(name, default)


@pytest.mark.parametrize("given, runs", [
    ({}, False),                              # python -m pytest: the quick run
    ({"--runslow": True}, True),
    ({"--nbval": True}, True),                # README command 2 and CI
    ({"--nbval-lax": True}, True),
    ({"-m": "slow"}, True),                   # only the slow ones (test_widgets_browser.py)
    ({"-m": "not slow"}, True),               # deselected by -m, nothing left to skip
    ({"-m": "not cuda"}, False),
])
def test_slow_tests_run_only_when_asked_for(given: dict[str, Any], runs: bool) -> None:
    assert runs_slow_tests(Options(**given)) is runs  # type: ignore[arg-type]


def test_slow_marker_is_declared() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert any(m.startswith("slow:") for m in cfg["markers"])
    assert "addopts" not in cfg  # a -m there would drop the slow tests from CI's command too
