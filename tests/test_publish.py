"""Publishing the book: the Pages workflow, the repository it points at, rendered tables,
the notation page (no build, no Colab, no network)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from helpers import readme_command

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def workflow() -> dict:
    wf = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(wf, dict)
    return wf


def steps(wf: dict) -> list[dict]:
    return [step for job in wf["jobs"].values() for step in job.get("steps", [])]


def uses(step: dict, action: str) -> bool:
    return str(step.get("uses", "")).split("@")[0] == action


def chapter_git_urls() -> set[str]:
    """The git URL of every chapter's Colab install line."""
    urls = set()
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        first = next(c for c in nb["cells"] if c["cell_type"] == "code")
        urls.update(re.findall(r"git\+(https://[^\s\"']+)", "".join(first["source"])))
    return urls


def test_readme_command_1_builds_the_book() -> None:
    assert readme_command(1) == ('python -m pip install -e ".[book]" '
                                 '&& jupyter-book build --all -W .')


def test_workflow_runs_on_main_and_by_hand_with_pages_permissions() -> None:
    wf = workflow()
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert "main" in on["push"]["branches"]
    assert "workflow_dispatch" in on
    perms = dict(wf.get("permissions", {}))
    for job in wf["jobs"].values():
        perms.update(job.get("permissions", {}))
    assert perms.get("pages") == "write" and perms.get("id-token") == "write"


def test_workflow_builds_with_readme_command_1_on_python_3_11() -> None:
    all_steps = steps(workflow())
    setup = [s for s in all_steps if uses(s, "actions/setup-python")]
    assert len(setup) == 1 and str(setup[0]["with"]["python-version"]) == "3.11"
    runs = [s["run"].strip() for s in all_steps if "run" in s]
    assert readme_command(1) in runs, runs
    # checkout, then Python, then the build, in that order
    order = [i for i, s in enumerate(all_steps)
             if uses(s, "actions/checkout") or uses(s, "actions/setup-python")
             or s.get("run", "").strip() == readme_command(1)]
    assert len(order) == 3 and order == sorted(order)


def test_workflow_deploys_the_built_html_to_pages() -> None:
    wf = workflow()
    jobs = wf["jobs"]
    build = [name for name, job in jobs.items()
             if any(uses(s, "actions/upload-pages-artifact") for s in job.get("steps", []))]
    assert len(build) == 1
    upload = next(s for s in jobs[build[0]]["steps"] if uses(s, "actions/upload-pages-artifact"))
    assert upload["with"]["path"].rstrip("/") == "_build/html"
    runs = [s.get("run", "").strip() for s in jobs[build[0]]["steps"]]
    assert readme_command(1) in runs  # the artifact is what command 1 built
    deploy = [job for job in jobs.values()
              if any(uses(s, "actions/deploy-pages") for s in job.get("steps", []))]
    assert len(deploy) == 1
    needs = deploy[0].get("needs", [])
    assert build[0] in ([needs] if isinstance(needs, str) else needs)
    assert deploy[0]["environment"]["name"] == "github-pages"


def test_one_repository_url_everywhere() -> None:
    urls = chapter_git_urls()
    assert len(urls) == 1, urls
    url = urls.pop()
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["repository"]["url"] == url
    assert cfg["repository"]["branch"] == "main"
    assert cfg["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    readme = (ROOT / "README.md").read_text()
    assert url in readme
    # another spelling of this project's repository (a dataset's or a paper's repository is fine)
    owner, name = url.rstrip("/").split("/")[-2:]
    links = set(re.findall(r"https://github\.com/([\w.-]+)/([\w.-]+)", readme))
    others = {f"{o}/{n}" for o, n in links if (o == owner or n == name) and (o, n) != (owner, name)}
    assert not others, others


def test_readme_says_the_pages_need_no_network() -> None:
    text = " ".join((ROOT / "README.md").read_text().split())
    assert "Every page loads with no network connection" in text
    assert "tests/test_published_html.py" in text  # the test that checks the claim
    assert (ROOT / "tests" / "test_published_html.py").is_file()


def _final_sphinx_config() -> dict:
    config = pytest.importorskip("jupyter_book.config")
    sphinx_config, _ = config.get_final_config(
        user_yaml=ROOT / "_config.yml", cli_config={"latex_individualpages": False},
        sourcedir=ROOT, validate=True, raise_on_invalid=True)
    return sphinx_config


def _markdown_outputs() -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            for out in cell.get("outputs", []):
                md = out.get("data", {}).get("text/markdown")
                if md is not None:
                    found.append((path.stem, "".join(md) if isinstance(md, list) else md))
    return found


def test_markdown_outputs_render_their_tables() -> None:
    """Every text/markdown output with a pipe table becomes an HTML table under the book's
    settings (myst-nb's default, CommonMark, would show the raw pipes)."""
    sphinx_config = _final_sphinx_config()
    assert sphinx_config["nb_render_markdown_format"] in ("myst", "gfm")
    pytest.importorskip("myst_nb")
    from docutils.core import publish_string
    from myst_nb.docutils_ import Parser

    outputs = [(name, md) for name, md in _markdown_outputs()
               if re.search(r"^\|[-:| ]+\|$", md, re.MULTILINE)]
    assert {name for name, _ in outputs} >= {"01_task", "05_kshot"}
    for name, md in outputs:
        nb = {"nbformat": 4, "nbformat_minor": 5,
              "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                          "language": "python"},
                           "language_info": {"name": "python"}},
              "cells": [{"cell_type": "code", "execution_count": 1, "id": "c", "metadata": {},
                         "source": "display(Markdown(table))", "outputs": [{
                             "output_type": "display_data", "metadata": {},
                             "data": {"text/markdown": md, "text/plain": "<Markdown>"}}]}]}
        html = publish_string(
            json.dumps(nb), parser=Parser(), writer_name="html5",
            settings_overrides={
                "nb_execution_mode": "off",
                "nb_output_folder": "",  # write no processed notebook or CSS into the cwd
                "nb_render_markdown_format": sphinx_config["nb_render_markdown_format"],
                "myst_enable_extensions": sphinx_config["myst_enable_extensions"],
                "report_level": 2, "halt_level": 2}).decode()
        assert "<table" in html, name
        assert "|---|" not in html, name


def test_notation_page_follows_the_intro_and_defines_the_metrics() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert toc["root"] == "book/intro"
    assert toc["parts"][0]["chapters"][0]["file"] == "book/notation"
    text = (ROOT / "book" / "notation.md").read_text()
    glossary = text.split("```{glossary}", 1)[1].split("```", 1)[0]
    terms = {line.strip() for line in glossary.splitlines() if line and not line[0].isspace()}
    for term in ("support set", "query", "episode", "fold", "prototype", "masked average pooling",
                 "CANet-Init", "iterative optimization module", "mask dropout", "mIoU", "FB-IoU",
                 "class-pooled IoU"):
        assert term in terms, term
    blocks = re.findall(r"^\$\$\n(.*?)\n\$\$$", text, re.DOTALL | re.MULTILINE)
    assert any(r"\mathrm{mIoU}" in b for b in blocks)
    assert any(r"\text{FB-IoU}" in b and r"\bar P_e" in b for b in blocks)
    assert "255" in text
    bib = (ROOT / "book" / "references.bib").read_text()
    for key in re.findall(r"\{cite\}`([^`]+)`", text):
        assert f"{{{key}," in bib, key
