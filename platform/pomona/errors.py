"""The exceptions pomona raises on purpose.

Every error a user can cause derives from :class:`PomonaError`; the CLI prints its message on one
line and exits with status 2, and the serving layer maps ``http_status`` onto the response. The
classes take a single message argument so they pickle cleanly across Ray processes.
:func:`first_few` is how their messages list many things.
"""

from __future__ import annotations

from collections.abc import Sequence


def first_few(items: Sequence[str], shown: int) -> str:
    """The first ``shown`` of ``items``, comma-separated, and how many more there are:
    ``a, b, c and 4 more``."""
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


class PomonaError(Exception):
    """Base class: a problem the user can fix, described in the message."""

    http_status: int = 500


class ConfigError(PomonaError):
    """A configuration value, flag or YAML file is invalid."""

    http_status = 400


class DatasetError(PomonaError):
    """An image folder or an ingested dataset cannot be used."""

    http_status = 400


class CheckpointError(PomonaError):
    """A checkpoint or weights file is missing, corrupt or does not fit the model."""

    http_status = 500


class TrainingError(PomonaError):
    """Training cannot go on with these settings (e.g. the loss became NaN)."""

    http_status = 500


class ModelNotFoundError(PomonaError):
    """A model name, version, alias or file does not exist."""

    http_status = 404


class RegistryError(PomonaError):
    """The model registry refused an operation (bad name, aliased version, checksum mismatch)."""

    http_status = 409


class InvalidRequestError(PomonaError):
    """A request (HTTP body, image upload) is malformed."""

    http_status = 400


class ClusterError(PomonaError):
    """A Ray cluster refused or failed a request: unreachable, wrong token, failed job."""

    http_status = 502
