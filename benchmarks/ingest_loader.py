"""Ingest and epoch-loader throughput of pomona against plain PIL / torchvision baselines.

Run from the repository root::

    .venv/bin/python benchmarks/ingest_loader.py [--quick] [--footer-actors N]

Both comparisons run side by side in one process, on the same JPEG files (the 1,797 digits
written as 256x256 JPEGs), so that only their ratios are read (the machine is small and shared):

a. ingest: ``pomona.data.ingest.ingest`` (all cores, 64x64x3, Parquet written) against a
   single-process PIL loop (open, convert RGB, resize to 64x64, ``np.asarray``); pomona with
   ``workers=1`` (no process pool) is measured too. Rounds alternate the order; the median time
   of each is reported.
b. epoch throughput: the Ray Data Parquet loader (``read_split`` + ``torch_batches``, batch 64,
   over the train split through a ``DataIterator`` with the same local shuffle buffer the trainer
   uses), the same loader over the split cached once (``read_split(cache=True)``, as in
   training), and
   torchvision ``ImageFolder`` + ``DataLoader(num_workers=2)`` decoding and resizing the same
   train-split JPEGs every epoch. One warm-up epoch each, then the measured epochs alternate,
   each after a short pause outside the timer. Ray (2 CPUs) starts before any timed region.

``--footer-actors N`` sets ``RAY_DATA_PARQUET_FOOTER_NUM_ACTORS`` for this Ray instance: Ray
Data's Parquet listing starts that many footer-reading actors (default 32) on every execution,
that is on every epoch of the streaming loader.

All data lives in a temporary directory that is removed at the end; the Ray instance started
here (always a new local one on 127.0.0.1, never an existing cluster) is shut down.
"""

from __future__ import annotations

import argparse
import os
import platform as host
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Ray must stay on loopback and send no usage statistics: set before Ray is imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))
# Ray's worker processes import pomona too (the read tasks' stages): from this checkout, not from
# whichever checkout the venv has installed.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (sys.path[0], os.getenv("PYTHONPATH"))))

# Only light imports at module level: ingest's spawned decoders re-import this module as
# __mp_main__, and importing torch there would bill pomona for a cost the CLI does not have.
import numpy as np
from PIL import Image

from pomona.data.demo import write_digits
from pomona.data.ingest import IngestConfig, ingest
from pomona.data.manifest import Preprocessing
from pomona.data.shards import read_manifest, shard_paths

IMAGE_SIDE = 64
SOURCE_SIDE = 256
BATCH = 64
LOADER_WORKERS = 2
SETTLE_S = 2.0


def pil_loop(files: list[Path]) -> int:
    """The ingest baseline: decode, RGB, resize, to numpy; one process, no output written."""
    for path in files:
        with Image.open(path) as image:
            pixels = np.asarray(
                image.convert("RGB").resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BILINEAR)
            )
        assert pixels.shape == (IMAGE_SIDE, IMAGE_SIDE, 3)
    return len(files)


def bench_ingest(src: Path, work: Path, rounds: int) -> dict[str, float]:
    files = sorted(p for p in src.rglob("*.jpg"))
    spec = Preprocessing(height=IMAGE_SIDE, width=IMAGE_SIDE, channels=3)
    times: dict[str, list[float]] = {"pil": [], "pomona": [], "pomona_1": []}
    for n in range(rounds):
        # Alternate the order so that slow phases of the shared machine hit all of them.
        order = list(times) if n % 2 == 0 else list(reversed(times))
        for name in order:
            started = time.perf_counter()
            if name == "pil":
                pil_loop(files)
            elif name == "pomona":
                ingest(IngestConfig(src=src, out=work / f"ingest-{n}", preprocessing=spec))
            else:  # one worker: decoding in this process, no process pool to start
                out = work / f"ingest-1-{n}"
                ingest(IngestConfig(src=src, out=out, preprocessing=spec, workers=1))
            times[name].append(time.perf_counter() - started)
    result = {
        "files": float(len(files)),
        "workers": float(IngestConfig(src=src, out=work / "x").workers),
    }
    for name, values in times.items():
        result[f"{name}_s"] = statistics.median(values)
        result[f"{name}_images_per_s"] = len(files) / statistics.median(values)
        result[f"{name}_rounds_s"] = values  # type: ignore[assignment]
    return result


def _count_batches(batches: Iterable[dict[str, Any]]) -> int:
    import torch

    rows = 0
    for batch in batches:
        image = batch["image"]
        assert image.dtype == torch.float32 and image.shape[1:] == (3, IMAGE_SIDE, IMAGE_SIDE)
        rows += image.shape[0]
    return rows


def make_ray_epoch(dataset_dir: Path, materialize: bool = False) -> Callable[[int], int]:
    """One epoch of the pomona loader, iterated as a training worker does.

    ``materialize`` is ``read_split(..., cache=True)``, what training does when the split fits:
    the split is read into the object store once and every epoch iterates those blocks instead
    of re-reading the Parquet files.
    """
    from pomona.data.loader import read_split, torch_batches

    manifest = read_manifest(dataset_dir)
    dataset = read_split(dataset_dir, "train", manifest=manifest, cache=materialize)
    # The trainer hands a DataIterator (its dataset shard) to torch_batches; with a single
    # consumer the iterator of the whole split is the equivalent.
    iterator = dataset.iterator()
    spec = manifest.preprocessing

    def epoch(seed: int) -> int:
        return _count_batches(
            torch_batches(iterator, BATCH, spec, "cpu", shuffle_buffer=4 * BATCH, seed=seed)
        )

    return epoch


def make_torchvision_epoch(src: Path, dataset_dir: Path) -> Callable[[int], int]:
    """One epoch of ImageFolder + DataLoader over the same train-split JPEG files."""
    import pyarrow.parquet as pq
    import torch
    from torchvision import datasets, transforms

    manifest = read_manifest(dataset_dir)
    train_paths = set()
    for shard in shard_paths(dataset_dir, manifest, "train"):
        train_paths.update(pq.read_table(shard, columns=["path"]).column("path").to_pylist())
    wanted = {str((src / p).resolve()) for p in train_paths}
    spec = manifest.preprocessing
    transform = transforms.Compose(
        [
            # ImageFolder's loader converts to RGB; Resize(64) on a square image gives 64x64.
            transforms.Resize(IMAGE_SIDE),
            transforms.ToTensor(),
            transforms.Normalize(spec.mean, spec.std),
        ]
    )
    folder = datasets.ImageFolder(
        str(src), transform=transform, is_valid_file=lambda p: str(Path(p).resolve()) in wanted
    )
    assert len(folder) == manifest.splits["train"].rows, (len(folder), manifest.splits)

    def epoch(seed: int) -> int:
        loader = torch.utils.data.DataLoader(
            folder,
            batch_size=BATCH,
            shuffle=True,
            num_workers=LOADER_WORKERS,
            generator=torch.Generator().manual_seed(seed),
        )
        return _count_batches({"image": image, "label": label} for image, label in loader)

    return epoch


def bench_loaders(src: Path, dataset_dir: Path, epochs: int) -> dict[str, float]:
    import ray

    ray.init(
        address="local",
        num_cpus=LOADER_WORKERS,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        loaders = {
            "ray_parquet": make_ray_epoch(dataset_dir),
            "ray_parquet_materialized": make_ray_epoch(dataset_dir, materialize=True),
            "torchvision_jpeg": make_torchvision_epoch(src, dataset_dir),
        }
        for epoch in loaders.values():
            epoch(0)  # warm-up: worker start, first plan, page cache
        rows = {name: 0 for name in loaders}
        seconds = {name: 0.0 for name in loaders}
        per_epoch: dict[str, list[float]] = {name: [] for name in loaders}
        for n in range(1, epochs + 1):
            order = list(loaders) if n % 2 else list(reversed(loaders))
            for name in order:
                # Let processes that the previous epoch started in the background (Ray Data's
                # footer-reading actors) settle, so that they are not billed to this loader.
                time.sleep(SETTLE_S)
                started = time.perf_counter()
                count = loaders[name](n)
                elapsed = time.perf_counter() - started
                rows[name] += count
                seconds[name] += elapsed
                per_epoch[name].append(count / elapsed)
    finally:
        ray.shutdown()
    result: dict[str, float] = {}
    for name in loaders:
        result[f"{name}_samples_per_s"] = rows[name] / seconds[name]
        result[f"{name}_epochs"] = per_epoch[name]  # type: ignore[assignment]
        result["rows_per_epoch"] = rows[name] / epochs
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images, rounds and epochs")
    parser.add_argument(
        "--footer-actors",
        type=int,
        default=None,
        help="set RAY_DATA_PARQUET_FOOTER_NUM_ACTORS for this Ray instance (Ray's default: 32)",
    )
    args = parser.parse_args(argv)
    if args.footer_actors is not None:
        # Read by Ray Data's Parquet listing inside Ray workers, which inherit this environment.
        os.environ["RAY_DATA_PARQUET_FOOTER_NUM_ACTORS"] = str(args.footer_actors)
    import torch

    limit = 600 if args.quick else None
    rounds = 2 if args.quick else 3
    epochs = 2 if args.quick else 3

    print(
        f"date {datetime.now(UTC):%Y-%m-%d %H:%M UTC}; {host.machine()}, {os.cpu_count()} cores, "
        f"CPU only; torch {torch.__version__}; load average {os.getloadavg()[0]:.2f}; "
        f"RAY_DATA_PARQUET_FOOTER_NUM_ACTORS="
        f"{os.environ.get('RAY_DATA_PARQUET_FOOTER_NUM_ACTORS', 'unset (32)')}"
    )
    with tempfile.TemporaryDirectory(prefix="pomona-bench-") as tmp:
        work = Path(tmp)
        src = work / "digits"
        count = write_digits(src, size=SOURCE_SIDE, image_format="jpeg", limit=limit)
        print(f"wrote {count} {SOURCE_SIDE}x{SOURCE_SIDE} JPEG digits")

        ing = bench_ingest(src, work, rounds)
        ratio_ingest = ing["pomona_images_per_s"] / ing["pil_images_per_s"]
        print(f"\n## ingest ({int(ing['files'])} files -> 64x64x3; median of {rounds} rounds)")
        print("| method | time (s) | images/s |")
        print("|---|---:|---:|")
        print(
            f"| PIL loop, 1 process | {ing['pil_s']:.2f} | {ing['pil_images_per_s']:.0f} |\n"
            f"| pomona ingest, {int(ing['workers'])} processes (Parquet written) | "
            f"{ing['pomona_s']:.2f} | {ing['pomona_images_per_s']:.0f} |\n"
            f"| pomona ingest, workers=1 (in-process, Parquet written) | "
            f"{ing['pomona_1_s']:.2f} | {ing['pomona_1_images_per_s']:.0f} |"
        )
        print(f"ratio pomona/PIL: {ratio_ingest:.2f}x")
        print(
            "rounds (s): PIL "
            + ", ".join(f"{t:.2f}" for t in ing["pil_rounds_s"])  # type: ignore[attr-defined]
            + "; pomona "
            + ", ".join(f"{t:.2f}" for t in ing["pomona_rounds_s"])  # type: ignore[attr-defined]
            + "; pomona workers=1 "
            + ", ".join(f"{t:.2f}" for t in ing["pomona_1_rounds_s"])  # type: ignore[attr-defined]
        )

        dataset_dir = work / "ingest-0"
        lo = bench_loaders(src, dataset_dir, epochs)
        ratio_loader = lo["ray_parquet_samples_per_s"] / lo["torchvision_jpeg_samples_per_s"]
        print(
            f"\n## epoch throughput (train split, {int(lo['rows_per_epoch'])} rows, batch {BATCH},"
            f" {epochs} epochs after 1 warm-up)"
        )
        print("| loader | samples/s | per epoch |")
        print("|---|---:|---|")
        for name, label in (
            ("ray_parquet", "pomona Ray Data Parquet (read_split + torch_batches), as is"),
            ("ray_parquet_materialized", "same, cached once (`cache=True`, what training does)"),
            ("torchvision_jpeg", "ImageFolder + DataLoader(num_workers=2), JPEG decode"),
        ):
            epochs_text = ", ".join(f"{v:.0f}" for v in lo[f"{name}_epochs"])  # type: ignore[attr-defined]
            print(f"| {label} | {lo[f'{name}_samples_per_s']:.0f} | {epochs_text} |")
        ratio_materialized = (
            lo["ray_parquet_materialized_samples_per_s"] / lo["torchvision_jpeg_samples_per_s"]
        )
        print(f"ratio Parquet/JPEG, as is: {ratio_loader:.2f}x (goal >= 3x)")
        print(f"ratio Parquet/JPEG, materialized: {ratio_materialized:.2f}x (goal >= 3x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
