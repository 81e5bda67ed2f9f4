from __future__ import annotations

from pathlib import Path

import pytest

from pomona.data.discover import SourceFile, discover, is_litter, label_from_name
from pomona.errors import DatasetError


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("apple_01.png", "apple"),
        ("granny_smith_7.jpg", "granny_smith"),
        ("a_b_c_0012.jpeg", "a_b_c"),
        ("apple.png", None),
        ("apple_x1.png", None),
        ("_12.png", None),
    ],
)
def test_label_from_name(name: str, label: str | None) -> None:
    assert label_from_name(name) == label


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_folder_layout_labels_and_unlabelled_root_file(tmp_path: Path) -> None:
    touch(tmp_path, "cat/1.png", "cat/deep/2.png", "dog/3.png", "stray.png", ".git/config")
    found = discover(tmp_path, "auto")
    assert found.layout == "folder"
    assert found.ignored == 1  # .git/config
    assert found.files == [
        SourceFile("cat/1.png", "cat"),
        SourceFile("cat/deep/2.png", "cat"),
        SourceFile("dog/3.png", "dog"),
        SourceFile("stray.png", None),
    ]


def test_prefix_layout(tmp_path: Path) -> None:
    touch(tmp_path, "apple_01.png", "granny_smith_7.jpg", "notes.txt")
    found = discover(tmp_path, "auto")
    assert found.layout == "prefix"
    assert [(f.path, f.label) for f in found.files] == [
        ("apple_01.png", "apple"),
        ("granny_smith_7.jpg", "granny_smith"),
        ("notes.txt", None),
    ]


def test_explicit_prefix_inside_folders(tmp_path: Path) -> None:
    touch(tmp_path, "batch1/apple_1.png", "batch2/pear_2.png")
    found = discover(tmp_path, "prefix")
    assert found.layout == "prefix"
    assert [f.label for f in found.files] == ["apple", "pear"]


def test_missing_and_empty_sources(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        discover(tmp_path / "nope")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(DatasetError, match="not a directory"):
        discover(tmp_path / "file")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DatasetError, match="holds no files"):
        discover(tmp_path / "empty")
    touch(tmp_path, "litter/.DS_Store", "litter/Thumbs.db")
    with pytest.raises(DatasetError, match="holds no files \\(2 ignored"):
        discover(tmp_path / "litter")


LITTER = (
    ".DS_Store",
    "cat/.DS_Store",
    "cat/._1.png",
    "cat/.hidden.png",
    "dog/Thumbs.db",
    "dog/THUMBS.DB",
    "dog/desktop.ini",
    "__MACOSX/cat/._1.png",
    "__MACOSX/cat/1.png",
    ".cache/dog/3.png",
)


@pytest.mark.parametrize("label_from", ["auto", "folder"])
def test_os_litter_is_ignored_and_counted(tmp_path: Path, label_from: str) -> None:
    touch(tmp_path, "cat/1.png", "dog/3.png", "stray.png", *LITTER)
    found = discover(tmp_path, label_from)  # type: ignore[arg-type]
    assert found.layout == "folder"
    assert [f.path for f in found.files] == ["cat/1.png", "dog/3.png", "stray.png"]
    assert found.ignored == len(LITTER)
    assert found.found == 3 + len(LITTER)


def test_macosx_folder_does_not_make_a_prefix_layout_a_folder_layout(tmp_path: Path) -> None:
    touch(tmp_path, "apple_1.png", "pear_2.png", "__MACOSX/._apple_1.png")
    found = discover(tmp_path, "auto")
    assert found.layout == "prefix"
    assert [f.label for f in found.files] == ["apple", "pear"]
    assert found.ignored == 1


@pytest.mark.parametrize(
    ("name", "litter"),
    [
        (".DS_Store", True),
        ("._photo.jpg", True),
        ("Thumbs.db", True),
        ("desktop.ini", True),
        ("Desktop.INI", True),
        ("__MACOSX", True),
        ("photo.jpg", False),
        ("thumbs.db.png", False),
        ("_1.png", False),
    ],
)
def test_is_litter(name: str, litter: bool) -> None:
    assert is_litter(name) is litter
