"""The registry from the command line: versions, aliases, references, refusals."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support.fake_models import flip_byte

from pomona.cli.session import Session
from pomona.data.shards import read_manifest, shard_paths

pytestmark = pytest.mark.e2e


@pytest.mark.ray
def test_registry_flow(
    pomona,
    ray_session: None,
    digits_model: Path,
    digits_dataset: Path,
    digits_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = tmp_path / "registry"
    # Both ways of naming the registry: the environment and --registry.
    monkeypatch.setenv("POMONA_REGISTRY", str(root))
    result = pomona("registry", "register", digits_model, "--name", "digits")
    assert result.code == 0, result.err
    assert f"registered digits:1 (simple_cnn, 10 classes) from {digits_model}" in result.out
    monkeypatch.setenv("POMONA_REGISTRY", str(tmp_path / "elsewhere"))
    result = pomona("registry", "--registry", root, "register", digits_model, "--name", "digits")
    assert result.code == 0, result.err
    assert "registered digits:2" in result.out
    monkeypatch.setenv("POMONA_REGISTRY", str(root))

    assert pomona("registry", "alias", "digits", "1", "production").out.strip() == (
        "digits@production -> 1 (new)"
    )
    assert pomona("registry", "alias", "digits", "2", "canary").out.strip() == (
        "digits@canary -> 2 (new)"
    )
    result = pomona("registry", "show", "digits@production")
    assert result.code == 0, result.err
    assert "digits:1 in" in result.out
    assert "production" in result.out and "canary" not in result.out
    result = pomona("registry", "list")
    assert result.code == 0, result.err
    assert "production" in result.out and "canary" in result.out

    # References work wherever a model is expected.
    manifest = read_manifest(digits_dataset)
    table = pq.read_table(shard_paths(digits_dataset, manifest, "test"), columns=["path"])
    files = [digits_folder / p for p in table.column("path").to_pylist()[:3]]
    by_path = json.loads(pomona("predict", digits_model, *files, "--json").out)
    result = pomona("predict", "digits@canary", *files, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out) == by_path

    report = tmp_path / "report"
    result = pomona(
        "evaluate",
        "digits@canary",
        "--data",
        digits_dataset,
        "--out",
        report,
        "--gallery",
        "0",
        "--registry",
        root,
    )
    assert result.code == 0, result.err
    assert result.out.startswith("digits@canary = digits:2 (simple_cnn) on test of ")
    evaluated = json.loads((report / "report.json").read_text())
    assert evaluated["model"]["reference"] == "digits@canary"
    assert evaluated["model"]["directory"] == str(root / "digits" / "versions" / "2")

    # The report's metrics travel into the version; a report of other weights is refused.
    result = pomona("registry", "register", digits_model, "--name", "digits", "--report", report)
    assert result.code == 0, result.err
    assert "registered digits:3" in result.out
    version = json.loads((root / "digits" / "versions" / "3" / "version.json").read_text())
    assert version["evaluation"] == {
        "test_top1_error": pytest.approx(evaluated["top1_error"]),
        "test_top5_error": pytest.approx(evaluated["topk_error"]),
        "test_ece": pytest.approx(evaluated["ece"]),
    }
    result = pomona("registry", "show", "digits")
    assert "digits:3" in result.out and "test_top1_error" in result.out
    # Each digest whole on its line, for copying; no line padded with spaces.
    weights_digest = version["files"]["model.safetensors"]
    assert f"sha256 model.safetensors  {weights_digest}\n" in result.out
    assert all(line == line.rstrip() for line in result.out.splitlines())
    other = tmp_path / "other-report"
    other.mkdir()
    (other / "report.json").write_text(
        json.dumps({**evaluated, "model": {**evaluated["model"], "weights_sha256": "0" * 64}})
    )
    result = pomona("registry", "register", digits_model, "--name", "digits", "--report", other)
    assert result.code == 2
    assert "evaluated other weights" in result.err

    result = pomona("registry", "delete", "digits", "1")
    assert result.code == 2
    assert "digits:1 is still aliased as production" in result.err
    assert pomona("registry", "unalias", "digits", "production").code == 0
    result = pomona("registry", "delete", "digits", "1")
    assert result.code == 0, result.err
    assert result.out.strip() == "deleted digits:1"
    result = pomona("registry", "show", "digits:1")
    assert result.code == 2
    assert "version 1, which does not exist" in result.err and "versions 2, 3" in result.err

    result = pomona("registry", "register", digits_model, "--name", "../x")
    assert result.code == 2
    assert "invalid model name '../x'" in result.err

    weights = root / "digits" / "versions" / "2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b"tampered")
    result = pomona("predict", "digits@canary", files[0])
    assert result.code == 2
    assert "model.safetensors has sha256" in result.err
    assert "modified or corrupted" in result.err
    assert "Traceback" not in result.err


def test_unknown_model_says_what_was_tried(pomona, tmp_path: Path, digits_folder: Path) -> None:
    image = next(digits_folder.rglob("*.png"))
    result = pomona("predict", "ghost", image, "--registry", tmp_path / "registry")
    assert result.code == 2
    assert "model 'ghost' not found: no such file or directory" in result.err
    assert f"no model 'ghost' in registry {tmp_path / 'registry'}" in result.err


def test_one_global_registry_option_for_every_model_reference(
    pomona,
    digits_model: Path,
    digits_dataset: Path,
    digits_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = tmp_path / "registry"
    monkeypatch.setenv("POMONA_REGISTRY", str(tmp_path / "elsewhere"))
    result = pomona("--registry", root, "registry", "register", digits_model, "--name", "digits")
    assert result.code == 0, result.err
    assert result.out.startswith(
        f"registered digits:1 (simple_cnn, 10 classes) from {digits_model}"
    )
    assert f"in {root}" in result.out
    assert pomona("--registry", root, "registry", "alias", "digits", "1", "production").code == 0
    # The option wins over the environment; the environment alone names the registry too.
    assert "digits:1 in" in pomona("--registry", root, "registry", "show", "digits").out
    assert pomona("registry", "show", "digits").code == 2
    monkeypatch.setenv("POMONA_REGISTRY", str(root))
    assert "digits:1 in" in pomona("registry", "show", "digits@production").out
    monkeypatch.delenv("POMONA_REGISTRY")

    image = next(digits_folder.rglob("*.png"))
    expected = json.loads(pomona("predict", digits_model, image, "--json").out)
    for args in (
        ("--registry", root, "predict", "digits@production", image, "--json"),
        # The per-command form of earlier releases still works.
        ("predict", "digits@production", image, "--json", "--registry", root),
    ):
        result = pomona(*args)
        assert result.code == 0, result.err
        assert json.loads(result.out) == expected
    result = pomona("--registry", root, "explain", "digits:1", image, "--out", tmp_path / "cams")
    assert result.code == 0, result.err
    assert list((tmp_path / "cams").glob("*.png"))

    # train --weights looks references up in the same registry (checked before any epoch; Ray is
    # not needed to get there).
    monkeypatch.setattr(Session, "connect", lambda self: None)
    result = pomona(
        "--registry",
        root,
        "train",
        "--data",
        digits_dataset,
        "--out",
        tmp_path / "run",
        "--weights",
        "digits@canary",
    )
    assert result.code == 2
    assert "digits has no alias 'canary'; digits has versions 1, aliases production->1" in (
        result.err
    )


def test_incomplete_versions_from_the_cli(pomona, digits_model: Path, tmp_path: Path) -> None:
    root = tmp_path / "registry"
    assert pomona("--registry", root, "registry", "register", digits_model, "--name", "d").code == 0
    # What a registration killed mid-copy leaves (tests/unit/registry/test_registry_gc.py kills
    # one for real): half the weights, no version.json.
    leftover = root / "d" / "versions" / "2" / "model.safetensors"
    leftover.parent.mkdir()
    leftover.write_bytes((digits_model / "model.safetensors").read_bytes()[:1000])

    result = pomona("--registry", root, "registry", "list")
    assert "incomplete (files without version.json, never published): d:2;" in result.out
    result = pomona("--registry", root, "registry", "delete", "d", "2")
    assert result.code == 2
    assert "error: d:2 is an incomplete version, not a published one: model.safetensors" in (
        result.err
    )
    assert "`pomona registry gc d`" in result.err
    result = pomona("--registry", root, "registry", "gc")
    assert result.code == 0, result.err
    assert result.out.startswith("kept d:2: model.safetensors (1,000 bytes, last written ")
    assert "within the 600 s grace" in result.out
    assert leftover.exists()
    result = pomona("--registry", root, "registry", "gc", "d", "--grace-s", "0", "--dry-run")
    assert result.out.startswith("incomplete d:2: model.safetensors (1,000 bytes")
    assert leftover.exists()
    result = pomona("--registry", root, "registry", "gc", "d", "--grace-s", "0")
    assert result.out.startswith("removed d:2: model.safetensors (1,000 bytes")
    assert not leftover.exists()
    assert pomona("--registry", root, "registry", "gc").out == f"no incomplete versions in {root}\n"
    assert "incomplete" not in pomona("--registry", root, "registry", "list").out


def test_show_verifies_checksums(pomona, digits_model: Path, tmp_path: Path) -> None:
    root = tmp_path / "registry"
    assert pomona("--registry", root, "registry", "register", digits_model, "--name", "d").code == 0
    result = pomona("--registry", root, "registry", "show", "d")
    assert result.code == 0, result.err
    assert re.search(r"^checksums +ok *$", result.out, re.MULTILINE)
    flip_byte(root / "d" / "versions" / "1" / "model.safetensors")
    result = pomona("--registry", root, "registry", "show", "d")
    assert result.code == 2
    assert re.search(r"^checksums +CORRUPT *$", result.out, re.MULTILINE)
    assert result.err.startswith("error: d:1 in ")
    assert "model.safetensors has sha256" in result.err and "modified or corrupted" in result.err
