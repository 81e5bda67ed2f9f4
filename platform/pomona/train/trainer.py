"""Ray Train wiring for ``pomona train``: data-parallel SGD over the Parquet dataset.

The driver checks the run's inputs (:mod:`pomona.train.preflight`), writes the config to the run
directory and starts a ``TorchTrainer`` whose process group listens on the node's address only
(:mod:`pomona.train.rendezvous`).
Each worker builds the model, reads its shard of the train and validation splits through Ray
Data, trains with DDP (gloo on CPU, nccl on GPU), all-reduces the epoch statistics and reports
them; rank 0 attaches a checkpoint (model files + optimizer/scheduler/RNG state). A callback in the
Ray Train controller keeps ``metrics.csv``, ``curves.png`` and the best model in the run
directory up to date. Worker failures restart the workers from the last checkpoint; re-running
with the same run directory (``--resume``) continues an interrupted run.

The run directory and the dataset may be URIs (:mod:`pomona.location`): Ray Train writes
checkpoints through the run's ``pyarrow`` filesystem, the controller's callback uploads the run's
own files after every epoch (:class:`pomona.train.run_dir.RunFiles`), and Ray Data's read tasks
read the shards through the dataset's filesystem on whichever node they run.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import ray.data
import ray.train
import torch
import torch.distributed as dist
from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.train.v2.api.callback import UserCallback

from pomona.data.augment import augment_batch, augmentation_generator
from pomona.data.loader import read_split, torch_batches
from pomona.data.manifest import Manifest
from pomona.errors import TrainingError
from pomona.location import Location
from pomona.models.artifact import save_model
from pomona.models.card import CARD_FILE, WEIGHTS_FILE, InitialWeights
from pomona.models.weights import apply_pretrained, load_state_dict_file
from pomona.models.zoo import build_model, freeze_backbone, unwrap
from pomona.registry import Registry
from pomona.train import run_dir as rundir
from pomona.train.config import TrainConfig
from pomona.train.loop import (
    Batch,
    BestSinceCheckpoint,
    EpochStats,
    batchnorm_layers,
    build_optimizer,
    build_scheduler,
    evaluate,
    keep_first,
    recalibrate_batchnorm,
    rng_state,
    seed_everything,
    set_rng_state,
    train_one_epoch,
)
from pomona.train.preflight import PreparedRun, VerifiedDataset, local_weights, prepare_run
from pomona.train.rendezvous import NodeAddressTorchConfig

logger = logging.getLogger(__name__)

_STATE_FILE = "train_state.pt"


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    registry: Registry | None = None,
    callbacks: Sequence[UserCallback] = (),
    dataset: VerifiedDataset | None = None,
) -> list[dict[str, float]]:
    """Check, then run (or resume) training; return the per-epoch metrics rows.

    Ray must already be initialised; to report mistakes before starting Ray, call
    :func:`pomona.train.preflight.prepare_run`, then Ray, then :func:`run`.

    Args:
        config: the validated training config.
        resume: continue the run in ``config.out`` from its last checkpoint.
        registry: where a registry reference in ``model.weights`` is looked up (None: the
            default registry).
        callbacks: more Ray Train callbacks for the controller (a sweep forwards each epoch's
            report to Ray Tune with one).
        dataset: the dataset as verified earlier; its shards' checksums are not computed again
            unless a shard was written since (see :func:`pomona.train.preflight.verify_dataset`).

    Raises:
        ConfigError, DatasetError, CheckpointError, ModelNotFoundError: see
            :func:`pomona.train.preflight.prepare_run`.
    """
    prepared = prepare_run(config, resume=resume, registry=registry, dataset=dataset)
    return run(prepared, callbacks=callbacks)


def run(prepared: PreparedRun, *, callbacks: Sequence[UserCallback] = ()) -> list[dict[str, float]]:
    """Run a checked training run on Ray Train and return the per-epoch metrics rows.

    A fresh run that fails before its first epoch leaves no run directory behind, so the same
    ``--out`` can be used again.
    """
    run_dir = prepared.run_dir
    existed = run_dir.is_dir()
    rundir.write_config(run_dir, prepared.config)
    try:
        _fit(prepared, callbacks)
    except BaseException:
        if not prepared.resume:
            rundir.discard_if_unstarted(run_dir, keep_directory=existed)
        raise
    return rundir.read_metrics(run_dir)


def _fit(prepared: PreparedRun, callbacks: Sequence[UserCallback]) -> None:
    config, manifest, initial_weights = prepared.config, prepared.manifest, prepared.initial_weights
    cluster_cpus = ray.cluster_resources().get("CPU", 1.0)
    cpus_per_worker = config.cpus_per_worker or auto_cpus_per_worker(
        cluster_cpus, config.num_workers
    )
    datasets = {
        "train": read_split(
            config.data,
            "train",
            manifest=manifest,
            cache=_fits_in_object_store(manifest, "train"),
        ),
        "val": read_split(
            config.data, "val", manifest=manifest, cache=_fits_in_object_store(manifest, "val")
        ),
    }
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={
            "config": config.model_dump(mode="json"),
            "manifest": manifest.model_dump(mode="json"),
            "dataset_sha256": prepared.dataset_sha256,
            "initial_weights": None
            if initial_weights is None
            else initial_weights.model_dump(mode="json"),
            "default_threads": default_threads(cluster_cpus, config.num_workers),
        },
        torch_config=NodeAddressTorchConfig(),
        scaling_config=ScalingConfig(
            num_workers=config.num_workers,
            use_gpu=config.use_gpu,
            resources_per_worker={"CPU": cpus_per_worker},
        ),
        dataset_config=_data_config(config.num_workers, datasets),
        datasets=datasets,
        run_config=RunConfig(
            name=rundir.CHECKPOINTS,
            storage_path=prepared.run_dir.path,
            storage_filesystem=prepared.run_dir.filesystem,
            failure_config=FailureConfig(max_failures=config.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=config.checkpoint.keep),
            callbacks=[RunDirectoryCallback(prepared.run_dir), *callbacks],
        ),
    )
    trainer.fit()


def _data_config(num_workers: int, datasets: dict[str, ray.data.Dataset]) -> DataConfig:
    """Split the datasets between several workers; a single worker reads them whole.

    A split dataset is served through a ``SplitCoordinator`` actor per dataset: for one worker,
    two more processes to start per run (and per sweep trial) that only pass blocks on.
    Unsplit, the worker runs the (cached) dataset's execution itself.

    Each dataset keeps its own execution options (Ray Train would otherwise replace them with
    the driver's), among them the shards' order that :func:`pomona.data.loader.read_split`
    sets: the seeded shuffle, and with it the whole run, then repeats with the same seed.
    """
    return DataConfig(
        datasets_to_split="all" if num_workers > 1 else [],
        execution_options={
            name: dataset.context.execution_options for name, dataset in datasets.items()
        },
    )


def default_threads(cluster_cpus: float, num_workers: int) -> int:
    """Torch threads per worker when unset: the cluster's cores shared evenly (at least 1).

    One worker on two cores runs two threads (measured 1.02x a plain 2-thread loop on resnet18);
    two workers run one each (two threads each halved their speed).
    """
    return max(1, int(cluster_cpus) // num_workers)


def _fits_in_object_store(manifest: Manifest, split: str) -> bool:
    """Whether a split's pixels take at most a quarter of Ray's object store (then it is cached)."""
    size = manifest.splits[split].rows * math.prod(manifest.image_shape)
    return size <= ray.cluster_resources().get("object_store_memory", 0.0) / 4


def auto_cpus_per_worker(cluster_cpus: float, num_workers: int) -> float:
    """CPUs each worker reserves so that one CPU stays free for Ray Data's read tasks.

    Without a free CPU the workers wait forever for batches that no task can be scheduled to
    read. Reservations are logical: a worker still runs ``threads_per_worker`` torch threads.
    """
    spare = max(cluster_cpus - 1.0, 0.5)
    return round(min(1.0, spare / num_workers), 3)


class RunDirectoryCallback(UserCallback):
    """Runs in the Ray Train controller: after each report, record the epoch's metrics, redraw
    the curves and publish the checkpoint's model (or the better model of an earlier epoch
    that came with it, see :class:`BestSinceCheckpoint`) if it has the best validation error
    so far; then upload what changed when the run directory is remote."""

    def __init__(self, run_dir: Location) -> None:
        self.files = rundir.RunFiles(run_dir)

    def after_report(
        self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any
    ) -> None:
        from pomona.plots import plot_curves

        run_dir = self.files.directory()
        row = metrics[0]
        rows = rundir.record_epoch(run_dir, row)
        plot_curves(rows, run_dir / rundir.CURVES_FILE)
        changed = [rundir.METRICS_FILE, rundir.CURVES_FILE]
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                if rundir.publish_best(Path(directory), run_dir):
                    changed += [WEIGHTS_FILE, CARD_FILE]
        self.files.sync(changed)
        logger.info(
            "epoch %d: train loss %.4f error %.4f | val loss %.4f error %.4f | %.0f samples/s",
            row["epoch"],
            row["train_loss"],
            row["train_error"],
            row["val_loss"],
            row["val_error"],
            row["samples_per_s"],
        )


def _train_worker(payload: dict[str, Any]) -> None:
    """The per-worker training loop (runs in every Ray Train worker)."""
    config = TrainConfig.model_validate(payload["config"])
    manifest = Manifest.model_validate(payload["manifest"])
    context = ray.train.get_context()
    world = context.get_world_size()
    torch.set_num_threads(config.threads_per_worker or payload["default_threads"])
    seed_everything(config.seed)
    device = ray.train.torch.get_device()
    architecture = config.model.architecture

    model = build_model(architecture, manifest.num_classes, manifest.preprocessing.channels)
    checkpoint = ray.train.get_checkpoint()
    initial = (
        None
        if payload["initial_weights"] is None
        else InitialWeights.model_validate(payload["initial_weights"])
    )
    if initial is not None and checkpoint is None:
        state = load_state_dict_file(local_weights(initial.source))
        report = apply_pretrained(model, architecture, state, keep_head=initial.head == "kept")
        logger.info("pretrained weights from %s: %s", initial.source, report)
    if config.model.freeze_backbone:
        freeze_backbone(model, architecture)
    optimizer = build_optimizer(model, architecture, config)
    train_rows = manifest.splits["train"].rows // world
    steps_per_epoch = max(1, math.ceil(train_rows / config.worker_batch_size))
    scheduler = build_scheduler(optimizer, config.schedule, config.epochs, steps_per_epoch)
    model = ray.train.torch.prepare_model(model)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    start_epoch, attempt = 1, 1
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = torch.load(Path(directory) / _STATE_FILE, map_location="cpu", weights_only=True)
        unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        start_epoch, attempt = state["epoch"] + 1, state["attempt"] + 1
        logger.info("resumed from the checkpoint of epoch %d", state["epoch"])

    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    spec = manifest.preprocessing
    best = BestSinceCheckpoint()
    rank = context.get_world_rank()

    def save(directory: Path, network: torch.nn.Module, metrics: dict[str, float]) -> None:
        save_model(
            directory,
            network,
            architecture=architecture,
            classes=manifest.classes,
            preprocessing=spec,
            metrics=metrics,
            training=payload["config"],
            dataset_sha256=payload["dataset_sha256"],
            initial_weights=initial,
        )

    for epoch in range(start_epoch, config.epochs + 1):
        started = time.perf_counter()
        kept: list[Batch] = []
        batches = keep_first(
            torch_batches(
                train_shard,
                config.worker_batch_size,
                spec,
                device,
                shuffle_buffer=4 * config.worker_batch_size,
                seed=config.seed + epoch,
                augment=partial(
                    augment_batch,
                    augmentation=config.augment,
                    generator=augmentation_generator(config.seed, epoch, rank),
                ),
            ),
            config.precise_bn_samples,
            kept,
        )
        train_stats = _all_reduce(
            train_one_epoch(model, batches, optimizer, scheduler, loss_fn, device), device
        )
        if not math.isfinite(train_stats.loss):
            # Diverged: every later epoch would train on NaN weights and report nonsense.
            raise TrainingError(
                f"epoch {epoch}: the training loss is {train_stats.loss}; lower learning_rate "
                f"(it is {config.learning_rate:g})"
            )
        elapsed = time.perf_counter() - started
        if config.precise_bn_samples and recalibrate_batchnorm(unwrap(model), kept, device):
            _average_batchnorm(unwrap(model))
        kept.clear()
        val_batches = torch_batches(val_shard, config.worker_batch_size, spec, device)
        val_stats = _all_reduce(evaluate(model, val_batches, loss_fn, device), device)
        metrics = {
            "epoch": epoch,
            "train_loss": train_stats.loss,
            "train_error": train_stats.error,
            "val_loss": val_stats.loss,
            "val_error": val_stats.error,
            "lr": optimizer.param_groups[-1]["lr"],
            "samples_per_s": train_stats.count / elapsed,
            "epoch_time_s": elapsed,
            "attempt": attempt,
        }
        due = epoch % config.checkpoint.frequency == 0 or epoch == config.epochs
        if rank == 0:
            best.update(model, metrics, checkpointed=due)
        if due and rank == 0:
            with tempfile.TemporaryDirectory() as directory:
                save(Path(directory), unwrap(model), metrics)
                if (earlier := best.take()) is not None:
                    save(Path(directory) / rundir.BEST_DIR, *earlier)
                torch.save(
                    {
                        "model": unwrap(model).state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "rng": rng_state(),
                        "epoch": epoch,
                        "attempt": attempt,
                    },
                    Path(directory) / _STATE_FILE,
                )
                ray.train.report(
                    metrics,
                    checkpoint=ray.train.Checkpoint.from_directory(directory),
                    checkpoint_dir_name=f"epoch-{epoch:04d}",
                )
        else:
            ray.train.report(metrics)


def _average_batchnorm(model: torch.nn.Module) -> None:
    """Average BatchNorm running statistics over all workers (a no-op for a single worker)."""
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return
    buffers = [b for norm in batchnorm_layers(model) for b in (norm.running_mean, norm.running_var)]
    if not buffers:
        return
    flat = torch.cat([b.flatten() for b in buffers])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for buffer, values in zip(buffers, flat.split([b.numel() for b in buffers]), strict=True):
        buffer.copy_(values.view_as(buffer))


def _all_reduce(stats: EpochStats, device: torch.device) -> EpochStats:
    """Sum an epoch's statistics over all workers (a no-op for a single worker)."""
    if not dist.is_available() or not dist.is_initialized():
        return stats
    tensor = stats.to_tensor(device)
    dist.all_reduce(tensor)
    return EpochStats.from_tensor(tensor.cpu())
