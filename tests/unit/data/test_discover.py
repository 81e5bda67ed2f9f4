from __future__ import annotations

from pathlib import Path

import pytest

from pomona.data.discover import SourceFile, discover, label_from_name
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
    layout, files = discover(tmp_path, "auto")
    assert layout == "folder"
    assert files == [
        SourceFile("cat/1.png", "cat"),
        SourceFile("cat/deep/2.png", "cat"),
        SourceFile("dog/3.png", "dog"),
        SourceFile("stray.png", None),
    ]


def test_prefix_layout(tmp_path: Path) -> None:
    touch(tmp_path, "apple_01.png", "granny_smith_7.jpg", "notes.txt")
    layout, files = discover(tmp_path, "auto")
    assert layout == "prefix"
    assert [(f.path, f.label) for f in files] == [
        ("apple_01.png", "apple"),
        ("granny_smith_7.jpg", "granny_smith"),
        ("notes.txt", None),
    ]


def test_explicit_prefix_inside_folders(tmp_path: Path) -> None:
    touch(tmp_path, "batch1/apple_1.png", "batch2/pear_2.png")
    layout, files = discover(tmp_path, "prefix")
    assert layout == "prefix"
    assert [f.label for f in files] == ["apple", "pear"]


def test_missing_and_empty_sources(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        discover(tmp_path / "nope")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(DatasetError, match="not a directory"):
        discover(tmp_path / "file")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DatasetError, match="holds no files"):
        discover(tmp_path / "empty")
