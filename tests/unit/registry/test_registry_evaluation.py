"""Held-out metrics recorded with a registered version."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from support.fake_models import make_model_dir

from pomona.errors import RegistryError
from pomona.registry import VERSION_FILE, Registry


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return make_model_dir(tmp_path / "model", seed=10)


def test_evaluation_is_stored_and_read_back(tmp_path: Path, model_dir: Path) -> None:
    registry = Registry(tmp_path / "registry")
    evaluation = {"test_top1_error": 0.125, "test_top5_error": 0.0, "test_ece": 0.03}
    version = registry.register(model_dir, "pets", evaluation=evaluation)
    assert version.evaluation == evaluation
    assert version.metrics == {"val_error": 0.2}
    on_disk = json.loads(
        (Path(registry.uri) / "pets" / "versions" / "1" / VERSION_FILE).read_text()
    )
    assert on_disk["evaluation"] == evaluation
    assert Registry(registry.uri).get("pets:1").evaluation == evaluation
    assert registry.register(model_dir, "pets").evaluation == {}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused_before_a_number_is_taken(
    tmp_path: Path, model_dir: Path, bad: float
) -> None:
    registry = Registry(tmp_path / "registry")
    with pytest.raises(RegistryError, match="evaluation metrics must be finite numbers"):
        registry.register(model_dir, "pets", evaluation={"test_top1_error": bad})
    assert registry.register(model_dir, "pets").version == 1


def test_versions_written_before_evaluation_existed_still_read(
    tmp_path: Path, model_dir: Path
) -> None:
    registry = Registry(tmp_path / "registry")
    registry.register(model_dir, "pets")
    path = Path(registry.uri) / "pets" / "versions" / "1" / VERSION_FILE
    record = json.loads(path.read_text())
    del record["evaluation"]
    path.write_text(json.dumps(record))
    assert registry.get("pets").evaluation == {}
