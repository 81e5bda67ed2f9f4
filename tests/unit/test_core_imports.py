"""The core (data, models, train loop, evaluate, registry) must import without Ray."""

from __future__ import annotations

import subprocess
import sys

CORE = [
    "pomona.config",
    "pomona.data.discover",
    "pomona.data.images",
    "pomona.data.split",
    "pomona.data.shards",
    "pomona.data.ingest",
    "pomona.models",
    "pomona.train.loop",
    "pomona.evaluate",
    "pomona.registry",
]


def test_core_modules_do_not_import_ray() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {CORE!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"
