"""Sweep benchmark: the same search space and trials with FIFO (full budget) and with ASHA.

    .venv/bin/python benchmarks/sweep.py [--trials 12] [--epochs 6] [--work DIR]
        [--model simple_cnn] [--image-size 32] [--seed 0]

On scikit-learn's digits (``--image-size`` square, 1 channel, written and ingested into
``--work``), one local Ray with all cores, 1 Ray Train worker per trial, pomona's default
concurrency and ASHA settings, ``--model`` trained from scratch (``simple_cnn`` by default: a
training epoch of well under a second, where a trial's fixed start-up shows most; a torchvision
network such as ``resnet18`` gives epochs of the length fine-tuning has). Prints a
Markdown table: best val error, trial-epochs and wall time of (a) FIFO to the whole epoch budget
and (b) ASHA (both sample the same trials: same searcher and seed), the wall time per trial-epoch
of each against one plain `pomona train` run (the same base settings) per epoch, and the seconds
per trial spent outside its training epochs (start-up, validation, checkpoints, shutdown). Goals
(issue 11): (b) within 1 point of (a)'s best error with at most 40% of its trial-epochs; sweep
wall time per trial-epoch at most 1.2x a `pomona train` epoch.

``--curves FILE`` also writes every FIFO trial's settings and val error per epoch as JSON: the
input for replaying ASHA settings without re-training (how the defaults were chosen).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

PLATFORM = str(Path(__file__).resolve().parents[1] / "platform")
sys.path.insert(0, PLATFORM)
# Ray's workers inherit the environment, not sys.path: they must import this checkout too.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [PLATFORM, os.environ.get("PYTHONPATH")]))


SPACE = {
    "learning_rate": "loguniform(0.005, 0.5)",
    "batch_size": "choice(32, 64)",
    "momentum": "uniform(0.5, 0.95)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--curves", type=Path, default=None, help="write FIFO curves here")
    parser.add_argument("--model", default="simple_cnn", help="architecture of every trial")
    parser.add_argument("--image-size", type=int, default=32, help="digits ingested at NxN")
    parser.add_argument("--seed", type=int, default=0, help="the sweeps' seed (which trials)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="pomona-sweep-bench-"))
    from pomona.cluster.runtime import ensure_ray

    ensure_ray()  # a local Ray of its own, with pomona's defaults
    import ray

    try:
        run(args, work)
    finally:
        ray.shutdown()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    """Ingest the digits into ``work`` (once), run both sweeps and one training run, print."""
    from pomona.config import validate
    from pomona.data.demo import write_digits
    from pomona.data.ingest import IngestConfig, ingest
    from pomona.data.manifest import Preprocessing
    from pomona.train.run_dir import read_metrics
    from pomona.train.trainer import train
    from pomona.tune.config import SweepConfig, trial_config
    from pomona.tune.sweep import run_sweep

    size = args.image_size
    images, dataset = work / f"images-{size}", work / f"dataset-{size}"
    if not dataset.exists():
        write_digits(images, layout="folders", size=size)
        spec = Preprocessing(height=size, width=size, channels=1)
        ingest(IngestConfig(src=images, out=dataset, preprocessing=spec, workers=2))

    rows = []
    for name, scheduler in (("(a) FIFO", {"name": "fifo"}), ("(b) ASHA", {"name": "asha"})):
        out = work / name.split()[1].lower()
        shutil.rmtree(out, ignore_errors=True)
        config = validate(
            SweepConfig,
            {
                "out": str(out),
                "train": {
                    "data": str(dataset),
                    "model": {"architecture": args.model},
                    "epochs": args.epochs,
                    "num_workers": 1,
                },
                "space": SPACE,
                "trials": args.trials,
                "scheduler": scheduler,
                "seed": args.seed,
            },
            "benchmark",
        )
        started = time.perf_counter()
        results = run_sweep(config)
        wall = time.perf_counter() - started
        epochs = sum(r.epochs for r in results)
        best = min(r.best_metric for r in results if r.best_metric is not None)
        trained = sum(row["epoch_time_s"] for r in results for row in read_metrics(Path(r.run_dir)))
        rows.append((name, best, epochs, wall, (wall - trained) / len(results)))
        if args.curves is not None and scheduler["name"] == "fifo":
            curves = [{"settings": r.settings, "val_error": r.curve} for r in results]
            args.curves.write_text(json.dumps(curves, indent=1))

    base = trial_config(
        config.train, {"learning_rate": 0.1, "batch_size": 32}, str(work / "single")
    )
    shutil.rmtree(work / "single", ignore_errors=True)
    started = time.perf_counter()
    metrics = train(base)
    single = time.perf_counter() - started
    per_epoch = single / args.epochs
    outside = single - sum(row["epoch_time_s"] for row in metrics)

    print(
        "| run | best val error | trial-epochs | wall s | s per trial-epoch | vs train epoch "
        "| s per trial outside epochs |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, best, epochs, wall, overhead in rows:
        print(
            f"| {name} | {best:.4f} | {epochs} | {wall:.0f} | {wall / epochs:.1f} | "
            f"{wall / epochs / per_epoch:.2f}x | {overhead:.1f} |"
        )
    print(
        f"| `pomona train` ({args.epochs} epochs) | | {args.epochs} | {single:.0f} | "
        f"{per_epoch:.1f} | 1x | {outside:.1f} |"
    )
    (_, fifo_best, fifo_epochs, _, _), (_, asha_best, asha_epochs, _, _) = rows
    print(
        f"\nASHA: {100 * (asha_best - fifo_best):+.1f} points of val error vs FIFO, "
        f"{asha_epochs / fifo_epochs:.0%} of its trial-epochs"
    )


if __name__ == "__main__":
    main()
