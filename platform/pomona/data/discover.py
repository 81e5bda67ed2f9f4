"""Find the files of a labelled image folder and the label of each.

Two layouts are understood:

* ``folder``: ``SRC/<label>/.../<file>``; the label is the first sub-folder under ``SRC``.
* ``prefix``: ``SRC/<label>_<digits>.<ext>``; the label is the file name before the last
  ``_<digits>`` (``granny_smith_7.jpg`` -> ``granny_smith``).

``auto`` picks ``folder`` when ``SRC`` has sub-folders and ``prefix`` otherwise. Every regular file
is *found*. Litter that operating systems and tools leave in folders (hidden files and folders
such as ``.DS_Store``, ``._x.jpg`` or ``.git/``, ``Thumbs.db``, ``desktop.ini``, ``__MACOSX/``) is
*ignored*: counted, never read. Any other file whose label cannot be derived is kept with
``label=None`` so that ingest rejects it with a reason instead of dropping it silently.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pomona.errors import DatasetError

LabelFrom = Literal["folder", "prefix", "auto"]
_PREFIX = re.compile(r"^(?P<label>.+?)_\d+$")
# Written by Windows Explorer and macOS's archiver; compared case-insensitively (Windows is).
_LITTER_FILES = frozenset({"thumbs.db", "desktop.ini"})
_LITTER_DIRS = frozenset({"__macosx"})


@dataclass(frozen=True)
class SourceFile:
    """One file under the source folder.

    Attributes:
        path: path relative to the source folder, with ``/`` separators.
        label: the derived class name, or None when the layout gives none.
    """

    path: str
    label: str | None


@dataclass(frozen=True)
class Discovery:
    """What :func:`discover` found under the source folder.

    Attributes:
        layout: the resolved layout, ``folder`` or ``prefix``.
        files: every file that is not litter, sorted by path.
        ignored: how many files were litter (see the module docstring) and were skipped.
    """

    layout: Literal["folder", "prefix"]
    files: list[SourceFile]
    ignored: int

    @property
    def found(self) -> int:
        """Every regular file under the source folder: ``len(files) + ignored``."""
        return len(self.files) + self.ignored


def is_litter(name: str) -> bool:
    """Whether a file or folder name is OS or tool litter rather than data."""
    lowered = name.lower()
    return name.startswith(".") or lowered in _LITTER_FILES or lowered in _LITTER_DIRS


def label_from_name(file_name: str) -> str | None:
    """Label of a ``prefix``-layout file: the stem before the last ``_<digits>``, or None."""
    match = _PREFIX.match(Path(file_name).stem)
    return match.group("label") if match else None


def resolve_layout(src: Path, label_from: LabelFrom) -> Literal["folder", "prefix"]:
    """Turn ``auto`` into ``folder`` (src has sub-folders) or ``prefix`` (it has none)."""
    if label_from != "auto":
        return label_from
    has_dirs = any(entry.is_dir() and not is_litter(entry.name) for entry in src.iterdir())
    return "folder" if has_dirs else "prefix"


def discover(src: str | Path, label_from: LabelFrom = "auto") -> Discovery:
    """List every regular file under ``src`` with its label, sorted by path, and count litter.

    Args:
        src: the labelled image folder.
        label_from: ``folder``, ``prefix`` or ``auto``.

    Returns:
        The resolved layout, the files to ingest and the number of ignored files.

    Raises:
        DatasetError: src is missing, not a directory, or holds no files besides litter.
    """
    src = Path(src)
    if not src.exists():
        raise DatasetError(f"source folder {src} does not exist")
    if not src.is_dir():
        raise DatasetError(f"source {src} is not a directory")
    layout = resolve_layout(src, label_from)
    paths, ignored = walk_files(src, "labelled images")
    files = [SourceFile(rel.as_posix(), _label(rel, layout)) for rel in paths]
    return Discovery(layout, files, ignored)


def walk_files(src: Path, expected: str) -> tuple[list[Path], int]:
    """The files below the folder ``src``, relative to it and sorted, OS and tool litter skipped.

    Args:
        src: an existing folder.
        expected: what it should hold, for the error when it holds nothing.

    Returns:
        The files, and how many litter files were skipped.

    Raises:
        DatasetError: ``src`` holds no files besides litter, or cannot be read.
    """
    files: list[Path] = []
    ignored = 0
    for root, dirs, names in os.walk(src, onerror=_raise_walk_error):
        root_path = Path(root)
        inside_litter = any(is_litter(part) for part in root_path.relative_to(src).parts)
        dirs.sort()
        for name in names:
            full = root_path / name
            if not full.is_file():
                continue
            if inside_litter or is_litter(name):
                ignored += 1
                continue
            files.append(full.relative_to(src))
    if not files:
        litter = f" ({ignored} ignored as OS or tool litter)" if ignored else ""
        raise DatasetError(f"folder {src} holds no files{litter}: expected {expected}")
    files.sort(key=Path.as_posix)
    return files, ignored


def _label(rel: Path, layout: Literal["folder", "prefix"]) -> str | None:
    if layout == "folder":
        return rel.parts[0] if len(rel.parts) > 1 else None
    return label_from_name(rel.name)


def _raise_walk_error(error: OSError) -> None:
    raise DatasetError(f"cannot list {error.filename}: {error.strerror}")
