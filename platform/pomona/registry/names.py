"""Model names, aliases and references (``name``, ``name:N``, ``name:latest``, ``name@alias``).

Names and aliases become path segments in the registry, so one strict rule keeps them safe on
every filesystem and object store: lower-case letters, digits, ``.``, ``_`` and ``-``, starting
with a letter or digit, at most 64 characters, never containing ``..``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pomona.errors import RegistryError

NAME_RULE = "1-64 characters from a-z, 0-9, '.', '_', '-', starting with a letter or digit, no '..'"
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
LATEST = "latest"


def validate_name(value: str, kind: str = "model name") -> str:
    """Return ``value`` if it is a valid model name or alias.

    Args:
        value: the candidate.
        kind: what it is, for the error message (``model name``, ``alias``).

    Raises:
        RegistryError: naming the value and the rule.
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise RegistryError(f"invalid {kind} {value!r}: use {NAME_RULE}")
    return value


def validate_alias(value: str) -> str:
    """Return ``value`` if it can be an alias: a valid name other than ``latest``, not all
    digits (``name@3`` beside ``name:3`` would read as a version).

    Raises:
        RegistryError: naming the value and the rule.
    """
    validate_name(value, "alias")
    if value == LATEST:
        raise RegistryError(
            f"{LATEST!r} is reserved for the newest version (name:{LATEST}) and cannot be an alias"
        )
    if value.isdigit():
        raise RegistryError(
            f"alias {value!r} would read as a version number; give it a name with a letter "
            f"(e.g. production, v{value})"
        )
    return value


@dataclass(frozen=True)
class ModelRef:
    """A reference to one model version: by number, by alias, or the latest.

    Attributes:
        name: the model name.
        version: a version number, or None.
        alias: an alias, or None; at most one of ``version`` and ``alias`` is set, and neither
            means the latest version.
    """

    name: str
    version: int | None = None
    alias: str | None = None

    def __post_init__(self) -> None:
        validate_name(self.name)
        if self.version is not None and self.alias is not None:
            raise RegistryError(f"a reference takes a version or an alias, not both: {self}")
        if self.version is not None and (
            isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1
        ):
            raise RegistryError(f"version must be a positive integer, got {self.version!r}")
        if self.alias is not None:
            validate_alias(self.alias)

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def parse_ref(text: str) -> ModelRef:
    """Parse ``name``, ``name:N``, ``name:latest`` or ``name@alias``.

    Raises:
        RegistryError: the text is not one of those forms or a part breaks the naming rule.
    """
    if not isinstance(text, str):
        raise RegistryError(f"a model reference must be a string, got {type(text).__name__}")
    forms = "expected name, name:N, name:latest or name@alias"
    if text.count(":") + text.count("@") > 1:
        raise RegistryError(f"invalid model reference {text!r}: {forms}")
    if "@" in text:
        name, _, alias = text.partition("@")
        return ModelRef(name, alias=alias)
    if ":" in text:
        name, _, version = text.partition(":")
        if version == LATEST:
            return ModelRef(name)
        if not version.isascii() or not version.isdigit():
            raise RegistryError(
                f"invalid version {version!r} in {text!r}: a positive integer or {LATEST!r}"
            )
        return ModelRef(name, version=int(version))
    return ModelRef(text)
