"""The data package split by job: readers apart from preparation, one atomic writer."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import canetlib
from canetlib.data.download import download_url
from canetlib.model import files as fsutil

#: what only preparing a benchmark needs; a runtime reader must not load any of it
PREPARATION_MODULES = (
    "canetlib.data.prepare",
    "canetlib.data.download",
    "pycocotools",
    "scipy.io",
)

#: temporary-file-plus-rename idioms that belong in canetlib.model.files only
RENAMES = re.compile(r"os\.replace\(|os\.rename\(|\.rename\(|NamedTemporaryFile|mkstemp|"
                     r"\.replace\((?:dest|path|final|target)\b")


#: what each check imports, in the order one fresh interpreter runs them
STATEMENTS = {
    "canetlib.data.pascal": "import canetlib.data.pascal",
    "canetlib.data.coco": "import canetlib.data.coco",
    "make_source": "import canetlib.data as d\n"
                   "from canetlib.data.pascal import PascalSource\n"
                   "from canetlib.data.coco import CocoSource",
    "control": "import canetlib.data.prepare.pascal",  # last: it must be caught
}


@pytest.fixture(scope="module")
def preparation_loaded() -> dict[str, list[str]]:
    """Modules of PREPARATION_MODULES that each of STATEMENTS loads, all run one after the
    other in ONE fresh interpreter (starting Python with torch costs seconds a time).

    A statement is charged with the modules that appear while it runs. Loaded modules stay
    loaded, so a module an earlier statement pulled in is charged to that one only; every
    check passes exactly when no statement, run alone, loads a preparation module."""
    code = ["import json, sys", "def loaded():",
            (f"    return sorted(m for m in sys.modules for p in {PREPARATION_MODULES!r} "
             "if m == p or m.startswith(p + '.'))"),
            "found = {}"]
    for name, statement in STATEMENTS.items():
        code += ["before = set(loaded())", statement,
                 f"found[{name!r}] = [m for m in loaded() if m not in before]"]
    code.append("print(json.dumps(found))")
    done = subprocess.run([sys.executable, "-c", "\n".join(code)], capture_output=True,
                          text=True, check=True, timeout=300,
                          cwd=Path(canetlib.__file__).parent.parent)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(found) == list(STATEMENTS)
    return found


@pytest.mark.parametrize("reader", ["canetlib.data.pascal", "canetlib.data.coco"])
def test_reader_does_not_import_the_preparation(
        reader: str, preparation_loaded: dict[str, list[str]]) -> None:
    assert preparation_loaded[reader] == []


def test_make_source_path_does_not_import_the_preparation(
        preparation_loaded: dict[str, list[str]]) -> None:
    assert preparation_loaded["make_source"] == []


def test_the_import_check_can_fail(preparation_loaded: dict[str, list[str]]) -> None:
    """The same interpreter then imports the preparation itself: the check sees it."""
    assert "canetlib.data.prepare" in preparation_loaded["control"]


def test_the_readers_do_not_reexport_the_preparation() -> None:
    """One import path each: ``prepare_pascal`` only from :mod:`canetlib.data.prepare.pascal`
    (chapter 10 imports it there), nothing of the preparation from the readers."""
    from canetlib.data import coco, pascal
    from canetlib.data.prepare import pascal as prepare_pascal

    assert callable(prepare_pascal.prepare_pascal)
    assert not hasattr(pascal, "prepare_pascal") and not hasattr(pascal, "VOC_ARCHIVE")
    assert not hasattr(coco, "prepare_coco")
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = pascal.no_such_name  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = coco.no_such_name  # type: ignore[attr-defined]


def test_layouts_share_the_prepared_base(tmp_path: Path) -> None:
    from canetlib.data.coco import CocoLayout
    from canetlib.data.pascal import PascalLayout
    from canetlib.data.prepared import PreparedLayout

    pascal, coco = PascalLayout(tmp_path), CocoLayout(tmp_path)
    assert isinstance(pascal, PreparedLayout) and isinstance(coco, PreparedLayout)
    assert pascal.class_dir == tmp_path / "canet" / "SegmentationClassAug"
    assert pascal.object_dir == tmp_path / "canet" / "SegmentationObjectAug"
    assert pascal.marker == tmp_path / "canet" / ".prepared-pascal.json"
    assert pascal.list_file("val", 2) == tmp_path / "canet" / "lists" / "val_fold2.txt"
    assert coco.class_dir == tmp_path / "canet" / "SegmentationClass"
    assert coco.object_dir == tmp_path / "canet" / "SegmentationObject"
    assert coco.marker == tmp_path / "canet" / ".prepared-coco.json"
    assert coco.list_file("train") == tmp_path / "canet" / "lists" / "train_all.txt"
    assert coco.index_file == tmp_path / "canet" / "lists" / "images.tsv"


def test_every_rename_goes_through_fsutil() -> None:
    package = Path(canetlib.__file__).parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel == "model/files.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if RENAMES.search(line.split("#")[0]):
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert offenders == []


def test_downloads_are_published_by_the_one_writer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "served.bin"
    source.write_bytes(b"payload")
    moves: list[tuple[str, str]] = []
    real = fsutil.os.replace

    def spy(src: str, dst: str) -> None:
        moves.append((Path(src).name, Path(dst).name))
        real(src, dst)

    monkeypatch.setattr(fsutil.os, "replace", spy)
    dest = download_url(source.as_uri(), tmp_path / "got.bin", progress=False)
    assert dest.read_bytes() == b"payload"
    assert moves == [("got.bin.part", "got.bin")]
