"""Logging set-up: one handler, configured once, with the Ray Train rank in the prefix.

Library modules call ``logging.getLogger(__name__)``; only entrypoints (CLI, jobs) call
:func:`configure`.
"""

from __future__ import annotations

import logging
import os

_FORMAT = "%(asctime)s %(levelname)s %(rank)s%(name)s: %(message)s"


class _RankFilter(logging.Filter):
    """Adds ``[rank N] `` to records emitted inside a distributed worker (rank > 0 or world > 1)."""

    def filter(self, record: logging.LogRecord) -> bool:
        rank = os.environ.get("RANK")
        world = os.environ.get("WORLD_SIZE", "1")
        record.rank = f"[rank {rank}] " if rank is not None and world != "1" else ""
        return True


def configure(level: int | str = logging.INFO) -> None:
    """Install pomona's handler on the ``pomona`` logger; calling it again only sets the level."""
    logger = logging.getLogger("pomona")
    logger.setLevel(level)
    if not any(getattr(h, "_pomona", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler._pomona = True  # type: ignore[attr-defined]
        handler.addFilter(_RankFilter())
        handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
