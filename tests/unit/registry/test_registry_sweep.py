"""The sweep trial recorded with a version registered by ``pomona sweep --register``."""

from __future__ import annotations

import json
from pathlib import Path

from support.fake_models import make_model_dir

from pomona.registry import VERSION_FILE, Registry, SweepTrial


def test_the_sweep_trial_is_stored_and_read_back(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    model_dir = make_model_dir(tmp_path / "model", seed=10)
    origin = SweepTrial(
        sweep="/sweeps/digits",
        trial="6d1e8_00003",
        settings={"learning_rate": 0.2369, "batch_size": 64, "schedule.name": "cosine"},
        metric="val_error",
        value=0.0855,
    )
    assert registry.register(model_dir, "digits", sweep=origin).sweep == origin
    on_disk = json.loads((Path(registry.uri) / "digits/versions/1" / VERSION_FILE).read_text())
    assert on_disk["sweep"]["settings"] == origin.settings
    assert Registry(registry.uri).get("digits:1").sweep == origin
    assert registry.register(model_dir, "digits").sweep is None
