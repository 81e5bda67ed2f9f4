"""Names, aliases and references are strict because they become paths."""

from __future__ import annotations

import pytest

from pomona.errors import RegistryError
from pomona.registry.names import ModelRef, parse_ref, validate_alias, validate_name


@pytest.mark.parametrize("name", ["cats", "resnet18-v2", "a", "x.y_z-1", "0day", "a" * 64])
def test_good_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["../x", "a/b", "", "UP", "a..b", ".hidden", "-x", "a b", "a\\b", "a" * 65, "é"]
)
def test_bad_names_name_the_value_and_the_rule(name: str) -> None:
    with pytest.raises(RegistryError) as caught:
        validate_name(name)
    assert repr(name) in str(caught.value)
    assert "a-z" in str(caught.value)


def test_latest_is_not_an_alias() -> None:
    with pytest.raises(RegistryError, match="reserved"):
        validate_alias("latest")


def test_an_alias_of_digits_only_is_refused() -> None:
    with pytest.raises(RegistryError, match=r"alias '5' would read as a version number.*v5"):
        validate_alias("5")
    assert validate_alias("v5") == "v5"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cats", ModelRef("cats")),
        ("cats:latest", ModelRef("cats")),
        ("cats:3", ModelRef("cats", version=3)),
        ("cats@prod", ModelRef("cats", alias="prod")),
    ],
)
def test_parse_ref(text: str, expected: ModelRef) -> None:
    ref = parse_ref(text)
    assert ref == expected
    assert parse_ref(str(ref)) == ref


@pytest.mark.parametrize(
    "text",
    ["cats:0", "cats:-1", "cats:x", "cats:", "cats@", "cats:1@prod", "a:1:2", "../x:1", "@p"],
)
def test_bad_refs(text: str) -> None:
    with pytest.raises(RegistryError):
        parse_ref(text)


def test_ref_takes_version_or_alias() -> None:
    with pytest.raises(RegistryError, match="not both"):
        ModelRef("cats", version=1, alias="prod")
    with pytest.raises(RegistryError, match="positive"):
        ModelRef("cats", version=True)  # type: ignore[arg-type]
