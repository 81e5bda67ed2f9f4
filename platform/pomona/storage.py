"""Durable local file writes: checksums, atomic files and atomic directories.

Artifacts are published by writing under a temporary name in the same directory and renaming,
so a crash never leaves a file or directory that looks complete but is not.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's contents, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary sibling and ``os.replace``.

    Raises:
        IsADirectoryError: ``path`` is a directory (named in the error, not the sibling).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


_PARTIAL = ".partial"
_OLD = ".old"


@contextmanager
def atomic_directory(final: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory that becomes ``final`` only if the block succeeds.

    On an exception the temporary directory is deleted and ``final`` is untouched. With
    ``overwrite`` an existing ``final`` is replaced (moved aside, then deleted) once the new
    content is complete; without it, an existing ``final`` raises ``FileExistsError`` up front.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise FileExistsError(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    tmp = final.with_name(f".{final.name}.{token}{_PARTIAL}")
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.{token}{_OLD}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class LockedError(OSError):
    """Another live process holds the lock (see :func:`exclusive_writer`)."""


@contextmanager
def exclusive_writer(final: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on writing ``final`` for the block, or raise :class:`LockedError`.

    The lock is an advisory ``flock`` on the hidden sibling ``.<name>.lock``; the kernel drops
    it when its process ends, however it ends (even by SIGKILL), so a lock is never stale.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    path = final.with_name(f".{final.name}.lock")
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:  # named by what the user asked for, not the hidden lock file
            reason = f"cannot be created ({error.strerror})"
            raise OSError(error.errno, reason, str(final)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockedError(f"another process is writing {final}") from None
        # The previous holder unlinks the file when done; a lock on the unlinked file guards
        # nothing, so retry until the lock is on the file that the path names.
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def remove_stale_partials(final: str | Path) -> list[Path]:
    """Delete what interrupted :func:`atomic_directory` blocks for ``final`` left behind.

    A process killed inside the block (SIGKILL, power loss) leaves its temporary sibling, and
    one killed while replacing ``final`` leaves the old copy. Call this only while holding
    :func:`exclusive_writer` for ``final``: no other writer of ``final`` is alive then, so every
    such sibling is garbage.

    Returns:
        The directories removed.
    """
    final = Path(final)
    # Exactly the names atomic_directory makes: another OUT's (``ds.v2`` beside ``ds``) differ.
    pattern = re.compile(
        rf"{re.escape(f'.{final.name}.')}[0-9a-f]{{8}}({re.escape(_PARTIAL)}|{re.escape(_OLD)})"
    )
    if not final.parent.is_dir():
        return []
    stale = [
        path for path in final.parent.iterdir() if pattern.fullmatch(path.name) and path.is_dir()
    ]
    for path in stale:
        logger.info("removing %s, left by an interrupted write of %s", path, final)
        shutil.rmtree(path, ignore_errors=True)
    return stale
