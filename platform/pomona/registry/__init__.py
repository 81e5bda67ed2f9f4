"""Versioned model store on a local directory or a ``pyarrow.fs`` URI (S3, GCS), and the one place
that turns what a user typed (a path or ``name``, ``name:N``, ``name@alias``) into a verified local
model directory. No Ray here."""

from pomona.registry.names import NAME_RULE, ModelRef, parse_ref, validate_alias, validate_name
from pomona.registry.resolve import resolve_model
from pomona.registry.store import (
    ALIASES_FILE,
    VERSION_FILE,
    ModelVersion,
    Registry,
    check_model_dir,
    default_cache_dir,
    default_root,
)

__all__ = [
    "ALIASES_FILE",
    "NAME_RULE",
    "VERSION_FILE",
    "ModelRef",
    "ModelVersion",
    "Registry",
    "check_model_dir",
    "default_cache_dir",
    "default_root",
    "parse_ref",
    "resolve_model",
    "validate_alias",
    "validate_name",
]
