"""The loader and ingest at scale: streaming, cached and ImageFolder epochs for 2k-100k images.

Run from the repository root (nice: the machine is shared)::

    nice -n 19 .venv/bin/python benchmarks/scale.py [--sizes 2000 20000] [--epochs 3]

For each size N, scikit-learn's digits are cycled to N images written as 256x256 JPEGs, each
with a random shift (up to 1/8 of the side) and Gaussian noise (so no two files are the same
and JPEG sizes look like photographs' more than flat digits'), in ``<label>/<n>.jpg`` folders.
Then, side by side on the same files:

a. ingest: ``pomona.data.ingest.ingest`` (all cores, 64x64x3, Parquet written) against the
   single-process PIL loop of ``ingest_loader.py``; one round each (at 100k a round is minutes).
b. epoch throughput over the train split, batch 64, via ``ingest_loader.bench_loaders``:
   pomona's streaming loader (``read_split`` + ``torch_batches``, what training does when the
   split does not fit a quarter of the object store), the same split cached
   (``read_split(cache=True)``) and torchvision ``ImageFolder`` + ``DataLoader(num_workers=2)``
   on the same train files; one warm-up epoch each, then alternating measured epochs.

Only ratios of runs made in the same invocation mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

# Shares ingest_loader's baselines and loaders (it also puts platform/ on sys.path and keeps
# Ray on loopback); only light imports here, ingest's spawned decoders re-import this module.
from ingest_loader import IMAGE_SIDE, SOURCE_SIDE, bench_loaders, pil_loop
from PIL import Image

from pomona.data.ingest import IngestConfig, ingest
from pomona.data.manifest import Preprocessing

MAX_SHIFT = SOURCE_SIDE // 8
NOISE_STD = 12.0


def write_noisy_digits(out: Path, count: int, seed: int = 0) -> int:
    """Write ``count`` digits as shifted, noisy 256x256 JPEGs under ``out/<label>/``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    bases = [
        np.asarray(
            Image.fromarray(p, mode="L").resize(
                (SOURCE_SIDE, SOURCE_SIDE), Image.Resampling.BICUBIC
            ),
            dtype=np.float32,
        )
        for p in pixels
    ]
    rng = np.random.default_rng(seed)
    for label in {int(t) for t in digits.target}:
        (out / str(label)).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        source = index % len(bases)
        dy, dx = rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=2)
        image = np.roll(bases[source], (int(dy), int(dx)), axis=(0, 1))
        image = image + rng.normal(0.0, NOISE_STD, image.shape)
        target = out / str(int(digits.target[source])) / f"{index:06d}.jpg"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), mode="L").save(target, quality=90)
    return count


def bench_size(count: int, work: Path, epochs: int) -> None:
    src = work / f"digits-{count}"
    started = time.perf_counter()
    write_noisy_digits(src, count)
    print(f"\n## {count} images (written in {time.perf_counter() - started:.0f} s)", flush=True)

    files = sorted(src.rglob("*.jpg"))
    started = time.perf_counter()
    pil_loop(files)
    pil_s = time.perf_counter() - started
    dataset_dir = work / f"dataset-{count}"
    spec = Preprocessing(height=IMAGE_SIDE, width=IMAGE_SIDE, channels=3)
    started = time.perf_counter()
    ingest(IngestConfig(src=src, out=dataset_dir, preprocessing=spec))
    ingest_s = time.perf_counter() - started
    print(
        f"ingest: pomona {count / ingest_s:.0f} images/s ({ingest_s:.1f} s), "
        f"PIL loop {count / pil_s:.0f} images/s ({pil_s:.1f} s), "
        f"ratio {pil_s / ingest_s:.2f}x; load {os.getloadavg()[0]:.1f}",
        flush=True,
    )

    lo = bench_loaders(src, dataset_dir, epochs)
    folder = lo["torchvision_jpeg_samples_per_s"]
    print(f"epochs over {int(lo['rows_per_epoch'])} train rows; load {os.getloadavg()[0]:.1f}")
    print("| loader | samples/s | ratio to ImageFolder | per epoch |")
    print("|---|---:|---:|---|")
    for name, label in (
        ("ray_parquet", "streaming (`read_split` + `torch_batches`)"),
        ("ray_parquet_materialized", "cached (`cache=True`)"),
        ("torchvision_jpeg", "ImageFolder + DataLoader(2 workers)"),
    ):
        rate = lo[f"{name}_samples_per_s"]
        per_epoch = ", ".join(f"{v:.0f}" for v in lo[f"{name}_epochs"])  # type: ignore[attr-defined]
        print(f"| {label} | {rate:.0f} | {rate / folder:.2f}x | {per_epoch} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 100000])
    parser.add_argument("--epochs", type=int, default=3, help="measured epochs per loader")
    args = parser.parse_args(argv)
    import torch

    print(
        f"date {datetime.now(UTC):%Y-%m-%d %H:%M UTC}; {os.cpu_count()} cores, CPU only; "
        f"torch {torch.__version__}; load average {os.getloadavg()[0]:.2f}"
    )
    for count in args.sizes:
        with tempfile.TemporaryDirectory(prefix="pomona-scale-") as tmp:
            bench_size(count, Path(tmp), args.epochs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
