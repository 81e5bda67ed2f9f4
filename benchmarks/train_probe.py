"""Where the time of a pomona training epoch goes: one TorchTrainer run, variants round-robin.

``benchmarks/train.py --investigate`` uses this module. A single 2-worker ``TorchTrainer`` run
builds one model per variant (same seed) and trains them in turn, one epoch each, for a warm-up
round and ``rounds`` measured rounds (the order alternates every round), so every variant sees the
same Ray instance, the same worker processes and the same background load. Each epoch is timed on
rank 0 exactly as ``pomona.train.trainer._train_worker`` times it (all-reduced sample count over
rank 0's epoch time), and the time the training loop spent waiting for its next batch is recorded
next to it.

A variant changes one thing relative to pomona's training worker:

- ``data``: ``stream`` is pomona's path (the worker's streaming shard of ``read_split``, iterated
  with ``torch_batches``: a new Ray Data execution every epoch); ``materialized`` is the same
  iteration over a shard of ``read_split(...).materialize()``; ``local`` is this worker's half of
  the split read once with pyarrow into uint8 tensors (no Ray Data in the loop: the floor of what
  any loader can cost).
- ``threads``: torch intra-op threads per worker.
- ``prefetch``: ``prefetch_batches`` of ``iter_torch_batches`` (pomona uses 2).
- ``ddp``: keyword arguments of ``DistributedDataParallel`` (bucket size etc.).

Nothing in ``platform/`` is changed: the variants are built here from pomona's public pieces.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

VARIANT_KEYS = {"name", "data", "threads", "prefetch", "ddp"}


def _timed(batches: Iterator[dict[str, torch.Tensor]], waits: list[float]) -> Iterator[Any]:
    """Yield ``batches`` and record the seconds spent waiting for each one."""
    while True:
        started = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            return
        waits.append(time.perf_counter() - started)
        yield batch


def probe_worker(payload: dict[str, Any]) -> None:
    """The Ray Train worker: train every variant in turn and write rank 0's timings as JSON."""
    import pyarrow.parquet as pq
    import ray.train
    import ray.train.torch
    import torch.distributed as dist

    from pomona.data.manifest import Manifest
    from pomona.data.shards import image_array, shard_paths
    from pomona.data.tensors import to_model_input
    from pomona.models.zoo import build_model
    from pomona.train.config import TrainConfig
    from pomona.train.loop import build_optimizer, build_scheduler, train_one_epoch

    config = TrainConfig.model_validate(payload["config"])
    manifest = Manifest.model_validate(payload["manifest"])
    variants: list[dict[str, Any]] = payload["variants"]
    context = ray.train.get_context()
    world, rank = context.get_world_size(), context.get_world_rank()
    spec = manifest.preprocessing
    batch_size = config.worker_batch_size
    architecture = config.model.architecture
    shards = {
        "stream": ray.train.get_dataset_shard("train"),
        "materialized": ray.train.get_dataset_shard("train_materialized"),
    }

    table = pq.read_table(shard_paths(config.data, manifest, "train"), columns=["image", "label"])
    share = table.num_rows // world
    table = table.slice(rank * share, share)
    local_pixels = torch.from_numpy(image_array(table.column("image"), manifest.image_shape).copy())
    local_labels = torch.from_numpy(table.column("label").to_numpy().copy())

    def batches_of(variant: dict[str, Any], epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        if variant["data"] == "local":
            order = torch.randperm(share, generator=torch.Generator().manual_seed(epoch))
            for start in range(0, share, batch_size):
                index = order[start : start + batch_size]
                yield {
                    "image": to_model_input(local_pixels[index], spec),
                    "label": local_labels[index],
                }
            return
        # pomona.data.loader.torch_batches with prefetch_batches as a parameter.
        for batch in shards[variant["data"]].iter_torch_batches(
            batch_size=batch_size,
            dtypes={"image": torch.uint8, "label": torch.int64},
            device="cpu",
            local_shuffle_buffer_size=4 * batch_size,
            local_shuffle_seed=config.seed + epoch,
            prefetch_batches=variant["prefetch"],
        ):
            yield {"image": to_model_input(batch["image"], spec), "label": batch["label"]}

    steps_per_epoch = max(1, -(-share // batch_size))
    states = {}
    for variant in variants:
        torch.manual_seed(config.seed)
        model = build_model(architecture, manifest.num_classes, spec.channels)
        optimizer = build_optimizer(model, architecture, config)
        scheduler = build_scheduler(
            optimizer, config.schedule, payload["rounds"] + 1, steps_per_epoch
        )
        model = ray.train.torch.prepare_model(model, parallel_strategy_kwargs=variant["ddp"])
        states[variant["name"]] = (model, optimizer, scheduler)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    results: dict[str, list[dict[str, float]]] = {v["name"]: [] for v in variants}
    for round_number in range(payload["rounds"] + 1):
        order = variants if round_number % 2 == 0 else list(reversed(variants))
        for variant in order:
            model, optimizer, scheduler = states[variant["name"]]
            torch.set_num_threads(variant["threads"])
            waits: list[float] = []
            dist.barrier()
            started = time.perf_counter()
            stats = train_one_epoch(
                model,
                _timed(batches_of(variant, round_number), waits),
                optimizer,
                scheduler,
                loss_fn,
                "cpu",
            )
            count = torch.tensor([stats.count], dtype=torch.int64)
            dist.all_reduce(count)
            elapsed = time.perf_counter() - started
            results[variant["name"]].append(
                {
                    "round": round_number,
                    "samples": int(count),
                    "epoch_s": elapsed,
                    "first_batch_s": waits[0] if waits else float("nan"),
                    "data_wait_s": sum(waits),
                }
            )
    if rank == 0:
        Path(payload["result"]).write_text(json.dumps(results))


def run_probe(
    dataset_dir: Path,
    architecture: str,
    variants: list[dict[str, Any]],
    rounds: int,
    work: Path,
) -> dict[str, dict[str, float]]:
    """Run :func:`probe_worker` in a 2-worker TorchTrainer (Ray must be initialised).

    Returns, per variant, samples/s over the measured rounds and the mean per-epoch seconds spent
    waiting for data (total and first batch), as rank 0 saw them.
    """
    import ray
    from ray import cloudpickle
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pomona.data.loader import read_split
    from pomona.data.shards import read_manifest
    from pomona.train.config import ModelConfig, TrainConfig
    from pomona.train.trainer import auto_cpus_per_worker

    for variant in variants:
        assert set(variant) == VARIANT_KEYS, variant
    # The workers cannot import benchmarks/; ship this module's code with the function.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    manifest = read_manifest(dataset_dir)
    config = TrainConfig(
        data=str(dataset_dir),
        out=str(work / "unused"),
        model=ModelConfig(architecture=architecture),
        epochs=rounds + 1,
    )
    cpus = auto_cpus_per_worker(ray.cluster_resources().get("CPU", 1.0), config.num_workers)
    result_file = work / f"probe-{architecture}.json"
    trainer = TorchTrainer(
        probe_worker,
        train_loop_config={
            "config": config.model_dump(mode="json"),
            "manifest": manifest.model_dump(mode="json"),
            "variants": variants,
            "rounds": rounds,
            "result": str(result_file),
        },
        scaling_config=ScalingConfig(
            num_workers=config.num_workers, resources_per_worker={"CPU": cpus}
        ),
        datasets={
            "train": read_split(dataset_dir, "train", manifest=manifest),
            "train_materialized": read_split(dataset_dir, "train", manifest=manifest).materialize(),
        },
        run_config=RunConfig(name="probe", storage_path=str(work / "probe-storage")),
    )
    trainer.fit()
    raw = json.loads(result_file.read_text())
    summary = {}
    for name, epochs in raw.items():
        measured = [e for e in epochs if e["round"] > 0]
        summary[name] = {
            "samples_per_s": sum(e["samples"] for e in measured)
            / sum(e["epoch_s"] for e in measured),
            "epoch_s": sum(e["epoch_s"] for e in measured) / len(measured),
            "data_wait_s": sum(e["data_wait_s"] for e in measured) / len(measured),
            "first_batch_s": sum(e["first_batch_s"] for e in measured) / len(measured),
            "per_round_samples_per_s": [e["samples"] / e["epoch_s"] for e in measured],
        }
    return summary
