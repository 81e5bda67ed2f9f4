"""Epoch-level turn taking between training runs that are alive at the same time.

The machine is shared and its background load swings within seconds, so runs measured one after
the other are not comparable. ``benchmarks/train.py`` therefore starts every method at once and
lets them train one epoch at a time in turn: before each epoch, rank 0 of a run announces that it
is ready (``ready-<tag>-<epoch>``) and waits for the driver's go (``go-<tag>-<epoch>``); the driver
gives the next go only when the previous run is ready for its following epoch (or has finished),
so no two runs ever compute at once and all of them see the same minute of background load. Both
files live in a private temporary directory. Waiting happens outside every timed region.
"""

from __future__ import annotations

import time
from pathlib import Path

POLL_S = 0.01


def wait_turn(gate_dir: str | Path, tag: str, epoch: int, timeout_s: float = 1800.0) -> None:
    """Announce readiness for ``epoch`` and block until the driver says go (rank 0 only)."""
    gate = Path(gate_dir)
    (gate / f"ready-{tag}-{epoch}").touch()
    go = gate / f"go-{tag}-{epoch}"
    deadline = time.monotonic() + timeout_s
    while not go.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no go for {tag} epoch {epoch} after {timeout_s}s")
        time.sleep(POLL_S)
