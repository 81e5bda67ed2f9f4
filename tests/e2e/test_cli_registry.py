"""The registry from the command line: versions, aliases, references, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pomona.data.shards import read_manifest, shard_paths

pytestmark = [pytest.mark.e2e, pytest.mark.ray]


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
