"""Locations: what a user's path or URI turns into, one-line refusals, and object-store writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pomona.errors import ConfigError
from pomona.location import as_location, check_output_dir, is_uri, replaceable
from pomona.registry import Registry


def test_local_paths_and_file_uris_are_the_same_local_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = as_location("data/ds")
    assert relative.local == tmp_path / "data" / "ds"
    assert relative.uri == str(tmp_path / "data" / "ds")
    uri = as_location(f"file://{tmp_path}/data/ds")
    assert uri.local == tmp_path / "data" / "ds"
    assert str(uri) == str(tmp_path / "data" / "ds")
    assert as_location("~/x").local == Path.home() / "x"
    assert is_uri("s3://bucket/x") and not is_uri("/tmp/x") and not is_uri("file:x")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ftp://host/data", "cannot open 'ftp://host/data' (Unrecognized filesystem type"),
        ("http://host/data", "cannot open 'http://host/data'"),
        ("file://relative/path", "cannot open 'file://relative/path'"),
        ("file:relative/path", "'file:relative/path' is a relative file URI"),
        ("", "an empty path is not a location"),
    ],
)
def test_bad_locations_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        as_location(text)
    assert message in str(error.value)
    assert "file:///ABSOLUTE/PATH, s3://BUCKET/PATH or gs://BUCKET/PATH" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_store_that_does_not_answer_says_what_to_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from pomona import location

    def unreachable(uri: str) -> None:
        raise OSError("AWS Error NETWORK_CONNECTION during HeadBucket operation")

    monkeypatch.setattr(location, "_open_uri", unreachable)
    with pytest.raises(ConfigError) as error:
        as_location("s3://bucket/ds")
    assert str(error.value) == (
        "cannot open 's3://bucket/ds' (AWS Error NETWORK_CONNECTION during HeadBucket "
        "operation); check the bucket's name, this machine's network and its credentials for "
        "the store"
    )


def test_the_registry_refuses_bad_schemes_the_same_way() -> None:
    with pytest.raises(ConfigError, match="cannot open 'ftp://host/models'"):
        Registry("ftp://host/models")


def test_files_in_an_object_store(object_store: Path, tmp_path: Path) -> None:
    ds = as_location("store://bucket/ds")
    assert ds.local is None and str(ds) == "store://bucket/ds"
    assert not ds.exists() and ds.children() == []
    (ds / "a/b.txt").write_text("hello")
    assert (object_store / "bucket/ds/a/b.txt").read_text() == "hello"
    assert ds.is_dir() and (ds / "a/b.txt").is_file() and ds.children() == ["a"]
    assert (ds / "a/b.txt").read_text() == "hello"
    assert (ds / "a/b.txt").parent.uri == "store://bucket/ds/a"
    with pytest.raises(FileNotFoundError):
        (ds / "missing").read_bytes()
    local = tmp_path / "copy.txt"
    digest = (ds / "a/b.txt").download(local)
    assert local.read_text() == "hello" and digest == (ds / "a/b.txt").sha256()
    assert ds.download_existing(["a/b.txt", "nope"], tmp_path / "got") == ["a/b.txt"]


def test_publish_tree_replaces_the_old_tree_and_uploads_the_marker_last(
    object_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = as_location("store://bucket/ds")
    (target / "old.parquet").write_text("old")
    (target / "manifest.json").write_text("old")
    built = tmp_path / "built"
    (built / "train").mkdir(parents=True)
    for name in ("manifest.json", "train/part-0.parquet", "z.csv"):
        (built / name).write_text(name)
    uploaded: list[str] = []
    upload = type(target).upload

    def record(self: object, source: Path) -> str:
        uploaded.append(source.relative_to(built).as_posix())
        return upload(self, source)  # type: ignore[arg-type]

    monkeypatch.setattr(type(target), "upload", record)
    target.publish_tree(built, last="manifest.json")
    assert uploaded[-1] == "manifest.json" and len(uploaded) == 3
    stored = sorted(
        p.relative_to(object_store / "bucket/ds").as_posix()
        for p in (object_store / "bucket/ds").rglob("*")
        if p.is_file()
    )
    assert stored == ["manifest.json", "train/part-0.parquet", "z.csv"]


def test_check_output_dir_on_an_object_store(object_store: Path) -> None:
    run = check_output_dir("store://b/run", resume=False, marker="c.yaml", kind="run", command="t")
    assert run.local is None
    (run / "metrics.csv").write_text("epoch\n")
    with pytest.raises(ConfigError, match=r"run directory store://b/run already exists"):
        check_output_dir("store://b/run", resume=False, marker="c.yaml", kind="run", command="t")
    with pytest.raises(ConfigError, match=r"cannot resume: store://b/run holds no c.yaml"):
        check_output_dir("store://b/run", resume=True, marker="c.yaml", kind="run", command="t")


def test_local_writes_stay_atomic_and_create_parents(tmp_path: Path) -> None:
    target = as_location(tmp_path / "a" / "b" / "f.txt")
    target.write_text("x")
    assert (tmp_path / "a/b/f.txt").read_text() == "x"
    assert os.listdir(tmp_path / "a/b") == ["f.txt"]  # no temporary file left


def test_only_nothing_an_empty_directory_or_what_pomona_wrote_is_replaceable(
    tmp_path: Path,
) -> None:
    assert replaceable(tmp_path / "missing", "manifest.json")
    (tmp_path / "empty").mkdir()
    assert replaceable(tmp_path / "empty", "manifest.json")
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "manifest.json").write_text("{}")
    assert replaceable(tmp_path / "dataset", "manifest.json")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's")
    assert not replaceable(tmp_path / "mine", "manifest.json")
    (tmp_path / "a-file").write_text("the user's")
    assert not replaceable(tmp_path / "a-file", "manifest.json")
