"""Import boundaries: the core imports no Ray, evaluation no pyplot (no GUI state), models no
registry, serving no training or Tune (imports point down)."""

from __future__ import annotations

import importlib.util
import json
import pkgutil
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
    "pomona.registry.resolve",
    "pomona.train.loop",
    "pomona.train.preflight",
    "pomona.evaluate",
    "pomona.evaluate.explain",
    "pomona.inference",
    "pomona.serving.config",
    "pomona.serving.plan",
    "pomona.serving.oip",
    "pomona.serving.schema",
    "pomona.evaluate.report",
    "pomona.plots",
    "pomona.registry",
    "pomona.cli.registry",
    "pomona.cli.evaluate",
]


def submodules(package: str) -> list[str]:
    """``package`` and every module in it, found without importing them."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations is not None
    found = pkgutil.iter_modules(spec.submodule_search_locations, prefix=f"{package}.")
    return [package, *sorted(module.name for module in found)]


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
        (["pomona.evaluate", "pomona.plots"], ("matplotlib.pyplot",)),
        # models stand below the registry: loading a model directory needs no registry.
        (submodules("pomona.models"), ("pomona.registry",)),
        # Serving loads models and answers requests; it never needs the trainer or Tune.
        (["pomona.serving.app", "pomona.serving.control"], SERVING_NEVER),
    ],
)
def test_import_boundaries(modules: list[str], forbidden: tuple[str, ...]) -> None:
    assert imported_after(modules, forbidden) == []
