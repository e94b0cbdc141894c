"""How the suite runs: CI runs the README's full test command, and that command (not the
quick ``python -m pytest``) runs the tests marked slow."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from helpers import ROOT, readme_command, runs_slow_tests


def ci_commands() -> list[str]:
    """The command lines of ``.ci/run`` (comments and blank lines left out)."""
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def readme_setup() -> list[str]:
    """The lines of the README's first code block: the venv, then PyTorch (comment dropped)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("   #", 1)[0].strip() for line in block.splitlines() if line.strip()]


VENV = "python -m venv .venv && . .venv/bin/activate"
#: CI's stand-in for the README's CPU line: the same kind of build from its machine's disk
CI_TORCH = "python -m pip install torch==2.14.1 torchvision==0.29.1"


def test_readme_makes_the_venv_in_the_clone_root_then_installs_torch() -> None:
    setup = readme_setup()
    assert setup[0] == VENV
    assert setup[1].startswith("python -m pip install torch torchvision --index-url ")
    assert CI_TORCH in (ROOT / "README.md").read_text()  # the README says what CI does instead


def test_ci_follows_the_readme_in_order_in_a_venv() -> None:
    ci = ci_commands()
    wanted = [VENV, CI_TORCH, readme_command(1), readme_command(2)]
    for line in wanted:
        assert line in ci, f".ci/run lacks {line!r}"
    assert [ci.index(line) for line in wanted] == sorted(ci.index(line) for line in wanted)
    before = ci[:ci.index(VENV)]
    assert not any("pip install" in line for line in before)  # nothing installed outside it


def test_ci_runs_readme_command_2_verbatim() -> None:
    full = readme_command(2)
    assert full == 'python -m pip install -e ".[test]" && python -m pytest --nbval tests/ book/'
    assert full in ci_commands()  # the very line, not a variant of it
    assert "-m " not in full.split("pytest", 1)[1]  # no marker filter: slow tests included


def test_ci_builds_the_book_with_readme_command_1_verbatim() -> None:
    full = readme_command(1)
    assert full.endswith("jupyter-book build --all -W .")
    assert full in ci_commands()


def _tests_workflow() -> dict[str, Any]:
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "tests.yml").read_text())
    assert isinstance(wf, dict)
    return wf


def test_github_workflow_runs_the_readme_on_pushes_and_pull_requests() -> None:
    wf = _tests_workflow()
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert "push" in on and "pull_request" in on
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    python = [s for s in steps if str(s.get("uses", "")).startswith("actions/setup-python@")]
    assert len(python) == 1 and str(python[0]["with"]["python-version"]) == "3.11"
    runs = [s["run"] for s in steps if "run" in s]
    assert len(runs) == 1  # one shell: the venv stays active for the commands after it
    lines = [line.strip() for line in runs[0].splitlines() if line.strip()]
    assert lines == [*readme_setup(), readme_command(2)]


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
