"""Find the files of a labelled image folder and the label of each.

Two layouts are understood:

* ``folder``: ``SRC/<label>/.../<file>``; the label is the first sub-folder under ``SRC``.
* ``prefix``: ``SRC/<label>_<digits>.<ext>``; the label is the file name before the last
  ``_<digits>`` (``granny_smith_7.jpg`` -> ``granny_smith``).

``auto`` picks ``folder`` when ``SRC`` has sub-folders and ``prefix`` otherwise. Every regular file
is *found*; a file whose label cannot be derived is kept with ``label=None`` so that ingest rejects
it with a reason instead of dropping it silently.
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


@dataclass(frozen=True)
class SourceFile:
    """One file under the source folder.

    Attributes:
        path: path relative to the source folder, with ``/`` separators.
        label: the derived class name, or None when the layout gives none.
    """

    path: str
    label: str | None


def label_from_name(file_name: str) -> str | None:
    """Label of a ``prefix``-layout file: the stem before the last ``_<digits>``, or None."""
    match = _PREFIX.match(Path(file_name).stem)
    return match.group("label") if match else None


def resolve_layout(src: Path, label_from: LabelFrom) -> Literal["folder", "prefix"]:
    """Turn ``auto`` into ``folder`` (src has sub-folders) or ``prefix`` (it has none)."""
    if label_from != "auto":
        return label_from
    has_dirs = any(entry.is_dir() and not entry.name.startswith(".") for entry in src.iterdir())
    return "folder" if has_dirs else "prefix"


def discover(
    src: str | Path, label_from: LabelFrom = "auto"
) -> tuple[Literal["folder", "prefix"], list[SourceFile]]:
    """List every regular file under ``src`` with its label, sorted by path.

    Args:
        src: the labelled image folder.
        label_from: ``folder``, ``prefix`` or ``auto``.

    Returns:
        The resolved layout and the files found.

    Raises:
        DatasetError: src is missing, not a directory, or holds no files.
    """
    src = Path(src)
    if not src.exists():
        raise DatasetError(f"source folder {src} does not exist")
    if not src.is_dir():
        raise DatasetError(f"source {src} is not a directory")
    layout = resolve_layout(src, label_from)
    files: list[SourceFile] = []
    for root, dirs, names in os.walk(src, onerror=_raise_walk_error):
        root_path = Path(root)
        # Hidden folders (.git, .ipynb_checkpoints) are tooling, not classes.
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            full = root_path / name
            if not full.is_file():
                continue
            rel = full.relative_to(src)
            files.append(SourceFile(rel.as_posix(), _label(rel, layout)))
    if not files:
        raise DatasetError(f"source folder {src} holds no files: expected labelled images")
    files.sort(key=lambda f: f.path)
    return layout, files


def _label(rel: Path, layout: Literal["folder", "prefix"]) -> str | None:
    if layout == "folder":
        return rel.parts[0] if len(rel.parts) > 1 else None
    return label_from_name(rel.name)


def _raise_walk_error(error: OSError) -> None:
    raise DatasetError(f"cannot list {error.filename}: {error.strerror}")
