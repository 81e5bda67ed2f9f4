"""Configuration plumbing shared by every YAML-driven command.

Every config is a pydantic model derived from :class:`StrictModel` (unknown keys are errors). A
config is loaded by :func:`load_config` from an optional YAML file, then ``--set key=value``
overrides (dotted keys reach nested models; values are parsed as YAML scalars), then typed flag
values, and validated once at the end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from pomona.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for pomona configs and artifacts: unknown keys are rejected, values re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into ``{"a": {"b": 1}, "c": "x"}``.

    Raises:
        ConfigError: a pair has no ``=`` or an empty key.
    """
    tree: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        node = tree
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {pair!r} conflicts with another --set for {part!r}")
        node[leaf] = yaml.safe_load(raw) if raw else ""
    return tree


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``update`` merged in; nested mappings merge, other values replace."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def format_validation_error(error: ValidationError, source: str) -> str:
    """One readable line per problem: ``key.path: message (got value)``, under ``invalid
    source:``. A check of several fields together (a model validator) names no key, and the
    message a validator raised is shown without pydantic's ``Value error,`` prefix."""
    lines = []
    for problem in error.errors():
        where = ".".join(str(p) for p in problem["loc"])
        message = problem["msg"]
        if problem["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        if not where:
            lines.append(message)
            continue
        got = problem.get("input")
        named = isinstance(got, str) and repr(got) in message  # the validator quoted it
        shown = "" if isinstance(got, dict) or named else f" (got {got!r})"
        lines.append(f"{where}: {message}{shown}")
    return f"invalid {source}:\n  " + "\n  ".join(lines)


def validate(model: type[M], data: Mapping[str, Any], source: str) -> M:
    """Validate ``data`` as ``model``, turning pydantic's error into a :class:`ConfigError`."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, source)) from None


class TextFile(Protocol):
    """A file that can be checked and read: a :class:`~pathlib.Path` or a
    :class:`~pomona.location.Location` (a config inside a remote run directory)."""

    def is_file(self) -> bool: ...

    def read_text(self) -> str: ...


def load_config(
    model: type[M],
    path: str | Path | TextFile | None = None,
    overrides: Iterable[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> M:
    """Load a config: YAML file (optional), then ``--set`` overrides, then explicit flag values.

    Args:
        model: the pydantic model to validate against.
        path: a YAML file with a mapping at the top (a local path or a location), or None
            for defaults only.
        overrides: ``key=value`` strings, dotted keys for nested fields.
        flags: already-typed values (dotted keys allowed) that win over the file and ``--set``;
            ``None`` values are ignored so unset CLI flags do not clobber the file.

    Raises:
        ConfigError: the file is missing or not a mapping, or the result does not validate.
    """
    data: dict[str, Any] = {}
    source = "configuration"
    if path is not None:
        path = Path(path) if isinstance(path, str) else path
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"{path} must hold a YAML mapping at the top, got {type(loaded).__name__}"
            )
        data = loaded
    data = deep_merge(data, parse_overrides(overrides))
    if flags:
        pairs = {k: v for k, v in flags.items() if v is not None}
        for key, value in pairs.items():
            node = data
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    return validate(model, data, source)
