"""The ``pomona`` command line: thin wrappers that parse flags, call the package and render.

A :class:`pomona.errors.PomonaError` prints one ``error:`` line and exits with status 2; any
other exception keeps its traceback. Commands import Ray-backed modules lazily, so ``--help`` and
the pure commands start fast and the local Ray defaults are set before Ray is imported.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.markup import escape
from typer._click.exceptions import NoArgsIsHelpError, UsageError

from pomona import log
from pomona.cli import (
    data,
    demo,
    evaluate,
    k8s,
    models,
    registry,
    serve,
    submit,
    sweep,
    train,
)
from pomona.cli.console import err_console
from pomona.cli.session import session
from pomona.cluster.runtime import use_local_ray_defaults
from pomona.errors import PomonaError

app = typer.Typer(
    name="pomona",
    help="Labelled images to a fine-tuned, evaluated, versioned image classifier served over "
    "HTTP, on Ray.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    # Help texts are Markdown, so a docstring's wrapped lines flow into one paragraph.
    rich_markup_mode="markdown",
)


@app.callback()
def _root(
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)."),
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option(
            envvar="POMONA_REGISTRY",
            show_envvar=False,
            help="Model registry for MODEL references and `pomona registry`: a directory or "
            "an s3://, gs:// or file:// URI (default: $POMONA_REGISTRY, else "
            "~/.pomona/registry).",
        ),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            envvar="POMONA_VERBOSE",
            show_envvar=False,
            help="Show Ray and INFO logs (also: POMONA_VERBOSE=1).",
        ),
    ] = False,
) -> None:
    session.address = address
    session.registry = registry
    session.verbose = verbose
    log.configure(logging.INFO if verbose else logging.WARNING)
    use_local_ray_defaults(address)


for module in (data, models, train, sweep, evaluate, registry, serve, submit, k8s, demo):
    module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entrypoint; ``argv`` defaults to ``sys.argv[1:]`` (jobs/ pass their own).

    Exits with status 2 after a :class:`PomonaError` or a file-system error on a path (one
    ``error:`` line) or a usage error (the command's usage line, then one ``error:`` line); any
    other exception keeps its traceback.
    """
    try:
        status = app(args=argv, prog_name="pomona", standalone_mode=False)
    except PomonaError as error:
        _fail(str(error))
    except OSError as error:
        # A path that cannot be created, read or written (a parent that is a file, a read-only
        # or full disk): the user's to fix, wherever in a command it is met.
        if error.filename is None:
            raise
        _fail(_path_problem(error))
    except NoArgsIsHelpError as error:
        # typer printed the help while raising this; only the exit status is left.
        sys.exit(error.exit_code)
    # typer 0.29 raises its own vendored click exceptions (a bad flag, command or value), not
    # click's: these are the classes it really raises, whatever click is installed.
    except UsageError as error:
        if error.ctx is not None:
            err_console.print(error.ctx.get_usage(), soft_wrap=True, markup=False)
            err_console.print(
                f"Try '{error.ctx.command_path} --help' for help.", soft_wrap=True, markup=False
            )
        # typer validates values with pydantic, whose messages start "Value error, ".
        _fail(error.format_message().replace(": Value error, ", ": "), error.exit_code)
    except typer.TyperException as error:
        _fail(error.format_message(), error.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    # Without standalone mode typer returns an exit status (``--help``, Ctrl-C) instead of exiting.
    if isinstance(status, int) and status:
        sys.exit(status)


def _path_problem(error: OSError) -> str:
    """``PATH: reason`` for an error on a path; a file where a folder had to be (``mkdir`` says
    "File exists", ``open`` "Not a directory") is said as it is."""
    from pomona.location import file_in_the_way

    path = Path(error.filename)
    if isinstance(error, FileExistsError | NotADirectoryError):
        blocker = file_in_the_way(path)
        if blocker == path:
            return f"{path} is a file where a folder is needed; choose another path"
        if blocker is not None:
            return f"{blocker} is a file, so nothing can be created under it: choose another path"
    return f"{error.filename}: {error.strerror or error}"


def _fail(message: str, status: int = 2) -> NoReturn:
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    sys.exit(status)
