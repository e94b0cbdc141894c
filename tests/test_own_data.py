"""Your own data end to end: a folder dataset with a class split (train and evaluate, from
Python and the command line) and FSS-1000 in its published layout (prepared and read)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from canetlib.cli import main
from canetlib.data import make_dataset
from canetlib.data.class_split import ClassSplit, read_split_file, split_from_dict
from canetlib.data.download import file_digest
from canetlib.data.folder import FolderSource, write_folder_dataset
from canetlib.data.fss1000 import RESERVED_NAME, FSS1000Source, read_split_lists
from canetlib.data.world.own_miniature import (
    build_fss_archive,
    build_fss_tree,
    build_world_folder,
    write_fss_split_lists,
)
from canetlib.evaluation import evaluate
from canetlib.training.configs import get_config
from canetlib.training.recipe import train

CHECKPOINT = "synthetic-imagenet-1shot-fold0"
#: a short run of the shipped recipe from the shipped fold-0 weights
RUN = ["init_checkpoint=" + CHECKPOINT, "episodes=8", "epochs=1", "batch_size=2", "threads=1",
       "num_workers=0", "save_every=1000", "train_size=64"]


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder dataset of embedded-world scenes: fold 0's test classes are its test split."""
    root = tmp_path_factory.mktemp("own") / "world"
    build_world_folder(root, images_per_class=2, test_images_per_class=3, image_size=(64, 80),
                       val_classes=("cat", "dog"))
    return root


# --------------------------------------------------------------------------- the folder source
def test_folder_source_reads_the_split_and_keeps_held_out_classes_out_of_training(
        world: Path) -> None:
    source = FolderSource(world)
    split = read_split_file(world / "split.json")
    assert source.class_names == split.classes and len(split.classes) == 20
    assert [source.class_names[c - 1] for c in source.test_classes(0)] == list(split.test)
    assert set(source.train_classes(0)) == set(split.ids(split.train))
    shown = source._image_classes
    held = set(split.ids(split.test + split.val))
    train_images = {i for i, _ in source.image_pairs("train")}
    assert train_images and all(not (shown[i] & held) for i in train_images)
    test_pairs = source.image_pairs("test")
    assert test_pairs and {c for _, c in test_pairs} == set(split.ids(split.test))
    val = FolderSource(world, class_set="val")
    assert [val.class_names[c - 1] for c in val.test_classes(0)] == ["cat", "dog"]
    episode = make_dataset("folder", root=str(world), split="test", episodes=2)[0]
    assert episode["class_id"] in source.test_classes(0)
    assert set(episode["query_mask"].unique().tolist()) <= {0, 1, 255}


def test_folds_cut_the_classes_and_the_training_pool_follows_the_fold(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    items = []
    for k in range(8):  # image k shows class k % 4 + 1 (and class 1 on every other one)
        mask = np.zeros((32, 40), np.uint8)
        mask[4:14, 4:14] = k % 4 + 1
        if k % 2:
            mask[20:28, 20:30] = 1
        items.append((f"im{k}", rng.integers(0, 255, (32, 40, 3), dtype=np.uint8), mask))
    split = ClassSplit(classes=("a", "b", "c", "d"), folds=(("a", "b"), ("c", "d")))
    write_folder_dataset(tmp_path, items, split)
    one = FolderSource(tmp_path, fold=1)
    assert one.num_folds == 2 and one.test_classes(1) == [3, 4] and one.train_classes(1) == [1, 2]
    assert {i for i, _ in one.image_pairs("train")} == {"im0", "im1", "im4", "im5"}
    zero = FolderSource(tmp_path)  # fold 0: images that show a or b are held out
    assert {i for i, _ in zero.image_pairs("train")} == {"im2", "im6"}
    with pytest.raises(ValueError, match="built for fold 0.*build it with fold=1"):
        zero.train_classes(1)
    with pytest.raises(ValueError, match=r"fold must be in 0\.\.1 \(2 fold\(s\)\), got 2"):
        FolderSource(tmp_path, fold=2)


@pytest.mark.parametrize(("data", "message"), [
    ({"classes": ["a", "b"], "train": ["a"], "test": ["c"]},
     r"test names 'c', which is not in 'classes'"),
    ({"classes": ["a", "b"], "train": ["a"], "test": ["a"]}, r"'a' is in both train and test"),
    ({"classes": ["a", "b"], "train": ["a", "b"]}, r"'test' is empty"),
    ({"classes": ["a", "a"], "train": ["a"], "test": ["a"]}, r"unique, \['a'\] appear twice"),
    ({"classes": ["a", "b"], "folds": [["a"], ["b"]], "test": ["a"]}, r"either 'folds' or"),
    ({"train": ["a"], "test": ["b"]}, r"no 'classes' list"),
    ({"classes": ["a"], "tset": ["a"]}, r"unknown key\(s\) \['tset'\]"),
])
def test_a_bad_split_is_refused_with_one_clear_line(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_from_dict(data, origin="split.json")


def test_mask_values_outside_the_class_list_are_refused_naming_the_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mask = np.zeros((24, 24), np.uint8)
    mask[2:8, 2:8], mask[10:20, 10:20] = 1, 7
    image = np.full((24, 24, 3), 128, np.uint8)
    split = ClassSplit(classes=("a", "b"), train=("a",), test=("b",))
    write_folder_dataset(tmp_path, [("x", image, mask)], split)
    expected = (f"{tmp_path / 'masks' / 'x.png'}: mask values [7] are not classes of "
                f"{tmp_path / 'split.json'} (allowed: 0 background, 1..2 the classes, 255 ignore)")
    with pytest.raises(ValueError) as err:
        FolderSource(tmp_path)
    assert str(err.value) == expected
    assert main(["evaluate", "--dataset", "folder", "--root", str(tmp_path), "--checkpoint",
                 CHECKPOINT, "--episodes", "2", "--device", "cpu"]) == 2
    assert one_error(capsys) == f"error: {expected}\n"


def test_a_missing_split_file_and_unmasked_images_are_refused(
        world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(world, copy)
    (copy / "split.json").unlink()
    out = tmp_path / "run"
    args = ["train", "--config", "synthetic-imagenet-1shot", "--dataset", "folder", "--root",
            str(copy), "--out", str(out), "--max-steps", "1", "--device", "cpu", "--no-progress"]
    assert main(args) == 2
    assert one_error(capsys).startswith(f"error: {copy / 'split.json'}: no split file; write "
                                        "one as JSON")
    assert not out.exists()
    assert main(["evaluate", "--dataset", "folder", "--root", str(copy), "--checkpoint",
                 CHECKPOINT, "--device", "cpu"]) == 2
    assert "no split file" in one_error(capsys)
    shutil.copy(world / "split.json", copy / "split.json")
    next((copy / "masks").iterdir()).unlink()
    with pytest.raises(ValueError, match=r"1 image\(s\) have no mask masks/ID.png"):
        FolderSource(copy)


def test_too_few_images_for_the_shots_is_refused_before_the_run_folder(
        world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--config", "synthetic-imagenet-1shot", "--dataset", "folder",
                 "--root", str(world), "--shots", "40", "--fusion", "attention", "--out",
                 str(out), "--max-steps", "1", "--device", "cpu", "--no-progress"]) == 2
    err = one_error(capsys)
    assert err.startswith("error: folder fold 0 train pool: class ") and \
        "40-shot episodes need at least shots + 1 = 41 per class" in err
    assert not out.exists()
    with pytest.raises(ValueError, match=r"test pool: class 1 \(aeroplane\) has \d+, class 2"):
        make_dataset(source=FolderSource(world), split="test", shots=40, episodes=2)


def test_training_needs_a_known_dataset_and_a_root() -> None:
    with pytest.raises(ValueError, match="dataset must be one of pascal, coco, synthetic, "
                                         "folder, fss1000, got 'mine'"):
        get_config("synthetic-imagenet-1shot", ["dataset=mine"])
    with pytest.raises(ValueError, match=r"dataset=folder needs root \(--root DIR\)"):
        get_config("synthetic-imagenet-1shot", ["dataset=folder"])


# the split files of book/troubleshooting.md's row, each with its one-line message
BAD_SPLITS = [
    ("{classes: [", ("not valid JSON (Expecting property name enclosed in double quotes: "
                     "line 1 column 2 (char 1))")),
    ([1, 2], "expected a JSON object with 'classes' and 'train'/'test' (or 'folds'), got list"),
    ({"classes": ["a", "b"], "train": ["a"], "test": ["c"]},
     "test names 'c', which is not in 'classes' (a, b)"),
    ({"classes": ["a", "b"], "train": ["a"], "test": ["a"]},
     "'a' is in both train and test; a class belongs to one part of the split"),
    ({"classes": ["a", "b"], "train": ["a", "b"]},
     "'test' is empty; a split needs training and test classes"),
    ({"classes": ["a", "a"], "train": ["a"], "test": ["a"]},
     "class names must be unique, ['a'] appear twice"),
    ({"classes": ["a", "b"], "folds": [["a"], ["b"]], "test": ["a"]},
     "give either 'folds' or 'train'/'val'/'test', not both"),
    ({"classes": ["a", "b"], "folds": [["a"]]},
     "'folds' needs at least 2 non-empty lists of test classes, got 1"),
    ({"train": ["a"], "test": ["b"]},
     "no 'classes' list (the class names; mask value i is classes[i - 1])"),
    ({"classes": ["a"], "tset": ["a"]},
     "unknown key(s) ['tset']; allowed: classes, train, val, test, folds"),
    ({"classes": ["a", "b"], "train": "a", "test": ["b"]},
     "'train' must be a list of class names, got 'a'"),
]


@pytest.mark.parametrize(("split", "message"), BAD_SPLITS)
def test_a_bad_split_file_is_one_line_on_the_command_line(
        world: Path, tmp_path: Path, split: object, message: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(world, copy)
    (copy / "split.json").write_text(split if isinstance(split, str) else json.dumps(split))
    assert main(["evaluate", "--dataset", "folder", "--root", str(copy), "--checkpoint",
                 CHECKPOINT, "--device", "cpu"]) == 2
    assert one_error(capsys) == f"error: {copy / 'split.json'}: {message}\n"


def test_the_folder_layout_and_class_set_messages(
        world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def refused(*args: str) -> str:
        assert main(list(args)) == 2
        return one_error(capsys)[len("error: "):-1]

    evaluate_ = ["evaluate", "--checkpoint", CHECKPOINT, "--device", "cpu", "--dataset"]
    copy = tmp_path / "copy"
    shutil.copytree(world, copy)
    shutil.rmtree(copy / "masks")
    assert refused(*evaluate_, "folder", "--root", str(copy)) == (
        f"{copy / 'masks'}: no such folder; a folder dataset holds images/ID.jpg, "
        "masks/ID.png and split.json")
    assert refused("train", "--config", "synthetic-imagenet-1shot", "--dataset", "folder",
                   "--out", str(tmp_path / "run"), "--device", "cpu") == (
        "dataset=folder needs root (--root DIR): the folder with images/, masks/ and split.json")
    assert refused(*evaluate_, "folder") == (
        "--dataset folder needs --root DIR (the folder holding its images, masks and split)")
    assert refused(*evaluate_, "synthetic", "--class-set", "val") == (
        "--class-set val needs --dataset folder or fss1000 (a split with validation classes), "
        "got --dataset synthetic")
    split = json.loads((world / "split.json").read_text())
    split["train"] += split.pop("val", [])
    (copy / "split.json").write_text(json.dumps(split))
    shutil.copytree(world / "masks", copy / "masks")
    assert refused(*evaluate_, "folder", "--root", str(copy), "--class-set", "val") == (
        f"{copy / 'split.json'}: 'val' is empty, so there are no validation classes")
    assert main([*evaluate_, "folder", "--root", str(copy), "--shots", "40", "--fusion",
                 "mask-avg"]) == 2
    assert re.fullmatch(r"error: folder fold 0 test pool: class 1 \(aeroplane\) has \d+, .* "
                        r"image\(s\); 40-shot episodes need at least shots \+ 1 = 41 per "
                        r"class\n", one_error(capsys))


def test_fss1000_messages_of_a_tree_that_cannot_be_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def refused(*args: str) -> str:
        assert main(list(args)) == 2
        return one_error(capsys)[len("error: "):-1]

    assert refused("prepare", "fss1000", "--root", str(tmp_path / "none")) == (
        f"{tmp_path / 'none'}: no such folder (FSS-1000: one folder per class, N.jpg with N.png)")
    assert refused("prepare", "fss1000", "--root", str(tmp_path), "--url", "file:///x.zip") == (
        "--url and --sha256 are for --download; add --download or drop them")
    tree = build_fss_tree(tmp_path / "fss")
    for path in sorted((tree.root / tree.train[0]).glob("*.png"))[1:]:
        path.unlink()
    assert refused("prepare", "fss1000", "--root", str(tree.root)) == (
        f"{tree.root}: 1 class(es) have fewer than 2 images with masks (a 1-shot episode "
        f"needs 2), e.g. {tree.train[0]}")
    (tree.root / "splits" / "val.txt").unlink()
    assert refused("evaluate", "--dataset", "fss1000", "--root", str(tree.root), "--checkpoint",
                   CHECKPOINT, "--device", "cpu") == (
        f"{tree.root / 'splits' / 'val.txt'}: FSS-1000 split list missing; copy the field's "
        "split files (trn.txt, val.txt, test.txt: one class folder name a line, 520/240/240 "
        f"classes) into {tree.root / 'splits'}")


# --------------------------------------------------------------------------- train, evaluate
def test_python_trains_on_any_source_with_a_training_pool_and_evaluates(
        world: Path, tmp_path: Path) -> None:
    source = FolderSource(world)
    cfg = get_config("synthetic-imagenet-1shot", RUN)  # cfg.dataset is not read
    run = train(cfg, tmp_path / "run", max_steps=2, device="cpu", progress=False, source=source)
    assert run.step == 2 and len(run.losses) == 2 and np.isfinite(run.losses).all()
    test = make_dataset(source=source, split="test", episodes=4, seed=0)
    result = evaluate(run.model, test, device="cpu", progress=False)
    names = {source.class_names[c - 1] for c in source.test_classes(0)}
    assert set(result.per_class_iou) <= names and 0 <= result.miou <= 100
    assert 0 < result.all_objects_miou < 100  # the scenes show other classes too


def test_the_command_line_trains_and_evaluates_a_folder_dataset(
        world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, report = tmp_path / "run", tmp_path / "eval.json"
    sets = [x for item in RUN for x in ("--set", item)]
    assert main(["train", "--config", "synthetic-imagenet-1shot", "--dataset", "folder",
                 "--root", str(world), *sets, "--out", str(out), "--max-steps", "2",
                 "--device", "cpu", "--no-progress"]) == 0
    assert "step 2/4" in capsys.readouterr().out
    assert main(["evaluate", "--dataset", "folder", "--root", str(world), "--checkpoint",
                 str(out / "model.pt"), "--episodes", "4", "--iterations", "1", "--device", "cpu",
                 "--json", str(report), "--no-progress"]) == 0
    result = json.loads(report.read_text())
    assert result["settings"]["dataset"] == "folder" and result["settings"]["trained_fold"] == 0
    assert set(result["per_class_iou"]) <= {"aeroplane", "bicycle", "bird", "boat", "bottle"}
    assert main(["evaluate", "--dataset", "folder", "--root", str(world), "--checkpoint",
                 str(out / "model.pt"), "--episodes", "2", "--iterations", "0", "--device", "cpu",
                 "--class-set", "val", "--json", str(report), "--no-progress"]) == 0
    val = json.loads(report.read_text())
    assert set(val["per_class_iou"]) <= {"cat", "dog"} and val["settings"]["class_set"] == "val"
    heads = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("folder fold 0, 1-shot, ")]
    assert len(heads) == 2 and not heads[0].endswith(", validation classes")
    assert heads[1].startswith("folder fold 0, 1-shot, 2 episodes")
    assert heads[1].endswith(", validation classes")


@pytest.mark.parametrize(("args", "message"), [
    (["--fold", "1"], r"--fold must be in 0\.\.0 \(.*split.json has 1 fold\(s\)\), got 1"),
    (["--root", None], r"--dataset folder needs --root DIR"),
    (["--root", "nowhere"], r"--root nowhere: no such folder \(the folder holding the folder"),
])
def test_evaluate_checks_the_folder_options_first(world: Path, args: list, message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["evaluate", "--dataset", "folder", "--root", str(world), "--checkpoint", "missing.pt",
            "--device", "cpu"]
    if args == ["--root", None]:
        argv = argv[:3] + argv[5:]
    elif args[0] == "--root":
        argv[4] = args[1]
    else:
        argv += args
    assert main(argv) == 2
    assert re.search(message, one_error(capsys))


def test_class_set_val_is_for_split_datasets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--dataset", "synthetic", "--checkpoint", CHECKPOINT,
                 "--class-set", "val", "--device", "cpu"]) == 2
    assert "--class-set val needs --dataset folder or fss1000" in one_error(capsys)


# --------------------------------------------------------------------------- FSS-1000
def test_fss1000_is_read_in_its_published_layout_with_the_split(tmp_path: Path) -> None:
    tree = build_fss_tree(tmp_path / "fss", inside_archive_folder=True)
    source = FSS1000Source(tree.root)
    assert source.class_names == tree.train + tree.val + tree.test

    def names(ids: list[int]) -> tuple[str, ...]:
        return tuple(source.class_names[c - 1] for c in ids)

    assert names(source.train_classes(0)) == tree.train
    assert names(source.test_classes(0)) == tree.test
    assert names(FSS1000Source(tree.root, class_set="val").test_classes(0)) == tree.val
    assert source.counts() == {"train_classes": 4, "train_images": 40, "val_classes": 2,
                               "val_images": 20, "test_classes": 2, "test_images": 20}
    image_id = f"{tree.test[0]}/1"
    raw = np.asarray(Image.open(tree.root / "fewshot_data" / f"{image_id}.png"))
    mask = source.load_mask(image_id)
    class_id = source.class_names.index(tree.test[0]) + 1
    assert set(np.unique(mask).tolist()) == {0, class_id}
    assert np.array_equal(mask == class_id, raw >= 128)  # 200 is object, 60 background
    assert ((raw > 0) & (raw < 128)).any() and ((raw >= 128) & (raw < 255)).any()
    assert source.load_image(image_id).shape == (64, 80, 3)
    test = make_dataset(source=source, split="test", shots=5, episodes=3)
    assert {test[i]["class_id"] for i in range(3)} <= set(source.test_classes(0))
    training = make_dataset("fss1000", root=str(tree.root), split="train", episodes=2,
                            train_size=48)
    assert training[0]["class_id"] in source.train_classes(0)


def test_fss1000_split_lists_keep_id_255_for_ignore(tmp_path: Path) -> None:
    lists = tmp_path / "splits"
    lists.mkdir()
    for file, part in (("trn.txt", "a"), ("val.txt", "b"), ("test.txt", "c")):
        (lists / file).write_text("".join(f"{part}{i}\n" for i in range(100)))
    split = read_split_lists(lists)
    assert len(split.classes) == 301 and split.classes[254] == RESERVED_NAME
    assert RESERVED_NAME not in split.train + split.val + split.test
    assert 255 not in split.train_ids(0) + split.test_ids(0) + split.test_ids(0, "val")
    (lists / "val.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"val.txt: FSS-1000 split list missing; copy "
                                                r"the field's split files"):
        read_split_lists(lists)


def test_prepare_fss1000_downloads_checks_and_counts_a_miniature(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = build_fss_tree(tmp_path / "made", split_files=False)
    archive = build_fss_archive(tmp_path / "fewshot_data.zip", tree)
    lists = tmp_path / "lists"
    write_fss_split_lists(lists, tree)
    sha = file_digest(archive, "sha256")
    url = archive.as_uri()
    bad = tmp_path / "bad"
    assert main(["prepare", "fss1000", "--root", str(bad), "--download", "--url", url,
                 "--sha256", sha.replace(sha[0], "0" if sha[0] != "0" else "1", 1),
                 "--no-progress"]) == 2
    assert "checksum mismatch for downloaded file fewshot_data.zip" in one_error(capsys)
    assert not (bad / "fewshot_data").exists()
    assert main(["prepare", "fss1000", "--root", str(bad), "--download", "--no-progress"]) == 2
    assert "--download needs --url" in one_error(capsys)
    short = tmp_path / "short"
    assert main(["prepare", "fss1000", "--root", str(short), "--download", "--url", url,
                 "--sha256", sha[:12], "--no-progress"]) == 2  # refused before any download
    assert "--sha256 must be 64 hex digits" in one_error(capsys)
    assert not short.exists() or not any(short.rglob("*.zip*"))
    root = tmp_path / "fss"
    assert main(["prepare", "fss1000", "--root", str(root), "--download", "--url", url,
                 "--sha256", sha, "--splits", str(lists), "--no-progress"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["train_classes"] == 4 and counts["val_classes"] == 2
    assert counts["test_classes"] == 2 and counts["test_images"] == 20
    assert counts["reference_classes"] == {"train": 520, "val": 240, "test": 240}
    assert counts["matches_reference_split"] is False
    assert sorted(p.name for p in (root / "splits").iterdir()) == ["test.txt", "trn.txt",
                                                                   "val.txt"]
    source = FSS1000Source(root)
    assert source.images == root / "fewshot_data"
    assert tuple(source.class_names[c - 1] for c in source.test_classes(0)) == tree.test


def test_prepare_fss1000_refuses_a_tree_it_cannot_use(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = build_fss_tree(tmp_path / "fss")
    Image.new("L", (10, 10)).save(tree.root / tree.val[0] / "3.png")
    assert main(["prepare", "fss1000", "--root", str(tree.root), "--no-progress"]) == 2
    assert one_error(capsys) == (f"error: {tree.root}: 1 mask(s) differ in size from their "
                                 f"image, e.g. {tree.val[0]}/3.png\n")
    shutil.rmtree(tree.root / tree.test[1])
    assert main(["prepare", "fss1000", "--root", str(tree.root), "--no-progress"]) == 2
    assert one_error(capsys).startswith(f"error: {tree.root / tree.test[1]}: class folder "
                                        "missing")
    assert main(["prepare", "pascal", "--root", str(tree.root), "--splits", "x"]) == 2
    assert one_error(capsys) == "error: --splits: for prepare fss1000 only, not pascal\n"


# --------------------------------------------------------------------------- the README
README = Path(__file__).resolve().parents[1] / "README.md"


def readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("## Your own images", 1)[1].split("\n## ", 1)[0]


def readme_commands(block: str) -> list[list[str]]:
    """The ``python -m canetlib ...`` commands of a bash block, as argv after the module."""
    joined = block.replace("\\\n", " ")
    lines = [line.split("#", 1)[0].split() for line in joined.splitlines()]
    return [words[3:] for words in lines if words[:3] == ["python", "-m", "canetlib"]]


@pytest.mark.slow  # half a minute on a CPU: the prototype fit, 300 episodes, and 4 evaluations
def test_the_readme_trains_and_evaluates_your_own_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    section = readme_section()
    python = [b for b in re.findall(r"```python\n(.*?)```", section, re.DOTALL)
              if "FolderSource(" in b]
    bash = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    assert len(python) == 1 and len(bash) == 2, "README.md: 'Your own images' lost a block"
    monkeypatch.chdir(tmp_path)
    build_world_folder("my_data", images_per_class=2, test_images_per_class=3,
                       image_size=(64, 80))
    namespace: dict = {}
    exec(compile(python[0], str(README), "exec"), namespace)  # noqa: S102 - our README
    assert namespace["run"].step == 8  # 64 episodes, batches of 8, one epoch
    assert set(namespace["result"].per_class_iou) <= {"aeroplane", "bicycle", "bird", "boat",
                                                      "bottle"}
    assert "test classes [" in capsys.readouterr().out
    (tmp_path / "cli").mkdir()  # the commands in a folder of their own (the same runs/mine)
    shutil.copytree("my_data", tmp_path / "cli" / "my_data")
    monkeypatch.chdir(tmp_path / "cli")
    tree = build_fss_tree("fss", split_files=False, inside_archive_folder=True)
    write_fss_split_lists(Path("lists"), tree)
    commands = readme_commands(bash[0]) + readme_commands(bash[1])
    assert [c[0] for c in commands] == ["train", "evaluate", "prepare", "train", "evaluate"]
    for argv in commands:
        assert main(argv) == 0, argv
    out = capsys.readouterr().out
    assert "baseline, training-free prototype matcher" in out
    assert f"per-class IoU (final): {tree.val[0]}" in out  # --class-set val on FSS-1000
    assert (tmp_path / "runs" / "mine" / "model.pt").is_file()
    assert (tmp_path / "cli" / "runs" / "mine" / "model.pt").is_file()
    assert (tmp_path / "cli" / "runs" / "fss" / "model.pt").is_file()
