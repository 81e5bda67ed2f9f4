"""Configuration plumbing shared by every YAML-driven command.

Every config is a pydantic model derived from :class:`StrictModel` (unknown keys are errors). A
config is loaded by :func:`load_config` from an optional YAML file, then ``--set key=value``
overrides (dotted keys reach nested models; values are parsed as YAML scalars), then typed flag
values, and validated once at the end.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo

from pomona.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
#: The key of the flags in the validation context :func:`validate` gives validators.
_FLAGS = "pomona.flags"


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


def format_validation_error(
    error: ValidationError,
    source: str,
    flags: Mapping[str, str] | None = None,
    model: type[BaseModel] | None = None,
) -> str:
    """One readable line per problem: ``key.path: message (got value)``, under ``invalid
    source:``. A check of several fields together (a model validator) names no key, and the
    message a validator raised is shown without pydantic's ``Value error,`` prefix.

    ``flags`` maps a dotted key to the command-line flag its value came from: a problem there is
    named by that flag, as the user typed it (``--lr`` rather than ``learning_rate``), and one
    deeper inside it by the flag and the rest of its key (``--split (train)``). A validator's
    message names such a setting by its flag too (``--batch-size (1) must be >= --workers
    (2)``). With the ``model`` that was validated, an unknown key is answered with the keys
    there are.
    """
    lines: list[str] = []
    for problem in error.errors():
        loc = tuple(str(part) for part in problem["loc"])
        where = _where(loc, flags or {})
        message = problem["msg"]
        if problem["type"] == "value_error":
            message = _flagged(message.removeprefix("Value error, "), loc, flags or {})
        known = _keys_at(model, loc[:-1]) if problem["type"] == "extra_forbidden" else None
        if known:
            message = f"not a setting; choose one of {', '.join(known)}"
        if where:
            got = problem.get("input")
            named = isinstance(got, str) and repr(got) in message  # the validator quoted it
            shown = "" if isinstance(got, dict) or named else f" (got {got!r})"
            message = f"{where}: {message}{shown}"
        if message not in lines:  # two keys from one flag (--image-size) can fail alike
            lines.append(message)
    return f"invalid {source}:\n  " + "\n  ".join(lines)


def _flagged(message: str, loc: tuple[str, ...], flags: Mapping[str, str]) -> str:
    """``message`` with each setting it names that a flag gave written as that flag.

    A validator names settings by their keys, in full (``model.weights``) or from the model it
    checks (``batch_size`` inside ``train``, at ``loc``). A key that could be an English word
    (``workers``, ``data``) is replaced only where a value follows it (``workers 3``). The
    setting at ``loc`` itself is left alone: the line already starts with its flag.
    """
    prefix = "".join(f"{part}." for part in loc)
    names = dict(flags)
    names.update({key.removeprefix(prefix): flag for key, flag in flags.items() if prefix})
    names.pop(".".join(loc), None)
    if not names:
        return message
    keys = "|".join(map(re.escape, sorted(names, key=len, reverse=True)))
    pattern = re.compile(rf"(?<![\w.-])({keys})(?!\w)")

    def flag(match: re.Match[str]) -> str:
        key, after = match.group(1), message[match.end() : match.end() + 2]
        named = "_" in key or "." in key or re.fullmatch(r" [\d('\"]", after) is not None
        return names[key] if named else key

    return pattern.sub(flag, message)


def _where(loc: tuple[str, ...], flags: Mapping[str, str]) -> str:
    """``loc`` as a dotted key, or as the flag that set it or one of its parents."""
    for end in range(len(loc), 0, -1):
        flag = flags.get(".".join(loc[:end]))
        if flag is not None:
            rest = ".".join(loc[end:])
            return f"{flag} ({rest})" if rest else flag
    return ".".join(loc)


def _model_at(model: type[BaseModel] | None, loc: Sequence[str]) -> type[BaseModel] | None:
    """The (nested) model at ``loc`` inside ``model``; None where there is none."""
    for part in loc:
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return None
        nested = [t for t in (field.annotation, *get_args(field.annotation)) if _is_model(t)]
        model = nested[0] if nested else None
    return model


def _is_model(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _keys_at(model: type[BaseModel] | None, loc: Sequence[str]) -> list[str]:
    """The keys of the (nested) model at ``loc`` inside ``model``; [] where that is not known."""
    found = _model_at(model, loc)
    return list(found.model_fields) if found is not None else []


def with_default(model: type[BaseModel], key: str, text: str) -> str:
    """A flag's help ``text`` followed by the default of setting ``key`` of ``model``, as typer
    shows defaults: for flags that default to None, so that a flag not given leaves the config
    file's value."""
    return f"{text} [default: {default_text(model, key)}]"


def default_text(model: type[BaseModel], key: str) -> str:
    """The default of the dotted ``key`` of ``model``, as help texts show it: ``0.1``,
    ``simple_cnn``; ``""`` where it has none (required) or is None."""
    *parents, leaf = key.split(".")
    parent = _model_at(model, parents)
    field = parent.model_fields.get(leaf) if parent is not None else None
    if field is None:
        raise KeyError(f"{model.__name__} has no setting {key!r}")
    if field.is_required():
        return ""
    value = field.get_default(call_default_factory=True)
    return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def flag_of(key: str) -> str:
    """The flag named after a dotted config key's last part: ``train.num_workers`` ->
    ``--num-workers``."""
    return "--" + key.rpartition(".")[2].replace("_", "-")


def validate(
    model: type[M],
    data: Mapping[str, Any],
    source: str,
    flags: Mapping[str, str] | None = None,
) -> M:
    """Validate ``data`` as ``model``, turning pydantic's error into a :class:`ConfigError`
    (``flags`` as in :func:`format_validation_error`; validators find them with
    :func:`flags_within`)."""
    try:
        return model.model_validate(data, context={_FLAGS: flags or {}})
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, source, flags, model)) from None


def flags_within(info: ValidationInfo, key: str) -> dict[str, str]:
    """For a validator: the flags :func:`validate` was given for the settings below ``key``,
    keyed from there (``train.num_workers`` -> ``num_workers``)."""
    flags: Mapping[str, str] = (info.context or {}).get(_FLAGS, {})
    return {k.removeprefix(f"{key}."): v for k, v in flags.items() if k.startswith(f"{key}.")}


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
    flag_names: Mapping[str, str] | None = None,
) -> M:
    """Load a config: YAML file (optional), then ``--set`` overrides, then explicit flag values.

    Args:
        model: the pydantic model to validate against.
        path: a YAML file with a mapping at the top (a local path or a location), or None
            for defaults only.
        overrides: ``key=value`` strings, dotted keys for nested fields.
        flags: already-typed values (dotted keys allowed) that win over the file and ``--set``;
            ``None`` values are ignored so unset CLI flags do not clobber the file.
        flag_names: the flag of each key in ``flags`` not named as :func:`flag_of` names it
            (``{"learning_rate": "--lr"}``); an invalid value a flag gave is reported by its flag.

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
    flags = flags or {}
    for key, value in flags.items():
        node: Any = data
        *parents, leaf = key.split(".")
        for part in parents:  # created for every flag: a missing key inside is then named
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if value is not None and isinstance(node, dict):  # else validation names the non-mapping
            node[leaf] = value
    # A value a flag gave, or one nothing gave (a required one: the flag is how to give it).
    names = {
        key: (flag_names or {}).get(key) or flag_of(key)
        for key, value in flags.items()
        if value is not None or not _holds(data, key)
    }
    return validate(model, data, source, names)


def _holds(data: Mapping[str, Any], key: str) -> bool:
    """Whether ``data`` has a value at the dotted ``key``."""
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True
