"""Where the registry's bytes live: a local directory or an object store, behind one interface.

:class:`Backend` does all I/O through ``pyarrow.fs``, so reading, listing, copying and deleting
are the same everywhere. Four things differ and each backend implements them:

- **atomic writes**: locally a temporary file and a rename; on an object store one put (an object
  appears whole or not at all);
- **claiming a directory** (create-if-absent, the basis of unique version numbers): locally
  ``os.mkdir``, which fails atomically when the directory exists; object stores have no such
  operation in ``pyarrow.fs``, so a writer puts a unique ``.claim-<token>`` object into the
  directory, lists it, and keeps it only if its claim is alone;
- **locks**: locally ``flock`` on the directory itself (released by the kernel when the holder
  dies, even by SIGKILL); object stores offer none, so there the lock is a no-op;
- **a local path**: a local backend can hand out its directories as they are; a remote one cannot.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import posixpath
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs

from pomona.errors import RegistryError
from pomona.location import Location, as_location

CLAIM_PREFIX = ".claim-"


class Backend(ABC):
    """Storage for one registry root; every path is a POSIX string inside the filesystem.

    Args:
        filesystem: the ``pyarrow.fs`` filesystem.
        root: the registry's root inside ``filesystem``.
        uri: how to name the root in messages.
    """

    def __init__(self, filesystem: pafs.FileSystem, root: str, uri: str) -> None:
        self.fs = filesystem
        self.root = root
        self.uri = uri

    def join(self, *parts: str | int) -> str:
        """The path of ``parts`` under the root."""
        return posixpath.join(self.root, *(str(p) for p in parts))

    def at(self, path: str) -> Location:
        """``path`` as a :class:`~pomona.location.Location` in this backend's filesystem."""
        return Location(self.fs, path, path)

    def read(self, path: str) -> bytes | None:
        """A file's contents, or None when it does not exist."""
        try:
            return self.at(path).read_bytes()
        except FileNotFoundError:
            return None

    def list_dirs(self, path: str) -> list[str]:
        """Names of the directories directly under ``path`` (none if it does not exist)."""
        selector = pafs.FileSelector(path, allow_not_found=True)
        return [
            info.base_name
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.Directory
        ]

    def list_files(self, path: str) -> list[pafs.FileInfo]:
        """The files directly under ``path`` (with size and modification time)."""
        selector = pafs.FileSelector(path, allow_not_found=True)
        return [info for info in self.fs.get_file_info(selector) if info.is_file]

    def are_files(self, paths: list[str]) -> list[bool]:
        """For each path, whether a file exists there (one batched call on object stores)."""
        return [info.is_file for info in self.fs.get_file_info(paths)]

    def create_dir(self, path: str) -> None:
        """Create ``path`` and its parents if missing."""
        self.fs.create_dir(path, recursive=True)

    def upload(self, source: Path, destination: str) -> str:
        """Copy a local file to ``destination``; returns the sha256 of the bytes written."""
        return self.at(destination).upload(source)

    def download(self, source: str, destination: Path) -> str | None:
        """Copy ``source`` to a local file; returns the sha256 of the bytes, None if missing."""
        try:
            return self.at(source).download(destination)
        except FileNotFoundError:
            return None

    def sha256(self, path: str) -> str | None:
        """The sha256 of a stored file, read in chunks; None when it does not exist."""
        try:
            return self.at(path).sha256()
        except FileNotFoundError:
            return None

    def delete_file(self, path: str) -> None:
        """Delete a file; a missing one is not an error."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(path)

    def delete_dir(self, path: str) -> None:
        """Delete a directory and everything in it."""
        self.fs.delete_dir(path)

    @abstractmethod
    def write_atomic(self, path: str, data: bytes) -> None:
        """Write ``data`` so that readers see the old contents or the new, never a part."""

    @abstractmethod
    def claim(self, path: str) -> bool:
        """Create directory ``path`` if no one has; True only for the one caller that did."""

    @abstractmethod
    def lock(self, path: str, *, wait: bool = True) -> contextlib.AbstractContextManager[bool]:
        """Hold an exclusive lock on directory ``path`` for the ``with`` block.

        Yields whether the lock is held: with ``wait`` the call blocks until it is; without,
        it yields False at once when someone else holds it.
        """

    @abstractmethod
    def local_dir(self, path: str) -> Path | None:
        """``path`` as a local directory, or None when the bytes are remote."""


class LocalBackend(Backend):
    """A registry in a local (or network-mounted POSIX) directory."""

    def __init__(self, root: str) -> None:
        root = os.path.abspath(os.path.expanduser(root))
        super().__init__(pafs.LocalFileSystem(), root, root)

    def write_atomic(self, path: str, data: bytes) -> None:
        directory, filename = posixpath.split(path)
        tmp = posixpath.join(directory, f".{filename}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with self.fs.open_output_stream(tmp) as stream:
                stream.write(data)
            self.fs.move(tmp, path)
        finally:
            self.delete_file(tmp)

    def claim(self, path: str) -> bool:
        try:
            os.mkdir(path)
        except FileExistsError:
            return False
        return True

    @contextlib.contextmanager
    def lock(self, path: str, *, wait: bool = True) -> Iterator[bool]:
        descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            # Closing the descriptor releases the lock.
            os.close(descriptor)

    def local_dir(self, path: str) -> Path | None:
        return Path(path)


class ObjectStoreBackend(Backend):
    """A registry on S3, GCS or any other ``pyarrow.fs`` filesystem without atomic renames."""

    def write_atomic(self, path: str, data: bytes) -> None:
        # An object appears whole or not at all, so one put is already atomic.
        with self.fs.open_output_stream(path) as stream:
            stream.write(data)

    def claim(self, path: str) -> bool:
        self.fs.create_dir(path)
        claim = posixpath.join(path, f"{CLAIM_PREFIX}{uuid.uuid4().hex}")
        with self.fs.open_output_stream(claim):
            pass
        # Only claim objects count: some stores also list a marker object for the "directory".
        claims = [
            info.path
            for info in self.fs.get_file_info(pafs.FileSelector(path))
            if info.base_name.startswith(CLAIM_PREFIX)
        ]
        if claims == [claim]:
            return True
        self.fs.delete_file(claim)
        return False

    @contextlib.contextmanager
    def lock(self, path: str, *, wait: bool = True) -> Iterator[bool]:
        # No lock primitive on object stores: the registry's docstring says what that means.
        yield True

    def local_dir(self, path: str) -> Path | None:
        return None


def open_backend(
    root: str | os.PathLike[str], filesystem: pafs.FileSystem | None = None
) -> Backend:
    """The backend for a registry root.

    Args:
        root: a local path, or a URI with a scheme (``s3://``, ``gs://``, ``file://``, see
            :func:`pomona.location.as_location`); with ``filesystem``, a path inside it.
        filesystem: a ready ``pyarrow.fs.FileSystem`` (e.g. an ``S3FileSystem`` with a custom
            endpoint).

    Raises:
        RegistryError: a local root is a file.
    """
    root = os.fspath(root)
    if filesystem is None:
        location = as_location(root)
        if location.local is not None:
            if location.local.exists() and not location.local.is_dir():
                raise RegistryError(
                    f"registry {location.uri} is a file, not a directory; pass --registry a "
                    "directory (created on first use) or an s3://, gs:// or file:// URI"
                )
            return LocalBackend(location.path)
        return ObjectStoreBackend(location.filesystem, location.path, location.uri)
    if isinstance(filesystem, pafs.LocalFileSystem):
        return LocalBackend(root)
    return ObjectStoreBackend(filesystem, root, root)
