"""What a version is (``version.json``, or the leftovers of an incomplete one) and the checks of
model files against checksums.

:func:`check_model_dir` checks a model directory's weights against its card's ``weights_sha256``
(every model path a user gives, and every directory before it is registered);
:func:`verify_files` checks a published version's files, stored or copied, against
``version.json``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, FiniteFloat, PositiveInt, ValidationError

from pomona.config import StrictModel, format_validation_error
from pomona.errors import CheckpointError
from pomona.models.card import CARD_FILE, WEIGHTS_FILE, ModelCard
from pomona.storage import sha256_file

VERSION_FILE = "version.json"
MODEL_FILES: tuple[str, ...] = (WEIGHTS_FILE, CARD_FILE)


class SweepTrial(StrictModel):
    """The sweep trial a version was registered from (``pomona sweep --register``).

    Attributes:
        sweep: the sweep directory.
        trial: the trial's id (its run directory is ``<sweep>/trials/<trial>``).
        settings: the trial's searched training settings (dotted keys); the model card holds
            the full training configuration.
        metric: the metric that ranked the sweep's trials.
        value: the trial's best value of ``metric``.
    """

    sweep: str
    trial: str
    settings: dict[str, Any]
    metric: str
    value: FiniteFloat


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
        sweep: the sweep trial it came from; None when it was not registered from a sweep.
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
    sweep: SweepTrial | None = None

    @property
    def ref(self) -> str:
        """``name:N``, a reference that always resolves to this version."""
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class IncompleteVersion:
    """A version directory with files but no ``version.json``: a registration that was killed
    or is still running (or a delete that was interrupted). No reader can see or load it.

    Attributes:
        name: model name.
        version: the version number it claimed (never reused, even after gc).
        files: the names of the files it holds.
        size: their total size in bytes.
        modified: when the newest of them was last written (UTC).
        writing: a live registration still holds it (known on local registries only).
        removed: gc removed its files.
    """

    name: str
    version: int
    files: tuple[str, ...]
    size: int
    modified: datetime
    writing: bool = False
    removed: bool = False

    @property
    def ref(self) -> str:
        """``name:N``."""
        return f"{self.name}:{self.version}"

    def age_s(self) -> float:
        """Seconds since the newest file was written."""
        return (datetime.now(UTC) - self.modified).total_seconds()


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
            f"{card.weights_sha256}: the weights were modified or corrupted, or do not belong to "
            "this card"
        )
    return card, hashes


def verify_files(
    record: ModelVersion, what: str, location: str, digest: Callable[[str], str | None]
) -> None:
    """Check every file of a version against ``version.json``.

    Args:
        record: the version.
        what: how to name the copy in messages (e.g. ``pets:3 in /srv/registry``).
        location: the directory holding the files, for messages.
        digest: file name -> the sha256 of that file in ``location``, or None if it is missing.

    Raises:
        CheckpointError: a file is missing or its sha256 differs from the recorded one.
    """
    for filename, expected in record.files.items():
        actual = digest(filename)
        if actual is None:
            raise CheckpointError(f"{what}: {filename} is missing from {location}")
        if actual != expected:
            raise CheckpointError(
                f"{what}: {posixpath.join(location, filename)} has sha256 {actual} but "
                f"version.json records {expected}; the file was modified or corrupted after "
                "registration"
            )


def verify_local_files(directory: Path, record: ModelVersion, what: str) -> None:
    """:func:`verify_files` for a local directory."""

    def digest(filename: str) -> str | None:
        path = directory / filename
        return sha256_file(path) if path.is_file() else None

    verify_files(record, what, str(directory), digest)
