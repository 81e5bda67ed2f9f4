"""Replay Ray Tune's asynchronous ASHA on recorded FIFO curves, one or more trials at a time.

    .venv/bin/python benchmarks/asha_replay.py CURVES.json [CURVES.json ...] [--orders 200]

``CURVES.json`` is what ``benchmarks/sweep.py --curves`` writes: every FIFO trial's val error
per epoch. For each file and each number of trials in flight (``--concurrent``, default 1 and
2), ASHA is replayed with Ray 2.60's own rule (``ray.tune.schedulers.async_hyperband._Bracket``)
on the trials in their sampled order and in ``--orders`` random orders: trials start as slots
free up, each after ``--startup-s``, and report every ``--epoch-s``. Prints a Markdown table:
ASHA's best against FIFO's best (points of val error) and the share of FIFO's trial-epochs it
spent. No training, no Ray cluster.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
from dataclasses import dataclass
from pathlib import Path

from ray.tune.schedulers import TrialScheduler
from ray.tune.schedulers.async_hyperband import _Bracket


@dataclass(frozen=True)
class _Trial:
    """What ``_Bracket`` reads of a trial."""

    trial_id: str


def replay(
    curves: list[list[float]],
    order: list[int],
    *,
    concurrent: int,
    grace_period: int = 1,
    reduction_factor: int = 4,
    startup_s: float = 8.0,
    epoch_s: float = 1.5,
) -> tuple[float, int]:
    """ASHA's best val error and the trial-epochs it ran, trials started in ``order``."""
    epochs = len(curves[0])
    bracket = _Bracket(grace_period, epochs, reduction_factor, 0)
    waiting = list(order)
    events: list[tuple[float, int, int]] = []  # (time, trial, epoch it reports)

    def start(now: float) -> None:
        heapq.heappush(events, (now + startup_s + epoch_s, waiting.pop(0), 1))

    for _ in range(min(concurrent, len(waiting))):
        start(0.0)
    best, spent = float("inf"), 0
    while events:
        now, trial, epoch = heapq.heappop(events)
        error = curves[trial][epoch - 1]
        best, spent = min(best, error), spent + 1
        # Tune's ASHA maximises: it negates a metric that is minimised.
        action = bracket.on_result(_Trial(str(trial)), epoch, -error)
        if action == TrialScheduler.STOP or epoch == epochs:
            if waiting:
                start(now)
        else:
            heapq.heappush(events, (now + epoch_s, trial, epoch + 1))
    return best, spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("curves", type=Path, nargs="+")
    parser.add_argument("--concurrent", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--startup-s", type=float, default=8.0)
    parser.add_argument("--epoch-s", type=float, default=1.5)
    args = parser.parse_args()

    print(
        "| curves | trials at a time | sampled order: vs FIFO's best, trial-epochs "
        f"| {args.orders} random orders: within 1 point, mean trial-epochs |"
    )
    print("|---|---:|---|---|")
    for path in args.curves:
        curves = [trial["val_error"] for trial in json.loads(path.read_text())]
        fifo_best = min(min(curve) for curve in curves)
        budget = sum(len(curve) for curve in curves)
        rng = random.Random(0)
        orders = [rng.sample(range(len(curves)), len(curves)) for _ in range(args.orders)]
        for concurrent in args.concurrent:
            timing = {"startup_s": args.startup_s, "epoch_s": args.epoch_s}
            best, spent = replay(curves, list(range(len(curves))), concurrent=concurrent, **timing)
            results = [replay(curves, order, concurrent=concurrent, **timing) for order in orders]
            within = sum(b - fifo_best <= 0.01 for b, _ in results) / len(results)
            mean_share = sum(s for _, s in results) / len(results) / budget
            print(
                f"| {path.name} | {concurrent} | {100 * (best - fifo_best):+.1f} points, "
                f"{spent / budget:.0%} | {within:.0%}, {mean_share:.0%} |"
            )


if __name__ == "__main__":
    main()
