"""`pomona train` argument errors: one clear line, exit 2, and no Ray started."""

from __future__ import annotations

from pathlib import Path

import pytest

from pomona.data.shards import read_manifest, write_manifest

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--data", "d"), "out: Field required"),
        (("--data", "d", "--out", "{tmp}/run", "--model", "vgg"), "unknown architecture 'vgg'"),
        (("--data", "d", "--out", "{tmp}/run", "--set", "epochs=0"), "epochs"),
        (("--data", "d", "--out", "{tmp}/run", "--set", "lr"), "--set expects key=value"),
        (
            ("--data", "d", "--out", "{tmp}/run", "--workers", "4", "--batch-size", "2"),
            ">= num_workers",
        ),
        (("--data", "d", "--out", "{tmp}/existing"), "already exists; continue it with"),
        (("--resume", "{tmp}/empty"), "does not exist"),
        (("{tmp}/missing.yaml",), "config file"),
        (("--data", "/does/not/exist", "--out", "{tmp}/run"), "is not a pomona dataset"),
        (("--data", "{tmp}/no_val", "--out", "{tmp}/run"), "no rows in split 'val'"),
    ],
)
def test_train_errors(
    pomona,
    ray_forbidden: None,
    digits_dataset: Path,
    tmp_path: Path,
    args: tuple[str, ...],
    message: str,
) -> None:
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "metrics.csv").write_text("epoch\n")
    _without_val(digits_dataset, tmp_path / "no_val")
    result = pomona("train", *(a.format(tmp=tmp_path) for a in args))
    assert result.code == 2, result.out
    assert message in result.err
    assert "Traceback" not in result.err


def _without_val(dataset: Path, out: Path) -> None:
    """A copy of ``dataset``'s manifest whose validation split is empty."""
    manifest = read_manifest(dataset)
    val = manifest.splits["val"]
    manifest.splits["train"].rows += val.rows
    manifest.splits["val"] = val.model_copy(update={"rows": 0, "shards": []})
    out.mkdir()
    write_manifest(out, manifest)
