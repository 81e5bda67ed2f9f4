"""Versioned model store on a local directory or a ``pyarrow.fs`` URI (S3, GCS). No Ray here."""

from pomona.registry.names import NAME_RULE, ModelRef, parse_ref, validate_alias, validate_name
from pomona.registry.store import (
    ALIASES_FILE,
    VERSION_FILE,
    ModelVersion,
    Registry,
    check_model_dir,
    default_cache_dir,
    default_root,
)


def __getattr__(name: str) -> object:
    # Until the resolver moves into this package, re-export it lazily: models.resolve imports
    # this package, so an eager import here would be circular.
    if name == "resolve_model":
        from pomona.models.resolve import resolve_model

        return resolve_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
