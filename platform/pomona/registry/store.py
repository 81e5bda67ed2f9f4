"""The model registry: immutable, numbered versions of model directories under one root.

Layout (the root is a local directory or a ``pyarrow.fs`` URI such as ``s3://bucket/models``)::

    <root>/<name>/versions/<N>/model.safetensors
    <root>/<name>/versions/<N>/model.json
    <root>/<name>/versions/<N>/version.json     written last: the completion marker
    <root>/<name>/aliases.json                  {"prod": 3, ...}

This module holds the semantics (numbers, publishing, aliases); the bytes go through a
:mod:`pomona.registry.backend` (local directory or object store), and remote versions are read
through the local :mod:`pomona.registry.cache`.

Publishing. :meth:`Registry.register` claims the next number by creating ``versions/<N>``
(atomically, see :meth:`pomona.registry.backend.Backend.claim`), copies the two files in, and
writes ``version.json`` last; a version without it is invisible to every reader, so a crash
never exposes a half-copied model. Nothing rewrites a published version's files.

When a number is freed. Exactly once: when a registration fails with an error before it
published (the copy or the write of ``version.json`` raised), it deletes its directory, and the
next registration may take the same number, which no one ever saw. A number someone could have
seen is never handed out again: :meth:`Registry.delete` removes ``version.json`` first, then the
model files, and leaves the empty directory as a tombstone; a registration killed mid-copy (no
chance to clean up) also keeps its directory, and so its number.

Incomplete versions. A registration killed mid-copy (SIGKILL, power loss) leaves files without
``version.json``: invisible, unloadable, and holding bytes. :meth:`Registry.gc` finds and removes
those files (keeping the directory, so the number stays taken). It leaves alone a version that a
live registration is still writing: locally a registration holds a ``flock`` on its version
directory until it has published (the kernel drops it when the process dies); on object stores,
which have no locks, only the grace period (``grace_s`` since the newest file was written)
protects a slow upload.

Concurrency. Distinct numbers for concurrent registrations (threads, processes, machines) come
from the atomic claim. ``aliases.json`` is replaced as a whole, so readers see the old or the new
mapping. Locally, alias changes and deletions also hold an exclusive lock on ``<root>/<name>`` so
two of them cannot lose each other's update or delete a version an alias is being pointed at.
Object stores offer no such lock: change aliases of one model from one place at a time (e.g. a
single CI job).
"""

from __future__ import annotations

import json
import logging
import math
import os
import posixpath
import random
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC
from pathlib import Path

import pyarrow.fs as pafs
from pydantic import ValidationError

from pomona.config import format_validation_error
from pomona.errors import CheckpointError, ModelNotFoundError, RegistryError
from pomona.models.artifact import load_model
from pomona.models.card import ModelCard
from pomona.registry.backend import CLAIM_PREFIX, open_backend
from pomona.registry.cache import cached_copy
from pomona.registry.names import ModelRef, parse_ref, validate_alias, validate_name
from pomona.registry.version import (
    MODEL_FILES,
    VERSION_FILE,
    IncompleteVersion,
    ModelVersion,
    SweepTrial,
    check_model_dir,
    verify_files,
)

logger = logging.getLogger(__name__)

ALIASES_FILE = "aliases.json"
REGISTRY_ENV = "POMONA_REGISTRY"

DEFAULT_GC_GRACE_S = 600.0

_VERSIONS = "versions"
_MAX_CLAIM_ATTEMPTS = 1000


def default_root() -> str:
    """The registry used when none is given: ``$POMONA_REGISTRY`` or ``~/.pomona/registry``."""
    return os.environ.get(REGISTRY_ENV) or str(Path.home() / ".pomona" / "registry")


class Registry:
    """A model registry rooted at a local directory or a filesystem URI.

    All I/O goes through ``pyarrow.fs``, so S3, GCS and local directories behave the same. See
    the module docstring for the layout and the concurrency guarantees.

    Args:
        root: a local path, or a URI with a scheme (``s3://``, ``gs://``, ``file://``); None
            uses :func:`default_root`.
        filesystem: a ready ``pyarrow.fs.FileSystem`` (e.g. an ``S3FileSystem`` with a custom
            endpoint); ``root`` is then a path inside it.

    Attributes:
        uri: the root as given (an absolute path for local directories), for messages.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        filesystem: pafs.FileSystem | None = None,
    ) -> None:
        self._backend = open_backend(default_root() if root is None else root, filesystem)
        self.uri = self._backend.uri

    def __repr__(self) -> str:
        return f"Registry({self.uri!r})"

    def _version_dir(self, name: str, version: int) -> str:
        return self._backend.join(name, _VERSIONS, version)

    # --- reading -----------------------------------------------------------------------------

    def _claimed_numbers(self, name: str) -> list[int]:
        """Every version directory, published or not."""
        return sorted(
            int(entry)
            for entry in self._backend.list_dirs(self._backend.join(name, _VERSIONS))
            if entry.isdigit() and str(int(entry)) == entry
        )

    def _published_numbers(self, name: str) -> list[int]:
        numbers = self._claimed_numbers(name)
        markers = self._backend.are_files(
            [posixpath.join(self._version_dir(name, n), VERSION_FILE) for n in numbers]
        )
        return [n for n, published in zip(numbers, markers, strict=True) if published]

    def _read_version(self, name: str, version: int) -> ModelVersion | None:
        path = posixpath.join(self._version_dir(name, version), VERSION_FILE)
        data = self._backend.read(path)
        if data is None:
            return None
        try:
            record = ModelVersion.model_validate_json(data)
        except ValidationError as error:
            raise CheckpointError(format_validation_error(error, path)) from None
        if (record.name, record.version) != (name, version):
            raise CheckpointError(
                f"{path} describes {record.ref}, not {name}:{version}; "
                "the registry was edited by hand"
            )
        return record

    def _not_found(self, name: str, problem: str) -> ModelNotFoundError:
        """An error that says what does exist, so a typo is easy to spot."""
        numbers = self._published_numbers(name)
        if not numbers:
            models = ", ".join(self.list_models()) or "none"
            return ModelNotFoundError(f"no model {name!r} in registry {self.uri}; models: {models}")
        aliases = ", ".join(f"{a}->{v}" for a, v in self.aliases(name).items()) or "none"
        versions = ", ".join(map(str, numbers))
        return ModelNotFoundError(f"{problem}; {name} has versions {versions}, aliases {aliases}")

    def _names(self) -> list[str]:
        """Every model directory, with or without a published version."""
        return sorted(n for n in self._backend.list_dirs(self._backend.root) if _is_name(n))

    def list_models(self) -> list[str]:
        """Names of models with at least one published version, sorted."""
        return [n for n in self._names() if self._published_numbers(n)]

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Published versions of ``name``, oldest first.

        Raises:
            RegistryError: ``name`` breaks the naming rule.
            ModelNotFoundError: the model has no published version.
        """
        validate_name(name)
        versions = [self._read_version(name, n) for n in self._published_numbers(name)]
        found = [v for v in versions if v is not None]
        if not found:
            raise self._not_found(name, f"no model {name!r}")
        return found

    def aliases(self, name: str) -> dict[str, int]:
        """Alias -> version number for ``name`` (empty when it has none)."""
        validate_name(name)
        path = self._backend.join(name, ALIASES_FILE)
        data = self._backend.read(path)
        if data is None:
            return {}
        try:
            mapping = json.loads(data)
        except json.JSONDecodeError as error:
            raise RegistryError(f"{path} is not valid JSON: {error}") from None
        if not isinstance(mapping, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in mapping.values()
        ):
            raise RegistryError(f"{path} must map alias names to version numbers")
        return mapping

    def get(self, ref: str | ModelRef) -> ModelVersion:
        """The version a reference points at.

        Args:
            ref: ``name``/``name:latest`` (newest), ``name:N`` or ``name@alias``.

        Raises:
            RegistryError: the reference is malformed.
            ModelNotFoundError: the model, version or alias does not exist; the message lists
                what does.
        """
        ref = parse_ref(ref) if isinstance(ref, str) else ref
        if ref.alias is not None:
            version = self.aliases(ref.name).get(ref.alias)
            if version is None:
                raise self._not_found(ref.name, f"{ref.name} has no alias {ref.alias!r}")
        elif ref.version is not None:
            version = ref.version
        else:
            numbers = self._published_numbers(ref.name)
            if not numbers:
                raise self._not_found(ref.name, f"no model {ref.name!r}")
            version = numbers[-1]
        record = self._read_version(ref.name, version)
        if record is None:
            raise self._not_found(
                ref.name, f"{ref} points at version {version}, which does not exist"
            )
        return record

    def resolve(self, ref: str | ModelRef) -> int:
        """The version number a reference points at (see :meth:`get`)."""
        return self.get(ref).version

    def local_path(self, ref: str | ModelRef, cache_dir: Path | None = None) -> Path:
        """A local model directory for ``ref``, every file checked against ``version.json``.

        A local registry returns the version directory itself. A remote one downloads the
        version once into ``cache_dir/<name>/<N>-<weights sha256 prefix>/`` (default
        :func:`pomona.registry.cache.default_cache_dir`) and reuses it while its checksums hold.

        Raises:
            ModelNotFoundError: the reference does not resolve.
            CheckpointError: a file is missing or its sha256 differs from the one recorded at
                registration (the copy was modified or corrupted).
        """
        record = self.get(ref)
        version_dir = self._version_dir(record.name, record.version)
        local = self._backend.local_dir(version_dir)
        if local is None:
            return cached_copy(self._backend, record, version_dir, cache_dir)
        self._verify(record)
        return local

    def verify(self, ref: str | ModelRef) -> ModelVersion:
        """The version ``ref`` points at, after checking its stored files against
        ``version.json`` (each file is read once where it is stored; nothing is downloaded).

        Raises:
            ModelNotFoundError: the reference does not resolve.
            CheckpointError: a file is missing or its sha256 differs from the one recorded at
                registration.
        """
        record = self.get(ref)
        self._verify(record)
        return record

    def _verify(self, record: ModelVersion) -> None:
        version_dir = self._version_dir(record.name, record.version)
        verify_files(
            record,
            f"{record.ref} in {self.uri}",
            version_dir,
            lambda filename: self._backend.sha256(posixpath.join(version_dir, filename)),
        )

    # --- writing -----------------------------------------------------------------------------

    def register(
        self,
        model_dir: Path,
        name: str,
        evaluation: Mapping[str, float] | None = None,
        sweep: SweepTrial | None = None,
    ) -> ModelVersion:
        """Publish a model directory as the next version of ``name``.

        Args:
            model_dir: local directory with ``model.safetensors`` and ``model.json``.
            name: model name (see :data:`pomona.registry.names.NAME_RULE`).
            evaluation: held-out metrics to record with the version, keyed with their split
                as a prefix (see
                :meth:`pomona.evaluate.report.EvaluationReport.headline_metrics`).
            sweep: the sweep trial the model directory comes from, recorded with the version.

        Returns:
            The published version.

        Raises:
            RegistryError: ``name`` breaks the naming rule, or an ``evaluation`` value is not
                a finite number.
            CheckpointError: ``model_dir`` is not a valid model directory, its weights do not
                load into the card's architecture, or a file changed while it was being copied.
        """
        validate_name(name)
        # Checked before a version number is claimed, so a bad value leaves no trace.
        bad = {k: v for k, v in (evaluation or {}).items() if not math.isfinite(v)}
        if bad:
            raise RegistryError(f"evaluation metrics must be finite numbers, got {bad}")
        model_dir = Path(model_dir)
        card, hashes = check_model_dir(model_dir)
        # Built from the card and loaded strictly, as every reader will load it: weights with an
        # extra, missing or misshapen tensor are refused now rather than at predict time.
        load_model(model_dir)
        self._backend.create_dir(self._backend.join(name, _VERSIONS))
        number = self._claim(name)
        version_dir = self._version_dir(name, number)
        try:
            # Held until published: gc leaves a version alone while a live process holds it.
            with self._backend.lock(version_dir):
                record = self._publish(model_dir, name, number, card, hashes, evaluation, sweep)
        except BaseException:
            self._discard(version_dir)
            raise
        logger.info("registered %s from %s in %s", record.ref, model_dir, self.uri)
        return record

    def _publish(
        self,
        model_dir: Path,
        name: str,
        number: int,
        card: ModelCard,
        hashes: dict[str, str],
        evaluation: Mapping[str, float] | None,
        sweep: SweepTrial | None,
    ) -> ModelVersion:
        """Copy the model files into claimed ``versions/<number>``, then write ``version.json``."""
        version_dir = self._version_dir(name, number)
        for filename in MODEL_FILES:
            destination = posixpath.join(version_dir, filename)
            if self._backend.upload(model_dir / filename, destination) != hashes[filename]:
                raise CheckpointError(
                    f"{model_dir / filename} changed while it was being registered"
                )
        record = ModelVersion(
            name=name,
            version=number,
            files=hashes,
            architecture=card.architecture,
            classes=card.classes,
            metrics=card.metrics,
            evaluation=dict(evaluation or {}),
            dataset_sha256=card.dataset_sha256,
            source=str(model_dir.resolve()),
            sweep=sweep,
        )
        self._backend.write_atomic(
            posixpath.join(version_dir, VERSION_FILE),
            record.model_dump_json(indent=2).encode("utf-8"),
        )
        return record

    def _claim(self, name: str) -> int:
        number = max(self._claimed_numbers(name), default=0) + 1
        for attempt in range(_MAX_CLAIM_ATTEMPTS):
            if self._backend.claim(self._version_dir(name, number)):
                return number
            # Object-store writers that saw each other both move on; jitter keeps them apart.
            time.sleep(random.uniform(0, 0.01) * min(attempt + 1, 10))
            number += 1
        raise RegistryError(
            f"could not claim a version number for {name!r} after {_MAX_CLAIM_ATTEMPTS} attempts"
        )

    def _discard(self, version_dir: str) -> None:
        """Remove a registration that failed before publishing: its number was never seen."""
        try:
            self._backend.delete_dir(version_dir)
        except OSError as error:
            logger.warning("could not remove partial version %s: %s", version_dir, error)

    def _incomplete(self, name: str, version: int, *, writing: bool) -> IncompleteVersion | None:
        """The leftovers in ``versions/<version>``, or None if published or empty."""
        files = self._backend.list_files(self._version_dir(name, version))
        # Claim objects are the number's tombstone on object stores, not leftovers.
        leftovers = [f for f in files if not f.base_name.startswith(CLAIM_PREFIX)]
        if not leftovers or any(f.base_name == VERSION_FILE for f in leftovers):
            return None
        return IncompleteVersion(
            name=name,
            version=version,
            files=tuple(sorted(f.base_name for f in leftovers)),
            size=sum(f.size or 0 for f in leftovers),
            modified=max(f.mtime for f in leftovers).astimezone(UTC),
            writing=writing,
        )

    def incomplete_versions(self, name: str | None = None) -> list[IncompleteVersion]:
        """Incomplete versions of ``name`` (None: of every model), oldest number first.

        Raises:
            RegistryError: ``name`` breaks the naming rule.
        """
        return self._sweep(name, grace_s=None)

    def gc(
        self, name: str | None = None, *, grace_s: float = DEFAULT_GC_GRACE_S
    ) -> list[IncompleteVersion]:
        """Remove the files of incomplete versions that nobody is writing any more.

        A version is removed when no live registration holds it (local registries) and its
        newest file is older than ``grace_s``. Its directory stays, so its number is never
        handed out again.

        Args:
            name: only this model; None for every model in the registry.
            grace_s: how long after its last write an incomplete version is left alone.

        Returns:
            Every incomplete version found, oldest number first, with ``removed`` set on those
            whose files were deleted.

        Raises:
            RegistryError: ``name`` breaks the naming rule.
        """
        return self._sweep(name, grace_s=grace_s)

    def _sweep(self, name: str | None, grace_s: float | None) -> list[IncompleteVersion]:
        """Find incomplete versions; with ``grace_s``, remove those old enough and not held."""
        if name is not None:
            validate_name(name)
        names = [n for n in self._names() if name is None or n == name]
        found: list[IncompleteVersion] = []
        for model in names:
            with self._backend.lock(self._backend.join(model)):
                for number in self._claimed_numbers(model):
                    version_dir = self._version_dir(model, number)
                    # Listed under the version's lock, so a registration cannot publish between
                    # the listing and the removal.
                    with self._backend.lock(version_dir, wait=False) as free:
                        leftover = self._incomplete(model, number, writing=not free)
                        if leftover is None:
                            continue
                        if grace_s is None or leftover.writing or leftover.age_s() < grace_s:
                            found.append(leftover)
                            continue
                        for filename in leftover.files:
                            self._backend.delete_file(posixpath.join(version_dir, filename))
                        found.append(replace(leftover, removed=True))
                        logger.info("removed incomplete version %s", leftover.ref)
        return found

    def set_alias(self, name: str, version: int, alias: str) -> int | None:
        """Point ``alias`` at ``version``, creating or moving it atomically.

        Returns:
            The version the alias pointed at before, or None if it is new.

        Raises:
            RegistryError: bad name or alias (``latest`` is reserved).
            ModelNotFoundError: the version does not exist.
        """
        validate_name(name)
        validate_alias(alias)
        self._require(name, version)
        with self._backend.lock(self._backend.join(name)):
            # Checked again under the lock: a concurrent delete may have removed it meanwhile.
            self._require(name, version)
            mapping = self.aliases(name)
            previous = mapping.get(alias)
            mapping[alias] = version
            self._write_aliases(name, mapping)
        logger.info("alias %s@%s -> %s (was %s)", name, alias, version, previous)
        return previous

    def remove_alias(self, name: str, alias: str) -> int:
        """Remove ``alias`` from ``name``.

        Returns:
            The version the alias pointed at.

        Raises:
            ModelNotFoundError: the model has no such alias.
        """
        validate_name(name)
        validate_alias(alias)
        if alias not in self.aliases(name):
            raise self._not_found(name, f"{name} has no alias {alias!r}")
        with self._backend.lock(self._backend.join(name)):
            mapping = self.aliases(name)
            if alias not in mapping:
                raise self._not_found(name, f"{name} has no alias {alias!r}")
            version = mapping.pop(alias)
            self._write_aliases(name, mapping)
        logger.info("removed alias %s@%s (was %s)", name, alias, version)
        return version

    def delete(self, name: str, version: int) -> None:
        """Delete one version; its number is never reused.

        Raises:
            ModelNotFoundError: the version does not exist.
            RegistryError: aliases still point at the version.
        """
        validate_name(name)
        self._require(name, version)
        with self._backend.lock(self._backend.join(name)):
            record = self._require(name, version)
            pointing = sorted(a for a, v in self.aliases(name).items() if v == version)
            if pointing:
                raise RegistryError(
                    f"{record.ref} is still aliased as {', '.join(pointing)}; move or remove "
                    "those aliases first"
                )
            version_dir = self._version_dir(name, version)
            # Unpublish first, so no reader sees a version whose files are going away.
            self._backend.delete_file(posixpath.join(version_dir, VERSION_FILE))
            for filename in record.files:
                self._backend.delete_file(posixpath.join(version_dir, filename))
        logger.info("deleted %s from %s", record.ref, self.uri)

    def _require(self, name: str, version: int) -> ModelVersion:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise RegistryError(f"version must be a positive integer, got {version!r}")
        record = self._read_version(name, version)
        if record is not None:
            return record
        leftover = self._incomplete(name, version, writing=False)
        if leftover is not None:
            raise RegistryError(
                f"{leftover.ref} is an incomplete version, not a published one: "
                f"{', '.join(leftover.files)} ({leftover.size:,} bytes, last written "
                f"{leftover.modified:%Y-%m-%d %H:%M:%S} UTC) without {VERSION_FILE}, left by a "
                "registration that was killed or is still running; nothing can load it. Remove "
                f"its files with `pomona registry gc {name}`"
            )
        raise self._not_found(name, f"{name} has no version {version}")

    def _write_aliases(self, name: str, mapping: dict[str, int]) -> None:
        data = json.dumps(dict(sorted(mapping.items())), indent=2) + "\n"
        self._backend.write_atomic(self._backend.join(name, ALIASES_FILE), data.encode("utf-8"))


def _is_name(value: str) -> bool:
    try:
        validate_name(value)
    except RegistryError:
        return False
    return True
