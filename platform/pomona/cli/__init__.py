"""The ``pomona`` command line: thin wrappers that parse flags, call the package and render.

A :class:`pomona.errors.PomonaError` prints one ``error:`` line and exits with status 2; any
other exception keeps its traceback.
"""

from __future__ import annotations

import sys

import click
import typer

from pomona.cli import data
from pomona.cli.console import err_console
from pomona.errors import PomonaError

app = typer.Typer(
    name="pomona",
    help="Labelled images to a fine-tuned, evaluated, versioned image classifier on Ray.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data.register(app)


def main() -> None:
    """Console-script entrypoint."""
    from pomona import log

    log.configure()
    try:
        app(standalone_mode=False)
    except PomonaError as error:
        err_console.print(f"[red]error:[/red] {error}", markup=True, soft_wrap=True)
        sys.exit(2)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
