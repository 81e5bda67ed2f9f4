from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from support.images import bomb_png, gradient, png_bytes, write

from pomona.data import ingest as ingest_module
from pomona.data.ingest import IngestConfig, ingest
from pomona.data.manifest import Preprocessing
from pomona.data.shards import image_array, read_manifest, verify
from pomona.errors import DatasetError

SPEC = Preprocessing(height=8, width=8, channels=3)


def make_folder(root: Path, per_class: int = 6, classes: tuple[str, ...] = ("cat", "dog")) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        for i in range(per_class):
            pixels = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
            write(root / c / f"{i}.png", png_bytes(Image.fromarray(pixels)))
    return root


def run(src: Path, out: Path, **options: object) -> object:
    options.setdefault("workers", 1)
    return ingest(IngestConfig(src=src, out=out, preprocessing=SPEC, **options))


def read_rows(out: Path) -> dict[str, list[dict]]:
    manifest = read_manifest(out)
    rows: dict[str, list[dict]] = {}
    for split, info in manifest.splits.items():
        rows[split] = []
        for shard in info.shards:
            rows[split] += pq.read_table(out / shard.path).to_pylist()
    return rows


def test_ingest_writes_manifest_shards_and_counts(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src", per_class=10)
    manifest = run(src, tmp_path / "out", shard_rows=4)
    assert manifest.classes == ["cat", "dog"]
    assert manifest.image_shape == (8, 8, 3)
    assert (manifest.found, manifest.ingested, manifest.rejected, manifest.ignored) == (
        20,
        20,
        0,
        0,
    )
    assert {s: i.counts for s, i in manifest.splits.items()} == {
        "train": {"cat": 6, "dog": 6},
        "val": {"cat": 2, "dog": 2},
        "test": {"cat": 2, "dog": 2},
    }
    assert [s.rows for s in manifest.splits["train"].shards] == [4, 4, 4]
    assert verify(tmp_path / "out", manifest) == []
    rows = read_rows(tmp_path / "out")
    paths = [r["path"] for split in rows.values() for r in split]
    assert sorted(paths) == sorted(f"{c}/{i}.png" for c in ("cat", "dog") for i in range(10))
    first = rows["train"][0]
    assert first["label"] == ["cat", "dog"].index(first["label_name"])
    table = pq.read_table(tmp_path / "out" / manifest.splits["val"].shards[0].path)
    assert image_array(table.column("image"), manifest.image_shape).shape[1:] == (8, 8, 3)
    assert not list((tmp_path / "out").glob(".staging*"))


def test_bad_files_rejected_and_counts_reconcile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_folder(tmp_path / "src")
    good = png_bytes(Image.fromarray(gradient(16, 16)))
    write(src / "cat" / "empty.png", b"")
    write(src / "cat" / "notes.txt", b"not an image")
    write(src / "dog" / "truncated.png", good[: len(good) // 2])
    write(src / "dog" / "bomb.png", bomb_png())
    write(src / "dog" / "float.tif", b"")
    Image.fromarray(np.zeros((4, 4), np.float32), mode="F").save(src / "dog" / "float.tif")
    write(src / "loose.png", good)
    locked = write(src / "cat" / "locked.png", good)
    locked.chmod(0)
    real_read = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        # Root ignores file modes, so make the permission failure explicit.
        if self.name == "locked.png":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    manifest = run(src, tmp_path / "out")
    assert manifest.found == 12 + 7
    assert manifest.rejected == 7
    assert manifest.ingested == 12
    with open(tmp_path / "out" / "rejected.csv") as handle:
        reasons = {row["path"]: row["reason"] for row in csv.DictReader(handle)}
    assert reasons.keys() == {
        "cat/empty.png",
        "cat/notes.txt",
        "dog/truncated.png",
        "dog/bomb.png",
        "dog/float.tif",
        "loose.png",
        "cat/locked.png",
    }
    assert reasons["cat/empty.png"] == "empty file"
    assert reasons["cat/notes.txt"].startswith("not an image")
    assert reasons["dog/truncated.png"].startswith("corrupt or truncated")
    assert reasons["dog/bomb.png"].startswith("too large")
    assert reasons["dog/float.tif"] == "unsupported image mode 'F'"
    assert reasons["loose.png"].startswith("no label")
    assert reasons["cat/locked.png"] == "unreadable: Permission denied"


def test_os_litter_is_ignored_not_rejected(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src")
    good = png_bytes(Image.fromarray(gradient(16, 16)))
    for litter in (".DS_Store", "cat/._0.png", "cat/Thumbs.db", "dog/desktop.ini"):
        write(src / litter, b"\x00\x05\x16\x07 not an image")
    write(src / "__MACOSX" / "cat" / "0.png", good)  # decodable, but litter all the same
    write(src / "dog" / "notes.txt", b"not an image")
    manifest = run(src, tmp_path / "out")
    assert (manifest.found, manifest.ingested, manifest.rejected, manifest.ignored) == (
        18,
        12,
        1,
        5,
    )
    assert manifest.classes == ["cat", "dog"]
    with open(tmp_path / "out" / "rejected.csv") as handle:
        assert [row["path"] for row in csv.DictReader(handle)] == ["dog/notes.txt"]
    assert read_manifest(tmp_path / "out").ignored == 5


def test_duplicates_never_cross_splits(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src", per_class=12)
    for i in range(6):  # six copies of cat/0.png
        shutil.copy(src / "cat" / "0.png", src / "cat" / f"copy{i}.png")
    manifest = run(src, tmp_path / "out")
    assert manifest.duplicates == 6
    rows = read_rows(tmp_path / "out")
    where = {r["path"]: split for split, split_rows in rows.items() for r in split_rows}
    copies = {where["cat/0.png"]} | {where[f"cat/copy{i}.png"] for i in range(6)}
    assert len(copies) == 1
    assert len(where) == manifest.ingested  # each file exactly once


def test_same_seed_same_dataset_and_parallel_matches_serial(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src", per_class=70)
    first = run(src, tmp_path / "a", seed=3)
    second = run(src, tmp_path / "b", seed=3, workers=2)
    shards = lambda m: {s: [x.sha256 for x in i.shards] for s, i in m.splits.items()}  # noqa: E731
    assert shards(first) == shards(second)
    third = run(src, tmp_path / "c", seed=4)
    assert shards(third) != shards(first)


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src")
    run(src, tmp_path / "out")
    with pytest.raises(DatasetError, match="--overwrite"):
        run(src, tmp_path / "out")
    manifest = run(src, tmp_path / "out", overwrite=True, seed=9)
    assert read_manifest(tmp_path / "out").seed == manifest.seed == 9


def test_overwrite_replaces_only_a_dataset(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    with pytest.raises(DatasetError, match=r"mine exists and is not a pomona dataset"):
        run(src, mine, overwrite=True)
    assert (mine / "notes.txt").read_text() == "the user's"
    (tmp_path / "empty").mkdir()
    assert run(src, tmp_path / "empty", overwrite=True).ingested == 12


def test_output_holding_the_source_is_refused(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "data" / "images")
    with pytest.raises(DatasetError, match=r"source folder .*images is inside the output"):
        run(src, tmp_path / "data", overwrite=True)
    assert len(list(src.rglob("*.png"))) == 12


def test_failure_leaves_no_dataset_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_folder(tmp_path / "src")

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ingest_module, "write_shard", broken)
    with pytest.raises(OSError, match="disk full"):
        run(src, tmp_path / "out")
    assert list(tmp_path.iterdir()) == [tmp_path / "src"]


def test_failed_overwrite_keeps_the_old_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_folder(tmp_path / "src")
    before = run(src, tmp_path / "out")
    monkeypatch.setattr(
        ingest_module, "_write_rejected", lambda *a: (_ for _ in ()).throw(OSError("boom"))
    )
    with pytest.raises(OSError, match="boom"):
        run(src, tmp_path / "out", overwrite=True, seed=5)
    assert read_manifest(tmp_path / "out").created == before.created


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        (("only",), r"at least 2 classes.*\['only'\].*rejected 1 files: 1 not an image"),
        ((), r"at least 2 classes.*; rejected 1 files: 1 not an image \(unrecognised format\)$"),
    ],
)
def test_too_few_classes(tmp_path: Path, classes: tuple[str, ...], message: str) -> None:
    src = make_folder(tmp_path / "src", classes=classes)
    write(src / "other" / "x.txt", b"text, not an image")
    with pytest.raises(DatasetError, match=message):
        run(src, tmp_path / "out")


def test_small_class_error_names_it(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src")
    write(src / "rare" / "0.png", png_bytes(Image.fromarray(gradient())))
    with pytest.raises(DatasetError, match="'rare' has 1"):
        run(src, tmp_path / "out")


def test_output_inside_source_refused(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src")
    with pytest.raises(DatasetError, match="inside the source folder"):
        run(src, src / "dataset")


def test_prefix_layout_ingests(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in ("apple", "granny_smith"):
        for i in range(5):
            write(src / f"{name}_{i:02d}.png", png_bytes(Image.fromarray(gradient(10 + i, 10))))
    manifest = run(src, tmp_path / "out", split={"train": 0.6, "val": 0.2, "test": 0.2})
    assert manifest.label_from == "prefix"
    assert manifest.classes == ["apple", "granny_smith"]
