"""The ``pomona`` command line: thin wrappers that parse flags, call the package and render.

A :class:`pomona.errors.PomonaError` prints one ``error:`` line and exits with status 2; any
other exception keeps its traceback. Commands import Ray-backed modules lazily, so ``--help`` and
the pure commands start fast and the local Ray defaults are set before Ray is imported.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import click
import typer

from pomona import log
from pomona.cli import data, demo, evaluate, k8s, models, registry, submit, train
from pomona.cli.console import err_console
from pomona.cli.session import session
from pomona.cluster.runtime import use_local_ray_defaults
from pomona.errors import PomonaError

app = typer.Typer(
    name="pomona",
    help="Labelled images to a fine-tuned, evaluated, versioned image classifier on Ray.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)."),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Ray and INFO logs.")
    ] = False,
) -> None:
    session.address = address
    session.verbose = verbose
    log.configure(logging.INFO if verbose else logging.WARNING)
    use_local_ray_defaults(address)


for module in (data, models, train, evaluate, registry, demo, k8s, submit):
    module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entrypoint; ``argv`` defaults to ``sys.argv[1:]`` (jobs/ pass their own)."""
    try:
        app(args=argv, standalone_mode=False)
    except PomonaError as error:
        err_console.print(f"[red]error:[/red] {error}", soft_wrap=True)
        sys.exit(2)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
