"""The evaluation package stays free of Ray and of pyplot's global state."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PLATFORM = Path(__file__).resolve().parents[3] / "platform"


def test_evaluate_imports_neither_ray_nor_pyplot() -> None:
    code = (
        "import sys, pomona.evaluate; "
        "bad = sorted(m for m in ('ray', 'matplotlib.pyplot') if m in sys.modules); "
        "assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(PLATFORM)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
