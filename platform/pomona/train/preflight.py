"""What ``pomona train`` checks on the driver before Ray starts.

A mistake found here costs the user nothing: no Ray start-up, no half-made run directory.
:func:`prepare_run` checks the run directory, verifies the checksums of the shards training
reads (:func:`verify_dataset`; a sweep verifies them once and each trial only checks that no
shard was written since), and checks the pretrained weights. The
pretrained weights are resolved to an absolute path (workers run in another working directory,
possibly on another machine), read, and loaded into the model the dataset needs, which also
decides whether the checkpoint's classifier head is kept. Weights named by a remote URI stay a
URI: the driver checks them through its local cache, and every worker fetches them itself
(:func:`local_weights`), on whichever node it runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from pomona.data.manifest import Manifest
from pomona.data.shards import MANIFEST_FILE, DatasetDir, open_dataset, shard_paths
from pomona.errors import ConfigError
from pomona.location import Location, as_location, is_uri
from pomona.models.artifact import read_card
from pomona.models.card import CARD_FILE, WEIGHTS_FILE, InitialWeights, ModelCard
from pomona.models.weights import (
    TORCHVISION_PREFIX,
    apply_pretrained,
    choose_head,
    load_state_dict_file,
    source_classes,
)
from pomona.models.zoo import build_model
from pomona.registry import Registry, resolve_model
from pomona.train.config import TrainConfig
from pomona.train.run_dir import check_run_dir, read_config

logger = logging.getLogger(__name__)

#: The splits a training run reads.
TRAIN_SPLITS = ("train", "val")


@dataclass(frozen=True)
class VerifiedDataset:
    """A dataset whose training shards matched their checksums, and how they looked then.

    Attributes:
        manifest: the dataset's manifest.
        sha256: sha256 of its ``manifest.json``.
        fingerprint: shard path -> (size, mtime in ns) of every shard of :data:`TRAIN_SPLITS`
            when they were verified; any write to a shard changes it.
    """

    manifest: Manifest
    sha256: str
    fingerprint: dict[str, tuple[int, int]]

    def unchanged(self, dataset_dir: DatasetDir) -> bool:
        """Whether ``dataset_dir`` still holds this manifest and no shard was written since."""
        manifest_file = as_location(dataset_dir) / MANIFEST_FILE
        return (
            manifest_file.is_file()
            and manifest_file.sha256() == self.sha256
            and _fingerprint(dataset_dir, self.manifest) == self.fingerprint
        )


def verify_dataset(
    dataset_dir: DatasetDir, verified: VerifiedDataset | None = None
) -> VerifiedDataset:
    """Verify the checksums of the shards training reads, unless ``verified`` already did and
    no shard was written since (a sweep verifies once, not in every trial).

    Raises:
        DatasetError: the dataset cannot be read, or a shard differs from its manifest.
    """
    if verified is not None and verified.unchanged(dataset_dir):
        return verified
    manifest = open_dataset(dataset_dir, TRAIN_SPLITS)
    return VerifiedDataset(
        manifest=manifest,
        sha256=(as_location(dataset_dir) / MANIFEST_FILE).sha256(),
        fingerprint=_fingerprint(dataset_dir, manifest),
    )


def _fingerprint(dataset_dir: DatasetDir, manifest: Manifest) -> dict[str, tuple[int, int]]:
    location = as_location(dataset_dir)
    paths = [path for split in TRAIN_SPLITS for path in shard_paths(location, manifest, split)]
    return {
        # A missing shard is absent from the fingerprint, so it differs from a verified one.
        info.path: (info.size, info.mtime_ns)
        for info in location.filesystem.get_file_info(paths)
        if info.type == pafs.FileType.File
    }


@dataclass(frozen=True)
class PreparedRun:
    """A training run whose inputs have been checked, ready for Ray Train.

    Attributes:
        config: the configuration, with ``model.weights`` resolved (see :func:`resolve_weights`).
        run_dir: the run directory (local, or a URI).
        resume: continue the run in ``run_dir`` from its last checkpoint.
        manifest: the dataset's manifest; the shards of :data:`TRAIN_SPLITS` match it.
        dataset_sha256: sha256 of the dataset's ``manifest.json``.
        initial_weights: the pretrained weights and head decision; None from scratch.
    """

    config: TrainConfig
    run_dir: Location
    resume: bool
    manifest: Manifest
    dataset_sha256: str
    initial_weights: InitialWeights | None


def prepare_run(
    config: TrainConfig,
    *,
    resume: bool = False,
    registry: Registry | None = None,
    dataset: VerifiedDataset | None = None,
) -> PreparedRun:
    """Check everything a user can fix, without Ray.

    ``registry`` is where a registry reference in ``model.weights`` is looked up (None: the
    default registry); ``dataset``, the dataset as verified earlier (see
    :func:`verify_dataset`).

    Raises:
        ConfigError: the run directory exists and ``resume`` is False, or it does not exist and
            ``resume`` is True, or the resume changes the run's network or dataset (see
            :func:`check_resumable`).
        DatasetError: the dataset cannot be read, or a shard differs from its manifest.
        CheckpointError, ModelNotFoundError: the pretrained weights cannot be used (see
            :func:`check_weights`).
    """
    run_dir = check_run_dir(config.out, resume=resume)
    config = resolve_weights(config, registry)
    dataset = verify_dataset(config.data, dataset)
    manifest = dataset.manifest
    # The best model a resumed run published so far (none before its first epoch).
    card = read_card(run_dir) if resume and (run_dir / CARD_FILE).is_file() else None
    if resume:
        check_resumable(run_dir, config, dataset.sha256, card)
    # A resumed run's weights were checked when it started; its checkpoints have replaced them.
    initial_weights = card.initial_weights if card is not None else check_weights(config, manifest)
    return PreparedRun(
        config=config,
        run_dir=run_dir,
        resume=resume,
        manifest=manifest,
        dataset_sha256=dataset.sha256,
        initial_weights=initial_weights,
    )


#: Model settings a resumed run keeps: its checkpoints hold that network and its optimizer's
#: parameter groups. (``weights`` and ``head`` only shape the first epoch.)
_FIXED_ON_RESUME = ("architecture", "freeze_backbone", "backbone_lr_scale")


def check_resumable(
    run_dir: Location, config: TrainConfig, dataset_sha256: str, card: ModelCard | None
) -> None:
    """Refuse to resume the run in ``run_dir`` with ``config`` where its checkpoints could not
    load: another network, or another dataset than the one its published model ``card`` records
    (by its manifest's sha256, so a moved copy of the same dataset still resumes; with no card
    yet, any dataset).

    Raises:
        ConfigError: a fixed model setting or the dataset differs from the run's.
    """
    stored = read_config(run_dir)
    changed = [
        f"model.{name} {getattr(stored.model, name)} -> {getattr(config.model, name)}"
        for name in _FIXED_ON_RESUME
        if getattr(stored.model, name) != getattr(config.model, name)
    ]
    if changed:
        raise ConfigError(
            f"cannot resume {run_dir} with {', '.join(changed)}: its checkpoints hold the "
            "run's network; resume without changing it, or start a new run with another --out"
        )
    trained_on = None if card is None else card.dataset_sha256
    if trained_on is not None and trained_on != dataset_sha256:
        raise ConfigError(
            f"cannot resume {run_dir} on {config.data}: the run was trained on another dataset "
            f"(manifest sha256 {trained_on[:12]}..., this one {dataset_sha256[:12]}...); pass "
            "the run's dataset as --data, or start a new run with another --out"
        )


def resolve_weights(config: TrainConfig, registry: Registry | None = None) -> TrainConfig:
    """``config`` with ``model.weights`` as the workers can open it.

    A weights file becomes an absolute path (relative to this process's working directory, not
    the workers'); a model (a run or model directory, one of its two files, or a registry
    reference such as ``name@alias`` looked up in ``registry``) becomes its local model directory,
    whose weights have been checked against their recorded sha256; a model at a remote URI is
    checked the same way but stays a URI; ``torchvision:`` names stay as they are.

    Raises:
        ModelNotFoundError: the weights are neither a path nor a registered model.
        CheckpointError: a model's weights no longer match their checksum.
    """
    weights = config.model.weights
    if weights is None or weights.startswith(TORCHVISION_PREFIX):
        return config
    if is_uri(weights):
        local = as_location(weights).local
        if local is None:
            resolve_model(weights, registry)
            return config
        weights = str(local)
    path = Path(weights).expanduser()
    if path.is_file() and path.name not in (WEIGHTS_FILE, CARD_FILE):
        resolved = path
    else:
        resolved = resolve_model(weights, registry)
    model = config.model.model_copy(update={"weights": str(resolved.resolve())})
    return config.model_copy(update={"model": model})


def check_weights(config: TrainConfig, manifest: Manifest) -> InitialWeights | None:
    """Load ``model.weights`` into the model for ``manifest`` and choose its head.

    ``config`` must come from :func:`resolve_weights`. The workers repeat the load with the same
    head decision, which this returns for them and for the model card.

    Returns:
        The weights' source, head decision and reason; None when training starts from scratch.

    Raises:
        CheckpointError: the weights are missing, unreadable (e.g. refused by
            ``torch.load(weights_only=True)``), corrupt, or do not fit the architecture, or a
            forced ``keep`` head does not fit the dataset's classes.
    """
    source = config.model.weights
    if source is None:
        return None
    local = local_weights(source)
    head, reason = choose_head(config.model.head, source_classes(local), manifest.classes)
    architecture = config.model.architecture
    model = build_model(architecture, manifest.num_classes, manifest.preprocessing.channels)
    apply_pretrained(model, architecture, load_state_dict_file(local), keep_head=head == "kept")
    logger.info("fine-tuning from %s with the %s head: %s", source, head, reason)
    return InitialWeights(source=source, head=head, reason=reason)


def local_weights(source: str) -> str:
    """Weights this process can open: a remote model URI becomes its verified local copy
    (downloaded once per node into the cache), anything else stays as it is.

    Raises:
        ModelNotFoundError, CheckpointError: see :func:`pomona.registry.resolve_model`.
    """
    if is_uri(source) and as_location(source).local is None:
        return str(resolve_model(source))
    return source
