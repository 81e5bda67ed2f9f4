"""Live trial status: a Ray Tune callback on the driver writes ``SWEEP/progress.json``.

The CLI's live table polls that file (as ``pomona train``'s bar polls ``metrics.csv``), so no
terminal object crosses into Tune, whose state, callbacks included, is pickled for resume.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from ray.tune import Callback

from pomona.config import StrictModel
from pomona.storage import atomic_write_text

PROGRESS_FILE = "progress.json"


class TrialStatus(StrictModel):
    """One trial as the live table shows it.

    Attributes:
        trial: Tune's trial id (also the name of its run directory).
        settings: the sampled training settings (dotted keys).
        status: Tune's status: ``PENDING``, ``RUNNING``, ``TERMINATED``, ``ERROR`` or ``PAUSED``.
        epoch: epochs reported so far (0 before the first).
        metric: the sweep's metric at the last reported epoch (None before the first).
    """

    trial: str
    settings: dict[str, Any]
    status: str
    epoch: int = 0
    metric: float | None = None


_STATUSES = TypeAdapter(list[TrialStatus])


class ProgressFileCallback(Callback):
    """Rewrites ``progress.json`` (atomically) whenever a trial starts, reports, ends or fails."""

    def __init__(self, sweep_dir: str, metric: str) -> None:
        self.path = str(Path(sweep_dir) / PROGRESS_FILE)
        self.metric = metric
        self._last: dict[str, dict[str, Any]] = {}

    def _write(self, trials: list[Any]) -> None:
        statuses = []
        for trial in trials:
            last = self._last.get(trial.trial_id) or trial.last_result or {}
            value = last.get(self.metric)
            statuses.append(
                TrialStatus(
                    trial=trial.trial_id,
                    settings=dict(trial.config),
                    status=trial.status,
                    epoch=int(last.get("epoch", 0)),
                    metric=float(value) if value is not None and math.isfinite(value) else None,
                )
            )
        atomic_write_text(self.path, _STATUSES.dump_json(statuses, indent=1).decode())

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Tune hook: a trial started."""
        self._write(trials)

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict, **info: Any
    ) -> None:
        """Tune hook: a trial reported an epoch (Tune updates ``last_result`` only after this)."""
        self._last[trial.trial_id] = result
        self._write(trials)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Tune hook: a trial finished or was stopped by the scheduler."""
        self._write(trials)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Tune hook: a trial failed."""
        self._write(trials)


def read_progress(sweep_dir: Path) -> list[TrialStatus]:
    """The trials in ``progress.json``; [] before the first trial starts."""
    path = Path(sweep_dir) / PROGRESS_FILE
    if not path.is_file():
        return []
    return _STATUSES.validate_json(path.read_text())
