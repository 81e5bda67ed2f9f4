"""Running the ``pomona`` CLI in a process of its own, as a user would."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pomona


def cli_command(*args: object) -> list[str]:
    """The argv that runs ``pomona ARGS`` with this interpreter and this checkout's package."""
    return [sys.executable, "-c", "from pomona.cli import main; main()", *map(str, args)]


def cli_env() -> dict[str, str]:
    """This environment with this checkout's package importable and no ``RAY_ADDRESS``."""
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(Path(pomona.__file__).resolve().parents[1])
    return env
