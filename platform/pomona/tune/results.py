"""A finished sweep's outcome: one row per trial, ``results.csv``, and the ``best`` link.

A trial's epochs and metrics come from its own run directory (``metrics.csv``, written by the
trainer), so they are the same whether the trial ran in this driver or in one that was killed
before a resume; Tune supplies only the settings and whether the trial failed.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from pomona.config import StrictModel
from pomona.models.card import CARD_FILE
from pomona.storage import atomic_write_text
from pomona.train.run_dir import read_metrics
from pomona.tune.config import SweepConfig

RESULTS_FILE = "results.csv"
BEST_LINK = "best"
_ERROR_MAX_CHARS = 300


class TrialResult(StrictModel):
    """One trial of a sweep.

    Attributes:
        trial: Tune's trial id, also the name of its run directory.
        settings: the trial's sampled training settings (dotted keys).
        status: ``completed`` (all epochs), ``stopped`` (early, by the scheduler) or ``failed``.
        epochs: epochs the trial ran.
        best_metric: the best value of the sweep's metric over those epochs (None if none ran).
        best_epoch: the epoch that reached it.
        error: for a failed trial, the error in one line.
        run_dir: the trial's run directory.
        curve: the sweep's metric for each epoch run, in order.
    """

    trial: str
    settings: dict[str, Any]
    status: Literal["completed", "stopped", "failed"]
    epochs: int
    best_metric: float | None = None
    best_epoch: int | None = None
    error: str | None = None
    run_dir: str
    curve: list[float] = Field(default_factory=list)


def collect_results(grid: Any, config: SweepConfig, trials_dir: Path) -> list[TrialResult]:
    """One :class:`TrialResult` per trial of a Tune ``ResultGrid``."""
    results = []
    for result in grid:
        trial = Path(result.path).name
        run_dir = trials_dir / trial
        rows = read_metrics(run_dir)
        curve = [row[config.metric] for row in rows]
        epochs = [int(row["epoch"]) for row in rows]
        finite = [(v, e) for v, e in zip(curve, epochs, strict=True) if math.isfinite(v)]
        best = (min if config.mode == "min" else max)(finite, default=(None, None))
        if result.error is not None:
            status = "failed"
        elif len(rows) >= config.train.epochs:
            status = "completed"
        else:
            status = "stopped"
        results.append(
            TrialResult(
                trial=trial,
                settings={key: result.config[key] for key in config.space if key in result.config},
                status=status,
                epochs=len(rows),
                best_metric=best[0],
                best_epoch=best[1],
                error=error_line(result.error) if result.error is not None else None,
                run_dir=str(run_dir),
                curve=curve,
            )
        )
    return results


def error_line(error: BaseException) -> str:
    """The root cause of a trial's failure in one line: the innermost error Ray wrapped."""
    while True:
        inner = getattr(error, "cause", None) or error.__cause__
        failures = getattr(error, "worker_failures", None)
        if failures:
            inner = next(iter(failures.values()))
        if not isinstance(inner, BaseException) or inner is error:
            break
        error = inner
    text = " ".join(str(error).split()) or type(error).__name__
    line = f"{type(error).__name__}: {text}"
    return line if len(line) <= _ERROR_MAX_CHARS else line[: _ERROR_MAX_CHARS - 1] + "…"


def best_trial(results: Sequence[TrialResult], mode: str) -> TrialResult | None:
    """The trial with the best metric among those that did not fail and saved a model."""
    candidates = [
        r
        for r in results
        if r.status != "failed"
        and r.best_metric is not None
        and (Path(r.run_dir) / CARD_FILE).is_file()
    ]
    pick = min if mode == "min" else max
    return pick(candidates, key=lambda r: r.best_metric, default=None)


def write_results_csv(path: Path, config: SweepConfig, results: Sequence[TrialResult]) -> None:
    """Write ``results.csv``: trial, one column per setting, epochs, best metric, status."""
    metric = f"best_{config.metric}"
    columns = ["trial", *config.space, "epochs", metric, "best_epoch", "status", "error", "run_dir"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow(
            {
                "trial": r.trial,
                **r.settings,
                "epochs": r.epochs,
                metric: "" if r.best_metric is None else f"{r.best_metric:.6g}",
                "best_epoch": r.best_epoch or "",
                "status": r.status,
                "error": r.error or "",
                "run_dir": r.run_dir,
            }
        )
    atomic_write_text(path, buffer.getvalue())


def link_best(sweep_dir: Path, best: TrialResult) -> Path:
    """Point ``SWEEP/best`` at the best trial's run directory (relative link, atomic swap)."""
    link = sweep_dir / BEST_LINK
    tmp = sweep_dir / f".{BEST_LINK}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(best.run_dir, sweep_dir), tmp)
    tmp.replace(link)
    return link
