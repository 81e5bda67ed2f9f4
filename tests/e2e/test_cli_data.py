from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.images import png_bytes, write

pytestmark = pytest.mark.e2e


def test_digits_ingest_inspect(pomona, tmp_path: Path) -> None:
    result = pomona("datasets", "digits", tmp_path / "digits", "--layout", "prefix", "--size", "12")
    assert result.code == 0, result.err
    assert "wrote 1797 png images of 10 classes" in result.out
    assert len(list((tmp_path / "digits").glob("7_*.png"))) == 179

    result = pomona(
        "ingest",
        tmp_path / "digits",
        tmp_path / "ds",
        "--image-size",
        "12",
        "--channels",
        "1",
        "--split",
        "0.8,0.1,0.1",
        "--seed",
        "1",
        "--shard-rows",
        "500",
        "--workers",
        "2",
    )
    assert result.code == 0, result.err
    assert "found 1797, ingested 1797, rejected 0, ignored 0" in result.out
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["image_shape"] == [12, 12, 1]
    assert manifest["label_from"] == "prefix"
    assert [s["rows"] for s in manifest["splits"]["train"]["shards"]] == [500, 500, 439]

    result = pomona("data", "inspect", tmp_path / "ds")
    assert result.code == 0
    assert "checksums: all 5 shards OK" in result.out

    shard = tmp_path / "ds" / manifest["splits"]["val"]["shards"][0]["path"]
    shard.write_bytes(shard.read_bytes() + b"tampered")
    result = pomona("data", "inspect", tmp_path / "ds")
    assert result.code == 2
    assert "checksum verification failed" in result.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ingest", "{tmp}/missing", "{tmp}/out"), "does not exist"),
        (("ingest", "{tmp}", "{tmp}/out", "--split", "0.5,0.5"), "three comma-separated"),
        (("ingest", "{tmp}", "{tmp}/out", "--split", "0.5,0.3,0.3"), "--split: split fractions"),
        (("ingest", "{tmp}", "{tmp}/out", "--image-size", "big"), "--image-size takes N or HxW"),
        (("ingest", "{tmp}", "{tmp}/out", "--channels", "2"), "--channels: Input should be 1 or 3"),
        (("ingest", "{tmp}", "{tmp}/out", "--image-size", "0"), "--image-size: Input should be"),
        (("data", "inspect", "{tmp}"), "is not a pomona dataset"),
    ],
)
def test_bad_input_is_one_clear_line(
    pomona, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = pomona(*(a.format(tmp=tmp_path) for a in args))
    assert result.code == 2
    assert message in result.err
    assert "Traceback" not in result.err


def test_ingest_notes_classes_that_differ_in_case_and_names_rejections(
    pomona, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    for label in ("cat", "Cat", "dog"):
        for i in range(6):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            write(src / f"{label}_{i}.png", png_bytes(Image.fromarray(pixels)))
    write(src / "dog_9.png", b"not a png")
    monkeypatch.chdir(tmp_path)
    result = pomona("ingest", "src", "ds/", "--image-size", "8", "--workers", "1")
    assert result.code == 0, result.err
    assert "rejected files and reasons: ds/rejected.csv" in result.out
    assert result.err.endswith(
        "note: classes that differ only in case are separate classes: Cat and cat; rename the "
        "folders or files if they are one class\n"
    )

    # Two images left of a class that loses its others to rejection cannot be split 3 ways.
    for i in range(2, 6):
        write(src / f"dog_{i}.png", b"broken")
    result = pomona("ingest", "src", "ds2", "--image-size", "8", "--workers", "1")
    assert result.code == 2
    assert "too few distinct images to split 3 ways: 'dog' has 2" in result.err
    assert "rejected 5 files: 5 not an image (unrecognised format)" in result.err
