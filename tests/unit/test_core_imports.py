"""Import boundaries: the core imports no Ray, and evaluation imports no pyplot (no GUI state)."""

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
    "pomona.evaluate.report",
    "pomona.plots",
    "pomona.registry",
    "pomona.cli.registry",
    "pomona.cli.evaluate",
]


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
    [(CORE, ("ray",)), (["pomona.evaluate", "pomona.plots"], ("matplotlib.pyplot",))],
)
def test_import_boundaries(modules: list[str], forbidden: tuple[str, ...]) -> None:
    assert imported_after(modules, forbidden) == []
