"""The local cache of versions downloaded from a remote registry.

A remote version is downloaded once into ``<cache>/<name>/<N>-<weights sha256 prefix>/``,
hashed while it streams in, and published there atomically; later reads reuse it while its
files still match ``version.json``, and download it again when they do not.
"""

from __future__ import annotations

import logging
import os
import posixpath
from pathlib import Path

from pomona.errors import CheckpointError
from pomona.models.card import WEIGHTS_FILE
from pomona.registry.backend import Backend
from pomona.registry.version import VERSION_FILE, ModelVersion, verify_files, verify_local_files
from pomona.storage import atomic_directory

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
