"""Plain-torch training baselines for ``benchmarks/train.py``: no Ray anywhere.

Single process (``python benchmarks/torch_baseline.py ...``): the whole train split, preloaded in
memory as normalised float tensors, trained with ``--threads`` torch threads.

Under ``torchrun --nproc-per-node N`` (``WORLD_SIZE`` set): gloo DDP, each rank preloading its
own contiguous ``1/N`` of the train split (``N // world`` rows, as Ray Data's ``equal`` streaming
split gives a Ray Train worker) and training on ``batch_size // N`` rows per step.

Both use pomona's own model builder, optimizer, schedule and ``train_one_epoch`` (plain torch
functions), with the same ``TrainConfig`` defaults pomona trains with, so the work per step is the
same as in a pomona run and only the data path and the process layout differ. Epochs after
``--warmup`` are timed on rank 0 between barriers (with ``--gate``, each epoch first waits for its
turn, see ``epoch_gate.py``); ``samples/s`` is all ranks' samples over rank
0's epoch time, the way pomona computes ``samples_per_s``. The result is one JSON line written to
``--result``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from epoch_gate import wait_turn

from pomona.data.shards import image_array, read_manifest, shard_paths
from pomona.data.tensors import to_model_input
from pomona.models.zoo import build_model
from pomona.train.config import ModelConfig, TrainConfig
from pomona.train.loop import (
    build_optimizer,
    build_scheduler,
    seed_everything,
    train_one_epoch,
)


def load_rows(dataset_dir: str, rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's contiguous share of the train split, as normalised NCHW float32 tensors."""
    manifest = read_manifest(dataset_dir)
    table = pq.read_table(shard_paths(dataset_dir, manifest, "train"), columns=["image", "label"])
    pixels = image_array(table.column("image"), manifest.image_shape)
    labels = table.column("label").to_numpy()
    share = len(labels) // world
    rows = slice(rank * share, (rank + 1) * share)
    images = to_model_input(
        torch.from_numpy(np.ascontiguousarray(pixels[rows])), manifest.preprocessing
    )
    return images, torch.from_numpy(labels[rows].copy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--epochs", type=int, default=4, help="total epochs, warm-up included")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--bucket-cap-mb", type=float, default=None, help="DDP bucket size")
    parser.add_argument("--result", required=True, help="JSON file written by rank 0")
    parser.add_argument("--gate", default=None, help="epoch_gate directory (turn taking)")
    parser.add_argument("--tag", default="baseline", help="name of this run at the gate")
    args = parser.parse_args()

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    torch.set_num_threads(args.threads)
    if world > 1:
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=1800))

    manifest = read_manifest(args.data)
    config = TrainConfig(
        data=args.data,
        out="unused",
        model=ModelConfig(architecture=args.model),
        epochs=args.epochs,
        batch_size=args.batch_size,
        num_workers=world,
    )
    seed_everything(config.seed)
    images, labels = load_rows(args.data, rank, world)
    model = build_model(args.model, manifest.num_classes, manifest.preprocessing.channels)
    optimizer = build_optimizer(model, args.model, config)
    batch = config.worker_batch_size
    steps_per_epoch = max(1, -(-len(labels) // batch))
    scheduler = build_scheduler(optimizer, config.schedule, config.epochs, steps_per_epoch)
    if world > 1:
        kwargs = {} if args.bucket_cap_mb is None else {"bucket_cap_mb": args.bucket_cap_mb}
        model = torch.nn.parallel.DistributedDataParallel(model, **kwargs)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    timed_samples, timed_seconds, per_epoch = 0, 0.0, []
    for epoch in range(1, config.epochs + 1):
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(epoch))
        batches = (
            {"image": images[index], "label": labels[index]}
            for index in (order[i : i + batch] for i in range(0, len(labels), batch))
        )
        if args.gate is not None and rank == 0:
            wait_turn(args.gate, args.tag, epoch)
        if world > 1:
            dist.barrier()
        started = time.perf_counter()
        stats = train_one_epoch(model, batches, optimizer, scheduler, loss_fn, "cpu")
        count = torch.tensor([stats.count], dtype=torch.int64)
        if world > 1:
            dist.all_reduce(count)
        elapsed = time.perf_counter() - started
        per_epoch.append(int(count) / elapsed)
        if epoch > args.warmup:
            timed_samples += int(count)
            timed_seconds += elapsed

    if rank == 0:
        result = {
            "world": world,
            "threads": args.threads,
            "samples_per_epoch": int(count),
            "samples_per_s": timed_samples / timed_seconds,
            "per_epoch_samples_per_s": per_epoch,
        }
        Path(args.result).write_text(json.dumps(result) + "\n")
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
