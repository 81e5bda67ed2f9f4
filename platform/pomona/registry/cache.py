"""The local cache of models downloaded from a remote registry or a model URI.

A remote version is downloaded once into ``<cache>/<name>/<N>-<weights sha256 prefix>/``,
hashed while it streams in, and published there atomically; later reads reuse it while its
files still match ``version.json``, and download it again when they do not. A model directory
named by URI (a run on ``s3://``) is cached the same way under ``<cache>/.uri/<card sha256
prefix>/`` (no registry name starts with a dot) and checked against its card.
"""

from __future__ import annotations

import logging
import os
import posixpath
from pathlib import Path

from pomona.errors import CheckpointError
from pomona.location import Location
from pomona.models.artifact import read_card
from pomona.models.card import CARD_FILE, WEIGHTS_FILE
from pomona.registry.backend import Backend
from pomona.registry.version import (
    VERSION_FILE,
    ModelVersion,
    check_model_dir,
    verify_files,
    verify_local_files,
)
from pomona.storage import atomic_directory, sha256_bytes

logger = logging.getLogger(__name__)

CACHE_ENV = "POMONA_CACHE"


def default_cache_dir() -> Path:
    """Where remote versions are downloaded: ``$POMONA_CACHE`` or ``~/.cache/pomona/registry``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "pomona" / "registry"


def cached_copy(
    backend: Backend, record: ModelVersion, version_dir: str, cache_dir: Path | None = None
) -> Path:
    """A verified local copy of a remote version, downloaded only when needed.

    Args:
        backend: the registry's storage.
        record: the version to copy.
        version_dir: the version's directory in ``backend``.
        cache_dir: the cache root; None uses :func:`default_cache_dir`.

    Returns:
        The local directory holding the version's files and ``version.json``.

    Raises:
        CheckpointError: a stored file is missing or differs from its recorded sha256.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    weights_prefix = record.files[WEIGHTS_FILE][:12]
    target = cache.expanduser() / record.name / f"{record.version}-{weights_prefix}"
    if target.is_dir():
        try:
            verify_local_files(target, record, f"cached copy of {record.ref}")
            return target
        except CheckpointError as error:
            logger.warning("downloading %s again: %s", record.ref, error)
    with atomic_directory(target, overwrite=True) as staging:
        # Each file is hashed as it streams in; a mismatch discards the whole staging directory.
        verify_files(
            record,
            f"{record.ref} in {backend.uri}",
            version_dir,
            lambda filename: backend.download(
                posixpath.join(version_dir, filename), staging / filename
            ),
        )
        (staging / VERSION_FILE).write_text(record.model_dump_json(indent=2))
    return target


def cached_model(location: Location, cache_dir: Path | None = None) -> Path:
    """A verified local copy of the model directory at a remote ``location``.

    Args:
        location: a remote directory holding ``model.json`` and ``model.safetensors``.
        cache_dir: the cache root; None uses :func:`default_cache_dir`.

    Raises:
        ModelNotFoundError: there is no ``model.json``.
        CheckpointError: the card is invalid, or the weights are missing or differ from the
            card's sha256.
    """
    card = read_card(location)
    card_bytes = (location / CARD_FILE).read_bytes()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache.expanduser() / ".uri" / sha256_bytes(card_bytes)[:16]
    if target.is_dir():
        try:
            check_model_dir(target)
            return target
        except CheckpointError as error:
            logger.warning("downloading %s again: %s", location, error)
    with atomic_directory(target, overwrite=True) as staging:
        (staging / CARD_FILE).write_bytes(card_bytes)
        weights = location / WEIGHTS_FILE
        try:
            actual = weights.download(staging / WEIGHTS_FILE)
        except FileNotFoundError:
            raise CheckpointError(
                f"{weights} is missing although {CARD_FILE} describes it"
            ) from None
        if actual != card.weights_sha256:
            raise CheckpointError(
                f"{weights} has sha256 {actual} but its {CARD_FILE} records "
                f"{card.weights_sha256}: the weights were modified or corrupted"
            )
    return target
