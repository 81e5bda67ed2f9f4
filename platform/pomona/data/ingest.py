"""``pomona ingest``: a labelled image folder to a validated, preprocessed, split Parquet dataset.

Decoding runs in a process pool, one chunk of files per task. Each task writes the chunk's pixels
to a staging ``.npy`` file and returns only small per-file records, so memory stays bounded by the
chunk and shard sizes however large the folder is. The split is decided once every file has been
validated; shards are then assembled from memory-mapped staging files. Everything is written into
a temporary sibling of OUT that is renamed into place at the end. One ingest writes an OUT at a
time (a lock that dies with its process); it first removes what killed ingests of the same OUT
left behind, and the decoding workers exit when their parent dies, however it dies.

An OUT in an object store (``s3://``, ``gs://``) has neither renames nor locks: the dataset is
built in a local temporary directory exactly as above, then uploaded with ``manifest.json`` last
(after deleting the old manifest, then the old files, when overwriting). Readers therefore see a
complete dataset or "not a dataset", never a partial one taken for complete; a killed upload
leaves shards without a manifest, which the next ingest of OUT replaces. Two ingests of the same
remote OUT at once are not prevented.
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from pydantic import Field, PositiveInt

from pomona.config import StrictModel
from pomona.data import images
from pomona.data.discover import Discovery, LabelFrom, SourceFile, discover
from pomona.data.manifest import SPLITS, Manifest, Preprocessing, SplitFractions, SplitInfo
from pomona.data.shards import MANIFEST_FILE, REJECTED_FILE, write_manifest, write_shard
from pomona.data.split import assign_splits
from pomona.errors import DatasetError
from pomona.location import as_location, replaceable
from pomona.storage import (
    LockedError,
    atomic_directory,
    exclusive_writer,
    remove_stale_partials,
    sha256_bytes,
)

logger = logging.getLogger(__name__)

_CHUNK_FILES = 64
_PARENT_POLL_S = 0.5
_STAGING = ".staging"

#: Called after each chunk with (files done, files rejected so far, files total).
ProgressCallback = Callable[[int, int, int], None]


class IngestConfig(StrictModel):
    """Options of ``pomona ingest``.

    Attributes:
        src: the labelled image folder.
        out: the dataset directory to create: a local path or a URI (``file://``, ``s3://``,
            ``gs://``, see :func:`pomona.location.as_location`).
        preprocessing: target size, channels, resize mode and normalisation stats.
        split: train/val/test fractions.
        seed: seed of the split and of the row order in shards.
        shard_rows: rows per Parquet shard.
        label_from: ``folder``, ``prefix`` or ``auto``.
        workers: decoding processes (default: all cores).
        max_pixels: images with more pixels are rejected before decoding.
        overwrite: replace an existing dataset at ``out``.
    """

    src: Path
    out: str | Path
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    split: SplitFractions = Field(default_factory=SplitFractions)
    seed: int = 0
    shard_rows: PositiveInt = 1024
    label_from: LabelFrom = "auto"
    workers: PositiveInt = Field(default_factory=lambda: os.cpu_count() or 1)
    max_pixels: PositiveInt = images.DEFAULT_MAX_PIXELS
    overwrite: bool = False


@dataclass(frozen=True)
class _Decoded:
    """Outcome for one file: a staged row (sha256 set) or a rejection reason."""

    sha256: str | None
    reason: str | None
    staging_file: str | None = None
    staging_row: int = -1


def ingest(config: IngestConfig, progress: ProgressCallback | None = None) -> Manifest:
    """Ingest ``config.src`` into ``config.out`` and return the manifest written there.

    Raises:
        ConfigError: OUT is a URI that cannot be opened.
        DatasetError: bad source or output location, fewer than two classes, a class too small
            to split, OUT exists without ``overwrite``, or another ingest is writing OUT.
    """
    src = config.src.resolve()
    target = as_location(config.out)
    out = target.local
    if out is not None:
        out = out.resolve()
        if out == src or out.is_relative_to(src):
            raise DatasetError(
                f"output {out} is inside the source folder {src}; choose OUT elsewhere"
            )
        if src.is_relative_to(out):
            raise DatasetError(
                f"the source folder {src} is inside the output {out}, which ingest replaces; "
                "choose OUT elsewhere"
            )
    if target.exists() and not config.overwrite:
        raise DatasetError(f"{target} already exists; pass --overwrite to replace it")
    if not replaceable(target, MANIFEST_FILE):
        raise DatasetError(
            f"{target} exists and is not a pomona dataset (no {MANIFEST_FILE}); --overwrite "
            "replaces only a dataset: choose another OUT"
        )
    discovery = discover(src, config.label_from)
    logger.info(
        "found %d files under %s (labels from %s), %d ignored as OS or tool litter",
        discovery.found,
        src,
        discovery.layout,
        discovery.ignored,
    )
    if out is None:
        with tempfile.TemporaryDirectory(prefix="pomona-ingest-") as staging:
            built = Path(staging) / "dataset"
            manifest = _ingest_into(built, src, discovery, config, progress)
            target.publish_tree(built, last=MANIFEST_FILE)
    else:
        try:
            with exclusive_writer(out):
                remove_stale_partials(out)
                manifest = _ingest_into(out, src, discovery, config, progress)
        except LockedError:
            raise DatasetError(
                f"another pomona ingest is writing {out} now; wait for it or choose another OUT"
            ) from None
    logger.info(
        "ingested %d images, rejected %d, into %s", manifest.ingested, manifest.rejected, target
    )
    return manifest


def _ingest_into(
    out: Path,
    src: Path,
    discovery: Discovery,
    config: IngestConfig,
    progress: ProgressCallback | None,
) -> Manifest:
    layout, files = discovery.layout, discovery.files
    with atomic_directory(out, overwrite=config.overwrite) as tmp:
        staging = tmp / _STAGING
        staging.mkdir()
        decoded = _decode_all(layout, src, files, config, staging, progress)
        accepted = [i for i, d in enumerate(decoded) if d.sha256 is not None]
        classes = sorted({files[i].label for i in accepted})  # type: ignore[type-var]
        if len(classes) < 2:
            raise DatasetError(
                f"a classifier needs at least 2 classes; {src} gave {len(classes)} valid "
                f"class(es) {classes} from {len(accepted)} valid images "
                f"(labels from {layout}; see --label-from){_rejections(decoded)}"
            )
        labels = [files[i].label or "" for i in accepted]
        hashes = [decoded[i].sha256 or "" for i in accepted]
        try:
            assignment = assign_splits(labels, hashes, config.split, config.seed)
        except DatasetError as error:  # a class too small: it may have lost files to rejection
            raise DatasetError(f"{error}{_rejections(decoded)}") from None
        splits = _write_splits(tmp, files, decoded, accepted, assignment, classes, config)
        _write_rejected(tmp, files, decoded)
        rejected = len(files) - len(accepted)
        manifest = Manifest(
            source=str(src),
            label_from=layout,
            classes=classes,
            image_shape=config.preprocessing.image_shape,
            preprocessing=config.preprocessing,
            seed=config.seed,
            split=config.split,
            found=discovery.found,
            ingested=len(accepted),
            rejected=rejected,
            ignored=discovery.ignored,
            duplicates=len(hashes) - len(set(hashes)),
            splits=splits,
        )
        for path in staging.iterdir():
            path.unlink()
        staging.rmdir()
        write_manifest(tmp, manifest)
    return manifest


def _decode_all(
    layout: str,
    src: Path,
    files: Sequence[SourceFile],
    config: IngestConfig,
    staging: Path,
    progress: ProgressCallback | None,
) -> list[_Decoded]:
    """Decode every labelled file in chunks; unlabelled files are rejected without decoding."""
    results: list[_Decoded | None] = [None] * len(files)
    todo = []
    for index, source in enumerate(files):
        if source.label is None:
            results[index] = _Decoded(None, _no_label_reason(layout))
        else:
            todo.append(index)
    chunks = [todo[i : i + _CHUNK_FILES] for i in range(0, len(todo), _CHUNK_FILES)]
    rejected = len(files) - len(todo)
    done = rejected

    def collect(chunk: list[int], outcome: list[_Decoded]) -> None:
        nonlocal done, rejected
        for index, result in zip(chunk, outcome, strict=True):
            results[index] = result
        done += len(chunk)
        rejected += sum(1 for r in outcome if r.sha256 is None)
        if progress is not None:
            progress(done, rejected, len(files))

    if progress is not None:
        progress(done, rejected, len(files))
    jobs = [
        (
            str(src),
            [files[i].path for i in chunk],
            config.preprocessing,
            config.max_pixels,
            str(staging / f"chunk-{n:06d}.npy"),
        )
        for n, chunk in enumerate(chunks)
    ]
    if config.workers == 1 or len(chunks) <= 1:
        for chunk, job in zip(chunks, jobs, strict=True):
            collect(chunk, _decode_chunk(*job))
    else:
        # spawn, not fork: the caller may hold Ray or torch threads that fork would copy badly.
        with ProcessPoolExecutor(
            config.workers,
            mp_context=get_context("spawn"),
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            futures = {
                pool.submit(_decode_chunk, *job): chunk
                for chunk, job in zip(chunks, jobs, strict=True)
            }
            for future in as_completed(futures):
                collect(futures[future], future.result())
    return [r for r in results if r is not None]


def _exit_with_parent(parent: int) -> None:
    """Pool initializer: end this worker as soon as the ingest process is gone.

    A killed parent (SIGKILL) cannot stop its pool. Its workers would wait forever on a queue
    whose write end they hold themselves, keeping the pool's named semaphores (``/dev/shm``)
    alive; once they exit, multiprocessing's resource tracker unlinks those.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _decode_chunk(
    src: str, paths: list[str], spec: Preprocessing, max_pixels: int, staging_file: str
) -> list[_Decoded]:
    """Worker: decode a chunk, stack the valid pixels into ``staging_file``, report each file."""
    outcome: list[_Decoded] = []
    stack: list[np.ndarray] = []
    for rel in paths:
        try:
            data = (Path(src) / rel).read_bytes()
        except OSError as error:
            outcome.append(_Decoded(None, f"unreadable: {error.strerror or error}"))
            continue
        try:
            pixels = images.preprocess(data, spec, max_pixels)
        except images.ImageRejected as error:
            outcome.append(_Decoded(None, str(error)))
            continue
        outcome.append(_Decoded(sha256_bytes(data), None, staging_file, len(stack)))
        stack.append(pixels)
    if stack:
        np.save(staging_file, np.stack(stack))
    return outcome


def _rejections(decoded: list[_Decoded], shown: int = 3) -> str:
    """``; rejected N files: COUNT REASON, ...`` (the commonest reasons), or ``""``."""
    reasons = Counter(d.reason for d in decoded if d.reason is not None)
    if not reasons:
        return ""
    common = ", ".join(f"{count} {reason}" for reason, count in reasons.most_common(shown))
    more = f", {len(reasons) - shown} other reasons" if len(reasons) > shown else ""
    return f"; rejected {reasons.total()} files: {common}{more}"


def _no_label_reason(layout: str) -> str:
    if layout == "folder":
        return "no label: file lies directly in SRC, not in a class sub-folder"
    return "no label: file name is not <label>_<digits>.<ext>"


def _write_splits(
    out: Path,
    files: Sequence[SourceFile],
    decoded: Sequence[_Decoded],
    accepted: Sequence[int],
    assignment: Sequence[str],
    classes: Sequence[str],
    config: IngestConfig,
) -> dict[str, SplitInfo]:
    """Write each split's rows, shuffled with the seed, as shards of ``config.shard_rows``."""
    class_index = {name: i for i, name in enumerate(classes)}
    staged: dict[str, np.ndarray] = {}

    def pixels_of(item: int) -> np.ndarray:
        record = decoded[item]
        assert record.staging_file is not None
        if record.staging_file not in staged:
            staged[record.staging_file] = np.load(record.staging_file, mmap_mode="r")
        return staged[record.staging_file][record.staging_row]

    splits: dict[str, SplitInfo] = {}
    for split_number, split in enumerate(SPLITS):
        members = [item for item, s in zip(accepted, assignment, strict=True) if s == split]
        rng = np.random.default_rng([config.seed, 1000 + split_number])
        members = [members[i] for i in rng.permutation(len(members))]
        shards = []
        for start in range(0, len(members), config.shard_rows):
            rows = members[start : start + config.shard_rows]
            names = [files[i].label or "" for i in rows]
            shards.append(
                write_shard(
                    out,
                    f"{split}/part-{len(shards):05d}.parquet",
                    np.stack([pixels_of(i) for i in rows]),
                    [class_index[n] for n in names],
                    names,
                    [files[i].path for i in rows],
                )
            )
        counts = Counter(files[i].label for i in members)
        splits[split] = SplitInfo(
            rows=len(members), counts={c: counts.get(c, 0) for c in classes}, shards=shards
        )
    return splits


def _write_rejected(out: Path, files: Sequence[SourceFile], decoded: Sequence[_Decoded]) -> None:
    with open(out / REJECTED_FILE, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "reason"])
        for source, record in zip(files, decoded, strict=True):
            if record.reason is not None:
                writer.writerow([source.path, record.reason])
