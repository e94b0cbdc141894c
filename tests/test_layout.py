"""The package's shape: folders by job, imports one way, small files and functions, no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "canetlib"

#: the layers, lowest first; a module may import from its own layer or a lower one
LAYERS = ("model", "data", "evaluation", "training", "teaching", "cli")
MAX_TOP_LEVEL = 8
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package modules ``path`` imports, at any depth of the file (lazy imports count)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                out.add(name if name in known else node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m in known}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(path, set(mods)) - {name} for name, path in mods.items()}


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_the_top_level_is_the_architecture() -> None:
    entries = sorted(p.name for p in PACKAGE.iterdir()
                     if p.name not in ("__pycache__", "py.typed"))
    assert len(entries) <= MAX_TOP_LEVEL, entries
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir()} - {"__pycache__"} == set(LAYERS)


def test_no_file_is_long() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES}
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"


def test_no_function_is_long() -> None:
    long = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE)}:{node.name}"] = lines
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_imports_go_one_way() -> None:
    upward = [f"{a} -> {b}" for a, deps in graph().items() for b in deps
              if (la := layer(a)) is not None and (lb := layer(b)) is not None and lb > la]
    assert not upward, "modules importing from a layer above them:\n" + "\n".join(upward)


def test_no_import_cycle() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if nxt.startswith(node + "."):
                continue  # a package importing its own parts is not a cycle
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("name", ["model", "data"])
def test_the_lower_layers_stand_alone(name: str) -> None:
    """Importing the model or data layer loads nothing from the layers above it."""
    import subprocess
    import sys

    code = (f"import sys, canetlib.{name}; "
            "print(sorted({m.split('.')[1] for m in sys.modules "
            "if m.startswith('canetlib.') and m.count('.') >= 1}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    loaded = set(ast.literal_eval(out.strip()))
    allowed = set(LAYERS[: LAYERS.index(name) + 1])
    assert loaded <= allowed, loaded - allowed


def test_the_readme_layout_names_every_module() -> None:
    """Each module of the five library layers is named in the README's layout tree."""
    readme = (PACKAGE.parent / "README.md").read_text()
    tree = readme.split("## Layout", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    missing = [f"{folder}/{path.name}" for folder in LAYERS[:-1]
               for path in sorted((PACKAGE / folder).glob("*.py"))
               if path.name != "__init__.py" and path.name not in tree]
    assert not missing, f"README.md's layout does not name {missing}"
