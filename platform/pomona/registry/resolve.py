"""Turn what a user typed as MODEL into a local model directory.

Every command that reads a model accepts the same forms: a run directory, a model directory or a
registry version directory (anything holding ``model.json``), one of the two model files (each
as a local path or a URI such as ``s3://bucket/runs/r1``), or a registry reference (``name``,
``name:N``, ``name:latest``, ``name@alias``). Paths win over registry names, so ``./cats``
means the model folder even when a model ``cats`` is registered; only a folder that holds no
model (``./cats``, the images of the model ``cats``) gives way to the registered model.
Whatever the form, the weights are checked against a recorded sha256 before the directory is
returned: a path against its card's ``weights_sha256``, a registry version against
``version.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from pomona.errors import ConfigError, ModelNotFoundError, RegistryError
from pomona.location import Location, as_location, is_uri
from pomona.models.card import CARD_FILE, WEIGHTS_FILE
from pomona.registry.cache import cached_model
from pomona.registry.names import parse_ref
from pomona.registry.store import Registry
from pomona.registry.version import check_model_dir

_FORMS = (
    "pass a run or model directory, its model.safetensors or model.json, or a registry "
    "reference name, name:N, name:latest or name@alias"
)


class ResolvedModel(NamedTuple):
    """What a MODEL reference stands for.

    Attributes:
        directory: the local model directory (see :func:`resolve_model`).
        version: ``name:N`` when the reference was a registry reference (the version it
            pointed at when resolved), None for a path or URI.
    """

    directory: Path
    version: str | None


def resolve_model(reference: str | Location, registry: Registry | None = None) -> Path:
    """Find the local model directory ``reference`` stands for (see :func:`resolve_reference`)."""
    return resolve_reference(reference, registry).directory


def resolve_reference(reference: str | Location, registry: Registry | None = None) -> ResolvedModel:
    """Find the local model directory ``reference`` stands for, and the registry version it
    named, if any.

    Args:
        reference: a directory holding ``model.json``, a ``model.safetensors``/``model.json``
            file (either as a local path or a URI or location; a remote one is downloaded into
            the local cache, see :func:`pomona.registry.cache.cached_model`), or a registry
            reference. A path wins over a registry name, except a folder without ``model.json``.
        registry: where registry references are looked up; None uses the default registry
            (``$POMONA_REGISTRY`` or ``~/.pomona/registry``).

    Returns:
        A directory with ``model.safetensors`` and ``model.json`` whose weights match their
        recorded sha256 (the card's for a path, ``version.json``'s for a registry version), and
        for a registry reference the ``name:N`` it pointed at.

    Raises:
        ConfigError: ``reference`` is a URI that cannot be opened.
        ModelNotFoundError: ``reference`` is neither an existing model path nor a registered
            model; the message says what was tried.
        CheckpointError: the card does not parse, or the weights (or a registry version's
            files) no longer match their recorded sha256.
    """
    if isinstance(reference, Location) or is_uri(reference):
        location = as_location(reference)
        if location.local is None:
            if location.name in (WEIGHTS_FILE, CARD_FILE):
                location = location.parent
            if not (location / CARD_FILE).is_file():
                raise ModelNotFoundError(f"{location} holds no {CARD_FILE}; {_FORMS}")
            return ResolvedModel(cached_model(location), None)
        reference = str(location.local)
    path = Path(reference).expanduser()
    if path.is_dir():
        if (path / CARD_FILE).is_file():
            check_model_dir(path)
            return ResolvedModel(path, None)
        # No model here: a folder that shares a registered model's name (``shapes``, the images
        # of the model ``shapes``) does not hide that model.
        try:
            return _registered(reference, registry)
        except (RegistryError, ModelNotFoundError, ConfigError, OSError):  # no such model there
            raise ModelNotFoundError(
                f"{path} is a directory without {CARD_FILE}; {_FORMS}"
            ) from None
    if path.is_file():
        if path.name in (WEIGHTS_FILE, CARD_FILE):
            check_model_dir(path.parent)
            return ResolvedModel(path.parent, None)
        raise ModelNotFoundError(
            f"{path} is neither {WEIGHTS_FILE} nor {CARD_FILE} of a model directory; {_FORMS}"
        )
    try:
        return _registered(reference, registry)
    except RegistryError as error:
        raise ModelNotFoundError(
            f"model {reference!r} not found: no such file or directory, and not a registry "
            f"reference ({error})"
        ) from None
    except ModelNotFoundError as error:
        raise ModelNotFoundError(
            f"model {reference!r} not found: no such file or directory, and {error}"
        ) from None


def _registered(reference: str, registry: Registry | None) -> ResolvedModel:
    """The registry version ``reference`` points at now, pinned: the directory stays that
    version's even if an alias moves meanwhile.

    Raises:
        RegistryError: ``reference`` is not a registry reference.
        ModelNotFoundError: it names no registered version.
    """
    registry = registry if registry is not None else Registry()
    version = registry.get(parse_ref(reference)).ref
    return ResolvedModel(registry.local_path(version), version)
