"""Import boundaries: the core imports no Ray, evaluation no pyplot (no GUI state), serving no
training or Tune."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CORE = [
    "pomona.config",
    "pomona.data.discover",
    "pomona.data.images",
    "pomona.data.split",
    "pomona.data.shards",
    "pomona.data.ingest",
    "pomona.models",
    "pomona.models.resolve",
    "pomona.train.loop",
    "pomona.evaluate",
    "pomona.evaluate.explain",
    "pomona.inference",
    "pomona.serving.config",
    "pomona.serving.plan",
    "pomona.serving.oip",
    "pomona.evaluate.report",
    "pomona.registry",
    "pomona.cli.registry",
    "pomona.cli.evaluate",
]


SERVING_NEVER = (
    "pomona.train",
    "pomona.train.trainer",
    "pomona.train.loop",
    "pomona.tune",
    "ray.train",
    "ray.tune",
)


def imported_after(modules: list[str], watched: tuple[str, ...]) -> list[str]:
    """Which of ``watched`` a fresh interpreter has loaded after importing ``modules``."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {watched!r} if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    ("modules", "forbidden"),
    [
        (CORE, ("ray",)),
        (["pomona.evaluate"], ("matplotlib.pyplot",)),
        # Serving loads models and answers requests; it never needs the trainer or Tune.
        (["pomona.serving.app", "pomona.serving.control", "pomona.cli.serve"], SERVING_NEVER),
    ],
)
def test_import_boundaries(modules: list[str], forbidden: tuple[str, ...]) -> None:
    assert imported_after(modules, forbidden) == []
