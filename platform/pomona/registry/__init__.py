"""Versioned model store on a local directory or a ``pyarrow.fs`` URI (S3, GCS), and the one place
that turns what a user typed (a path or ``name``, ``name:N``, ``name@alias``) into a verified local
model directory. No Ray here.

Modules: :mod:`~pomona.registry.names` (names and references), :mod:`~pomona.registry.version`
(``version.json`` and checksum checks), :mod:`~pomona.registry.backend` (local directory or
object store), :mod:`~pomona.registry.cache` (local copies of remote versions),
:mod:`~pomona.registry.store` (:class:`Registry`: numbers, publishing, aliases) and
:mod:`~pomona.registry.resolve` (:func:`resolve_model`, :func:`resolve_reference`).
"""

from pomona.registry.cache import default_cache_dir
from pomona.registry.names import NAME_RULE, ModelRef, parse_ref, validate_alias, validate_name
from pomona.registry.resolve import ResolvedModel, resolve_model, resolve_reference
from pomona.registry.store import ALIASES_FILE, Registry, default_root
from pomona.registry.version import (
    VERSION_FILE,
    IncompleteVersion,
    ModelVersion,
    SweepTrial,
    check_model_dir,
)

__all__ = [
    "ALIASES_FILE",
    "NAME_RULE",
    "VERSION_FILE",
    "IncompleteVersion",
    "ModelRef",
    "ModelVersion",
    "Registry",
    "ResolvedModel",
    "SweepTrial",
    "check_model_dir",
    "default_cache_dir",
    "default_root",
    "parse_ref",
    "resolve_model",
    "resolve_reference",
    "validate_alias",
    "validate_name",
]
