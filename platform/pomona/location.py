"""Where datasets, runs and registries live: a local path or a ``pyarrow.fs`` URI.

:func:`as_location` turns what a user typed (``/data/ds``, ``runs/r1``, ``file:///mnt/x``,
``s3://bucket/ds``, ``gs://bucket/ds``) into a :class:`Location`: a ``pyarrow.fs`` filesystem, a
path inside it, and the URI to show in messages. A location pickles with its filesystem, so Ray
workers on other nodes read and write the same place.

Two kinds behave differently, and callers that write branch on :attr:`Location.local`:

- **local** (a plain path or ``file://``): a directory on this machine, or on a filesystem every
  node mounts at the same path. Writers keep their atomic renames and ``flock`` locks.
- **remote** (object stores): there is no rename and no lock, but one put is atomic. Writers
  build the artifact in a local staging directory and upload it with
  :meth:`Location.publish_tree`, the completion marker last, so a reader that sees the marker
  sees every file it describes.

Credentials come from pyarrow's usual chains (S3: ``AWS_*`` variables, ``~/.aws``, instance
roles; GCS: ``GOOGLE_APPLICATION_CREDENTIALS``, gcloud, the metadata server).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.fs as pafs

from pomona.errors import ConfigError
from pomona.storage import atomic_write_bytes

_CHUNK = 1 << 20
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SUPPORTED = "a local path, file:///ABSOLUTE/PATH, s3://BUCKET/PATH or gs://BUCKET/PATH"


def is_uri(text: str | os.PathLike[str]) -> bool:
    """Whether ``text`` names a location by URI (``scheme://...``) rather than a plain path."""
    return _SCHEME.match(os.fspath(text)) is not None


@dataclass(frozen=True)
class Location:
    """A file or directory in a ``pyarrow.fs`` filesystem.

    Attributes:
        filesystem: the filesystem.
        path: the path inside ``filesystem`` (absolute for the local filesystem).
        uri: how to name it to a user: the URI as given, or the absolute local path.
    """

    filesystem: pafs.FileSystem
    path: str
    uri: str

    def __str__(self) -> str:
        return self.uri

    def __truediv__(self, part: str) -> Location:
        """The location of ``part`` (a relative POSIX path) under this one."""
        return Location(
            self.filesystem,
            posixpath.join(self.path, part),
            f"{self.uri.rstrip('/')}/{part}",
        )

    @property
    def name(self) -> str:
        """The last component of the path."""
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def parent(self) -> Location:
        """The directory holding this file or directory."""
        return Location(
            self.filesystem,
            posixpath.dirname(self.path.rstrip("/")),
            self.uri.rstrip("/").rsplit("/", 1)[0],
        )

    @property
    def local(self) -> Path | None:
        """The local path, or None when the bytes live in an object store."""
        if isinstance(self.filesystem, pafs.LocalFileSystem):
            return Path(self.path)
        return None

    def _create_parent(self) -> None:
        # Needed on filesystems with real directories; on object stores it is a cheap no-op
        # or an empty marker object, which every reader here ignores.
        parent = posixpath.dirname(self.path.rstrip("/"))
        if parent:
            self.filesystem.create_dir(parent, recursive=True)

    def _info(self) -> pafs.FileInfo:
        return self.filesystem.get_file_info(self.path)

    def exists(self) -> bool:
        """Whether a file or directory is there."""
        return self._info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        """Whether a file is there."""
        return self._info().is_file

    def is_dir(self) -> bool:
        """Whether a directory is there (on object stores: anything under this prefix)."""
        return self._info().type == pafs.FileType.Directory

    def children(self) -> list[str]:
        """Names directly under this directory; [] when it does not exist."""
        selector = pafs.FileSelector(self.path, allow_not_found=True)
        return sorted(info.base_name for info in self.filesystem.get_file_info(selector))

    def read_bytes(self) -> bytes:
        """The file's contents.

        Raises:
            FileNotFoundError: there is no file.
        """
        with self.filesystem.open_input_stream(self.path) as stream:
            return stream.read()

    def read_text(self) -> str:
        """The file's contents as UTF-8."""
        return self.read_bytes().decode("utf-8")

    def write_bytes(self, data: bytes) -> None:
        """Replace the file with ``data``; readers see the old contents or the new, never a part.

        Locally a temporary sibling and a rename (parents are created); on an object store one
        put, which is atomic.
        """
        local = self.local
        if local is not None:
            local.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(local, data)
            return
        self._create_parent()
        with self.filesystem.open_output_stream(self.path) as stream:
            stream.write(data)

    def write_text(self, text: str) -> None:
        """:meth:`write_bytes` of UTF-8 ``text``."""
        self.write_bytes(text.encode("utf-8"))

    def sha256(self) -> str:
        """The hex sha256 of the file, streamed in 1 MiB chunks.

        Raises:
            FileNotFoundError: there is no file.
        """
        with self.filesystem.open_input_stream(self.path) as stream:
            return copy_stream(stream)

    def upload(self, source: Path) -> str:
        """Copy a local file here (one put on object stores); returns the sha256 of its bytes."""
        self._create_parent()
        with open(source, "rb") as local, self.filesystem.open_output_stream(self.path) as out:
            return copy_stream(local, out)

    def download(self, destination: Path) -> str:
        """Copy this file to a local file; returns the sha256 of its bytes.

        Raises:
            FileNotFoundError: there is no file.
        """
        destination.parent.mkdir(parents=True, exist_ok=True)
        with self.filesystem.open_input_stream(self.path) as remote, open(destination, "wb") as out:
            return copy_stream(remote, out)

    def download_existing(self, names: Iterable[str], directory: Path) -> list[str]:
        """Download those of ``names`` that exist under this directory into ``directory``.

        Returns:
            The names downloaded.
        """
        found = []
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                (self / name).download(directory / name)
                found.append(name)
        return found

    def publish_tree(self, source: Path, *, last: str) -> None:
        """Upload every file under local directory ``source`` here, the file ``last`` last.

        ``last`` is the artifact's completion marker (a dataset's manifest): a reader that sees
        it sees every other file. Whatever was here is removed first, marker first, so no reader
        takes a mix of old and new files for a complete artifact.
        """
        self.delete(first=last)
        files = sorted(p for p in source.rglob("*") if p.is_file())
        for path in sorted(files, key=lambda p: p.relative_to(source).as_posix() == last):
            (self / path.relative_to(source).as_posix()).upload(path)

    def delete(self, *, first: str | None = None) -> None:
        """Delete this directory and everything in it (nothing happens if it does not exist).

        Args:
            first: a file under it to delete before the rest (the completion marker), so the
                directory stops looking complete before any file it describes disappears.
        """
        if first is not None:
            with contextlib.suppress(FileNotFoundError):
                self.filesystem.delete_file((self / first).path)
        if self.exists():
            self.filesystem.delete_dir(self.path)


def as_location(target: str | os.PathLike[str] | Location) -> Location:
    """The :class:`Location` a user's path or URI names.

    Args:
        target: a local path (relative to the working directory, ``~`` expanded), a URI
            (``file:///abs/path``, ``s3://bucket/path``, ``gs://bucket/path``, or any other
            scheme ``pyarrow.fs.FileSystem.from_uri`` knows), or a ready location.

    Raises:
        ConfigError: an unknown scheme or a ``file:`` URI whose path is not absolute (the
            message names the value and the accepted forms), or a store that did not answer
            (e.g. an S3 bucket whose region cannot be found: what to check).
    """
    if isinstance(target, Location):
        return target
    text = os.fspath(target)
    if not text:
        raise ConfigError(f"an empty path is not a location; pass {_SUPPORTED}")
    if not is_uri(text):
        if text.lower().startswith("file:"):
            raise ConfigError(f"{text!r} is a relative file URI; pass {_SUPPORTED}")
        path = os.path.abspath(os.path.expanduser(text))
        return Location(pafs.LocalFileSystem(), path, path)
    try:
        filesystem, path = _open_uri(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        reason = " ".join(str(error).split())
        raise ConfigError(f"cannot open {text!r} ({reason}); pass {_SUPPORTED}") from None
    except OSError as error:  # a supported store that did not answer (network, bucket, access)
        reason = " ".join(str(error).split())
        raise ConfigError(
            f"cannot open {text!r} ({reason}); check the bucket's name, this machine's network "
            "and its credentials for the store"
        ) from None
    if isinstance(filesystem, pafs.LocalFileSystem):
        # file:///x names the local directory /x: show it the way local paths are shown.
        path = os.path.abspath(path)
        return Location(filesystem, path, path)
    return Location(filesystem, path.rstrip("/"), text.rstrip("/"))


@functools.lru_cache(maxsize=64)
def _open_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and path of a URI (tests stand an object store in for it here).

    Cached: opening an ``s3://`` URI asks S3 for the bucket's region, and commands parse the
    same dataset or run URI several times.
    """
    return pafs.FileSystem.from_uri(uri)


def file_in_the_way(path: Path) -> Path | None:
    """The file at ``path`` or above it, where a folder is needed; None when there is none."""
    return next((p for p in (path, *path.parents) if p.is_file()), None)


def check_output_dir(
    out: str | os.PathLike[str], *, resume: bool, marker: str, kind: str, command: str
) -> Location:
    """The output location of a run or sweep: new (or empty) unless resuming, and holding
    ``marker`` when resuming.

    Args:
        out: the directory or URI as the user gave it.
        resume: whether the command continues what is in ``out``.
        marker: the file a resumable directory holds (e.g. its config).
        kind: what the directory is, for messages (``run``, ``sweep``).
        command: the ``pomona`` subcommand that resumes it.

    Raises:
        ConfigError: ``out`` is a bad URI or a file (or under one), a fresh start would
            overwrite an existing directory, or there is nothing to resume.
    """
    location = as_location(out)
    blocker = None if location.local is None else file_in_the_way(location.local)
    if blocker is not None:
        raise ConfigError(f"{blocker} is a file, so {kind} directory {location} cannot be there")
    if resume and not (location / marker).is_file():
        raise ConfigError(f"cannot resume: {location} holds no {marker}")
    if not resume and location.is_dir() and location.children():
        raise ConfigError(
            f"{kind} directory {location} already exists; continue it with `pomona {command} "
            f"--resume {out}` or choose another --out"
        )
    return location


def replaceable(target: str | os.PathLike[str] | Location, marker: str) -> bool:
    """Whether pomona may replace ``target`` as a whole (an ``--overwrite``, an evaluation's
    ``--out``): nothing is there, an empty directory, or a directory holding ``marker``, the
    file pomona writes last into what it writes (a dataset's ``manifest.json``, a report's
    ``report.json``). Anything else may be the user's own files, which pomona never deletes.
    """
    location = as_location(target)
    if not location.exists():
        return True
    return location.is_dir() and (not location.children() or (location / marker).is_file())


class _Reader(Protocol):
    def read(self, size: int, /) -> bytes: ...


class _Writer(Protocol):
    def write(self, data: bytes, /) -> object: ...


def copy_stream(source: _Reader, destination: _Writer | None = None) -> str:
    """Stream ``source`` (into ``destination``, if any) in 1 MiB chunks; the sha256 of the bytes."""
    digest = hashlib.sha256()
    while chunk := source.read(_CHUNK):
        digest.update(chunk)
        if destination is not None:
            destination.write(chunk)
    return digest.hexdigest()
