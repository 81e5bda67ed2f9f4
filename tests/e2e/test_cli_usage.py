"""Usage mistakes (a bad flag, command or value) print the usage line and the problem, exit 2."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("args", "usage", "problem"),
    [
        (("train", "--bogus"), "Usage: pomona train [OPTIONS]", "No such option: --bogus"),
        (("nosuchcommand",), "Usage: pomona [OPTIONS] COMMAND", "No such command 'nosuchcommand'"),
        (
            ("train", "--epochs", "abc"),
            "Usage: pomona train [OPTIONS]",
            "Invalid value for '--epochs'",
        ),
        (("ingest",), "Usage: pomona ingest [OPTIONS]", "Missing argument 'SRC'"),
        # ``pomona serve MODEL...`` is its hidden ``start`` command, never named to the user.
        (("serve", "digits", "--portt", "1"), "Usage: pomona serve [OPTIONS]", "--portt"),
    ],
)
def test_usage_error_shows_usage_and_problem(
    pomona, ray_forbidden: None, args: tuple[str, ...], usage: str, problem: str
) -> None:
    result = pomona(*args)
    assert result.code == 2
    lines = result.err.splitlines()
    assert lines[0].startswith(usage), result.err
    assert lines[-1].startswith("error: ") and problem in lines[-1], result.err
    assert "Traceback" not in result.err
    assert result.out == ""


def test_help_exits_zero(pomona) -> None:
    result = pomona("train", "--help")
    assert result.code == 0
    assert "Usage: pomona train" in result.out


@pytest.mark.parametrize("args", [("serve",), ("serve", "--help"), ("serve", "digits", "--help")])
def test_serve_help_shows_the_serving_options_and_names_the_commands(
    pomona, args: tuple[str, ...]
) -> None:
    result = pomona(*args)
    assert result.code == 0, result.err
    assert "Usage: pomona serve [OPTIONS]" in result.out
    assert "--port" in result.out and "--max-batch-size" in result.out
    for command in ("status", "promote", "traffic", "batch", "build"):
        assert command in result.out
    assert "serve start" not in result.out


def test_what_the_user_wrote_is_printed_verbatim(pomona, ray_forbidden: None, tmp_path) -> None:
    # Rich would turn ":abc:" into an emoji, as it did in "127.0.0.1:abc: Invalid gcs_address".
    weird = tmp_path / "a:abc:b"
    result = pomona("data", "inspect", weird)
    assert result.code == 2
    assert result.err == (
        f"error: {weird} is not a pomona dataset (no manifest.json); create one with "
        "`pomona ingest SRC OUT`\n"
    )


def test_an_output_path_that_cannot_be_created_is_one_error_line(
    pomona, ray_forbidden: None, tmp_path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = pomona("datasets", "digits", blocker / "out")
    assert result.code == 2, result.err
    # The file in the way, not the folder under it that could not be created.
    assert result.err == (
        f"error: {blocker} is a file, so nothing can be created under it: choose another path\n"
    )
    assert blocker.read_text() == "not a directory"


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_a_command_given_nothing_shows_its_help(pomona, ray_forbidden: None, command: str) -> None:
    result = pomona(command)
    assert result.code == 2
    assert f"Usage: pomona {command} [OPTIONS]" in result.out
    assert "Field required" not in result.err
