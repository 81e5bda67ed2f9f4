"""The model registry: immutable, numbered versions of model directories under one root.

Layout (the root is a local directory or a ``pyarrow.fs`` URI such as ``s3://bucket/models``)::

    <root>/<name>/versions/<N>/model.safetensors
    <root>/<name>/versions/<N>/model.json
    <root>/<name>/versions/<N>/version.json     written last: the completion marker
    <root>/<name>/aliases.json                  {"prod": 3, ...}

Publishing. :meth:`Registry.register` claims the next number by creating ``versions/<N>``,
copies the two files in, and writes ``version.json`` last; a version without it is invisible to
every reader, so a crash never exposes a half-copied model. A failed registration deletes its
directory. Nothing rewrites a published version's files.

Claiming numbers. On a local filesystem the claim is ``os.mkdir``, which fails atomically when
the directory exists, so concurrent registrations (threads or processes) get distinct numbers.
Object stores have no atomic create-if-absent in ``pyarrow.fs``; there a registration writes a
unique ``.claim-<token>`` object into ``versions/<N>/``, lists that prefix, and keeps ``N`` only
if its claim is alone (otherwise it deletes its claim and tries ``N + 1``). With the strongly
consistent listing of S3 and GCS at most one writer keeps a number; two writers that see each
other both move on, which can leave a number unused but never shared.

Numbers are never reused: a directory that exists without ``version.json`` (a crashed
registration, a deleted version) keeps its number claimed. :meth:`Registry.delete` removes
``version.json`` first, then the model files, and leaves the empty directory as a tombstone.

Aliases. ``aliases.json`` is replaced as a whole (temporary file + rename locally, one object
put on object stores), so readers see the old or the new mapping. Locally, alias changes and
deletions also hold an exclusive lock on ``<root>/<name>/.lock`` so two of them cannot lose each
other's update or delete a version an alias is being pointed at. Object stores offer no such lock:
change aliases of one model from one place at a time (e.g. a single CI job).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import posixpath
import random
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pyarrow.fs as pafs
from pydantic import Field, FiniteFloat, PositiveInt, ValidationError

from pomona.config import StrictModel, format_validation_error
from pomona.errors import CheckpointError, ModelNotFoundError, RegistryError
from pomona.models.card import CARD_FILE, WEIGHTS_FILE, ModelCard
from pomona.registry.names import ModelRef, parse_ref, validate_alias, validate_name
from pomona.storage import atomic_directory, sha256_file

logger = logging.getLogger(__name__)

VERSION_FILE = "version.json"
ALIASES_FILE = "aliases.json"
MODEL_FILES: tuple[str, ...] = (WEIGHTS_FILE, CARD_FILE)
REGISTRY_ENV = "POMONA_REGISTRY"
CACHE_ENV = "POMONA_CACHE"

_VERSIONS = "versions"
_LOCK_FILE = ".lock"
_CLAIM_PREFIX = ".claim-"
_CHUNK = 1 << 20
_MAX_CLAIM_ATTEMPTS = 1000


class ModelVersion(StrictModel):
    """``version.json``: one published version and a summary of its model card.

    Attributes:
        name: model name.
        version: version number, from 1.
        created: when the version was published (UTC).
        files: file name -> sha256 of every model file in the version.
        architecture: the card's architecture key.
        classes: the card's class names.
        metrics: the card's metrics at registration time.
        evaluation: held-out metrics given at registration, keyed with their split as a
            prefix (e.g. ``test_top1_error``, ``test_top5_error``, ``test_ece``); empty when
            the version was registered without an evaluation.
        dataset_sha256: the card's dataset checksum, if any.
        source: the model directory it was registered from.
    """

    schema_version: Literal[1] = 1
    name: str
    version: PositiveInt
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    files: dict[str, str]
    architecture: str
    classes: list[str]
    metrics: dict[str, float] = Field(default_factory=dict)
    evaluation: dict[str, FiniteFloat] = Field(default_factory=dict)
    dataset_sha256: str | None = None
    source: str | None = None

    @property
    def ref(self) -> str:
        """``name:N``, a reference that always resolves to this version."""
        return f"{self.name}:{self.version}"


def default_root() -> str:
    """The registry used when none is given: ``$POMONA_REGISTRY`` or ``~/.pomona/registry``."""
    return os.environ.get(REGISTRY_ENV) or str(Path.home() / ".pomona" / "registry")


def default_cache_dir() -> Path:
    """Where remote versions are downloaded: ``$POMONA_CACHE`` or ``~/.cache/pomona/registry``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "pomona" / "registry"


def check_model_dir(model_dir: Path) -> tuple[ModelCard, dict[str, str]]:
    """Check that ``model_dir`` is a usable model directory.

    Args:
        model_dir: a local directory with ``model.safetensors`` and ``model.json``.

    Returns:
        The parsed card and the sha256 of each model file.

    Raises:
        CheckpointError: a file is missing, the card does not parse, or the weights' sha256
            differs from the card's ``weights_sha256``.
    """
    model_dir = Path(model_dir)
    missing = [f for f in MODEL_FILES if not (model_dir / f).is_file()]
    if missing:
        raise CheckpointError(
            f"{model_dir} is not a model directory: missing {', '.join(missing)} "
            f"(it must hold {' and '.join(MODEL_FILES)})"
        )
    card_path = model_dir / CARD_FILE
    try:
        card = ModelCard.model_validate_json(card_path.read_bytes())
    except ValidationError as error:
        raise CheckpointError(format_validation_error(error, f"model card {card_path}")) from None
    hashes = {f: sha256_file(model_dir / f) for f in MODEL_FILES}
    if hashes[WEIGHTS_FILE] != card.weights_sha256:
        raise CheckpointError(
            f"{model_dir / WEIGHTS_FILE} has sha256 {hashes[WEIGHTS_FILE]} but its card records "
            f"{card.weights_sha256}: the weights do not belong to this card"
        )
    return card, hashes


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
        root = default_root() if root is None else os.fspath(root)
        self.uri = root
        if filesystem is not None:
            self._fs, self._root = filesystem, root
        elif "://" in root:
            self._fs, self._root = pafs.FileSystem.from_uri(root)
        else:
            local_root = os.path.abspath(os.path.expanduser(root))
            self._fs, self._root = pafs.LocalFileSystem(), local_root
            self.uri = local_root
        self._local = isinstance(self._fs, pafs.LocalFileSystem)

    def __repr__(self) -> str:
        return f"Registry({self.uri!r})"

    # --- paths and small I/O helpers -------------------------------------------------------

    def _path(self, *parts: str | int) -> str:
        return posixpath.join(self._root, *(str(p) for p in parts))

    def _read(self, path: str) -> bytes | None:
        try:
            with self._fs.open_input_stream(path) as stream:
                return stream.read()
        except FileNotFoundError:
            return None

    def _write_atomic(self, path: str, data: bytes) -> None:
        if not self._local:
            # An object appears whole or not at all, so one put is already atomic.
            with self._fs.open_output_stream(path) as stream:
                stream.write(data)
            return
        directory, filename = posixpath.split(path)
        tmp = posixpath.join(directory, f".{filename}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with self._fs.open_output_stream(tmp) as stream:
                stream.write(data)
            self._fs.move(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                self._fs.delete_file(tmp)

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        if not self._local:
            yield
            return
        with open(os.path.join(self._root, name, _LOCK_FILE), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    # --- reading -----------------------------------------------------------------------------

    def _claimed_numbers(self, name: str) -> list[int]:
        """Every version directory, published or not."""
        selector = pafs.FileSelector(self._path(name, _VERSIONS), allow_not_found=True)
        return sorted(
            int(info.base_name)
            for info in self._fs.get_file_info(selector)
            if info.type == pafs.FileType.Directory
            and info.base_name.isdigit()
            and str(int(info.base_name)) == info.base_name
        )

    def _published_numbers(self, name: str) -> list[int]:
        numbers = self._claimed_numbers(name)
        markers = self._fs.get_file_info(
            [self._path(name, _VERSIONS, n, VERSION_FILE) for n in numbers]
        )
        return [
            n for n, info in zip(numbers, markers, strict=True) if info.type == pafs.FileType.File
        ]

    def _read_version(self, name: str, version: int) -> ModelVersion | None:
        path = self._path(name, _VERSIONS, version, VERSION_FILE)
        data = self._read(path)
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

    def list_models(self) -> list[str]:
        """Names of models with at least one published version, sorted."""
        selector = pafs.FileSelector(self._root, allow_not_found=True)
        names = [
            info.base_name
            for info in self._fs.get_file_info(selector)
            if info.type == pafs.FileType.Directory
        ]
        return sorted(n for n in names if _is_name(n) and self._published_numbers(n))

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
        path = self._path(name, ALIASES_FILE)
        data = self._read(path)
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
        :func:`default_cache_dir`) and reuses it while its checksums hold.

        Raises:
            ModelNotFoundError: the reference does not resolve.
            CheckpointError: a file is missing or its sha256 differs from the one recorded at
                registration (the copy was modified or corrupted).
        """
        record = self.get(ref)
        version_dir = self._path(record.name, _VERSIONS, record.version)
        if self._local:
            path = Path(version_dir)
            _verify_files(path, record, f"{record.ref} in {self.uri}")
            return path
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        target = (
            cache.expanduser() / record.name / f"{record.version}-{record.files[WEIGHTS_FILE][:12]}"
        )
        if target.is_dir():
            try:
                _verify_files(target, record, f"cached copy of {record.ref}")
                return target
            except CheckpointError as error:
                logger.warning("downloading %s again: %s", record.ref, error)
        with atomic_directory(target, overwrite=True) as staging:
            for filename, expected in record.files.items():
                remote = posixpath.join(version_dir, filename)
                digest = self._download(remote, staging / filename)
                if digest != expected:
                    raise CheckpointError(
                        f"{filename} of {record.ref} in {self.uri} has sha256 {digest} but "
                        f"version.json records {expected}: the stored copy was modified or "
                        "corrupted"
                    )
            (staging / VERSION_FILE).write_text(record.model_dump_json(indent=2))
        return target

    def _download(self, remote: str, local: Path) -> str:
        digest = hashlib.sha256()
        try:
            with self._fs.open_input_stream(remote) as source, open(local, "wb") as out:
                while chunk := source.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        except FileNotFoundError:
            raise CheckpointError(f"{remote} is missing from registry {self.uri}") from None
        return digest.hexdigest()

    # --- writing -----------------------------------------------------------------------------

    def register(
        self,
        model_dir: Path,
        name: str,
        evaluation: Mapping[str, float] | None = None,
    ) -> ModelVersion:
        """Publish a model directory as the next version of ``name``.

        Args:
            model_dir: local directory with ``model.safetensors`` and ``model.json``.
            name: model name (see :data:`pomona.registry.names.NAME_RULE`).
            evaluation: held-out metrics to record with the version, keyed with their split
                as a prefix (see
                :meth:`pomona.evaluate.report.EvaluationReport.headline_metrics`).

        Returns:
            The published version.

        Raises:
            RegistryError: ``name`` breaks the naming rule, or an ``evaluation`` value is not
                a finite number.
            CheckpointError: ``model_dir`` is not a valid model directory, or a file changed
                while it was being copied.
        """
        validate_name(name)
        # Checked before a version number is claimed, so a bad value leaves no trace.
        bad = {k: v for k, v in (evaluation or {}).items() if not math.isfinite(v)}
        if bad:
            raise RegistryError(f"evaluation metrics must be finite numbers, got {bad}")
        model_dir = Path(model_dir)
        card, hashes = check_model_dir(model_dir)
        self._fs.create_dir(self._path(name, _VERSIONS), recursive=True)
        number = self._claim(name)
        version_dir = self._path(name, _VERSIONS, number)
        try:
            for filename in MODEL_FILES:
                copied = self._upload(model_dir / filename, posixpath.join(version_dir, filename))
                if copied != hashes[filename]:
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
            )
            self._write_atomic(
                posixpath.join(version_dir, VERSION_FILE),
                record.model_dump_json(indent=2).encode("utf-8"),
            )
        except BaseException:
            self._discard(version_dir)
            raise
        logger.info("registered %s from %s in %s", record.ref, model_dir, self.uri)
        return record

    def _claim(self, name: str) -> int:
        versions = self._path(name, _VERSIONS)
        number = max(self._claimed_numbers(name), default=0) + 1
        for attempt in range(_MAX_CLAIM_ATTEMPTS):
            path = posixpath.join(versions, str(number))
            if self._local:
                try:
                    os.mkdir(path)
                    return number
                except FileExistsError:
                    pass
            elif self._claim_object(path):
                return number
            else:
                # Writers that saw each other both move on; jitter keeps them from colliding again.
                time.sleep(random.uniform(0, 0.01) * min(attempt + 1, 10))
            number += 1
        raise RegistryError(
            f"could not claim a version number for {name!r} after {_MAX_CLAIM_ATTEMPTS} attempts"
        )

    def _claim_object(self, path: str) -> bool:
        """Object-store claim: keep ``path`` only if our claim object is alone under it."""
        self._fs.create_dir(path)
        claim = posixpath.join(path, f"{_CLAIM_PREFIX}{uuid.uuid4().hex}")
        with self._fs.open_output_stream(claim):
            pass
        # Only claim objects count: some stores also list a marker object for the "directory".
        claims = [
            info.path
            for info in self._fs.get_file_info(pafs.FileSelector(path))
            if info.base_name.startswith(_CLAIM_PREFIX)
        ]
        if claims == [claim]:
            return True
        self._fs.delete_file(claim)
        return False

    def _upload(self, source: Path, destination: str) -> str:
        digest = hashlib.sha256()
        with open(source, "rb") as local, self._fs.open_output_stream(destination) as out:
            while chunk := local.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        return digest.hexdigest()

    def _discard(self, version_dir: str) -> None:
        try:
            self._fs.delete_dir(version_dir)
        except OSError as error:
            logger.warning("could not remove partial version %s: %s", version_dir, error)

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
        with self._lock(name):
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
        with self._lock(name):
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
        with self._lock(name):
            record = self._require(name, version)
            pointing = sorted(a for a, v in self.aliases(name).items() if v == version)
            if pointing:
                raise RegistryError(
                    f"{record.ref} is still aliased as {', '.join(pointing)}; move or remove "
                    "those aliases first"
                )
            version_dir = self._path(name, _VERSIONS, version)
            # Unpublish first, so no reader sees a version whose files are going away.
            self._fs.delete_file(posixpath.join(version_dir, VERSION_FILE))
            for filename in record.files:
                with contextlib.suppress(FileNotFoundError):
                    self._fs.delete_file(posixpath.join(version_dir, filename))
        logger.info("deleted %s from %s", record.ref, self.uri)

    def _require(self, name: str, version: int) -> ModelVersion:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise RegistryError(f"version must be a positive integer, got {version!r}")
        record = self._read_version(name, version)
        if record is None:
            raise self._not_found(name, f"{name} has no version {version}")
        return record

    def _write_aliases(self, name: str, mapping: dict[str, int]) -> None:
        data = json.dumps(dict(sorted(mapping.items())), indent=2) + "\n"
        self._write_atomic(self._path(name, ALIASES_FILE), data.encode("utf-8"))


def _is_name(value: str) -> bool:
    try:
        validate_name(value)
    except RegistryError:
        return False
    return True


def _verify_files(directory: Path, record: ModelVersion, what: str) -> None:
    for filename, expected in record.files.items():
        path = directory / filename
        if not path.is_file():
            raise CheckpointError(f"{what}: {filename} is missing from {directory}")
        actual = sha256_file(path)
        if actual != expected:
            raise CheckpointError(
                f"{what}: {path} has sha256 {actual} but version.json records {expected}; "
                "the file was modified or corrupted after registration"
            )
