"""``pomona submit`` and ``pomona jobs``: run pomona commands as Ray jobs on a cluster."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, get_args

import typer
from rich.table import Table
from typer.core import TyperArgument, TyperCommand, TyperOption
from typer.exceptions import TyperException

from pomona.cli.console import console, err_console
from pomona.cli.session import session
from pomona.cluster.entrypoints import JobCommand
from pomona.errors import ClusterError, ConfigError

if TYPE_CHECKING:
    from ray.job_submission import JobStatus, JobSubmissionClient

submit_app = typer.Typer(
    help="Run a pomona command as a Ray job on a cluster (Ray Jobs API).", no_args_is_help=True
)
jobs_app = typer.Typer(help="List, inspect, follow and stop Ray jobs.", no_args_is_help=True)

AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="Ray dashboard (Jobs API), http://HOST:8265 (default: pomona --address, "
        "$RAY_API_SERVER_ADDRESS, $RAY_ADDRESS, else the local cluster).",
    ),
]
#: A line of Ray's own logging in a job's logs: ``2026-12-07 19:55:49,356\tINFO job_manager...``.
_RAY_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\s+(DEBUG|INFO)\s")
#: Settings holding local paths, as parameters or as the last part of a config key: relative
#: ones are made absolute, so the job (which runs in a copy of the checkout) reads and writes
#: where the local command would.
PATH_KEYS = {"data", "out", "src", "resume", "report", "registry"}
#: Settings that may be a path or something else (a registry reference, ``torchvision:...``):
#: made absolute when such a path exists here. A command's MODEL argument is one too.
MAYBE_PATH_KEYS = {"weights"}


def _address(address: str | None) -> str | None:
    """The Jobs API address: this command's, pomona's, else Ray's variables (in Ray's order)."""
    from pomona.cluster.submit import ADDRESS_VARIABLES

    environment = (os.environ.get(name) for name in ADDRESS_VARIABLES)
    return address or session.address or next((a for a in environment if a), None)


def _client(address: str | None) -> JobSubmissionClient:
    from pomona.cluster.submit import connect

    return connect(_address(address), quiet=not session.verbose)


def local_command(name: str) -> TyperCommand | None:
    """The command ``pomona <name>``, to parse the submitted arguments exactly as it would."""
    from pomona.cli import app

    return getattr(typer.main.get_command(app), "commands", {}).get(name)


def job_args(command: TyperCommand | None, name: str, args: list[str], root: Path) -> list[str]:
    """Check ``args`` against the local command and make its local paths absolute: those given
    as arguments, in ``--set key=value`` and, as ``--set`` entries placed before the user's, in
    the CONFIG file (relative paths there are relative to this folder, as when run here).

    A CONFIG file must lie inside the checkout (it ships with it) and is passed relative to it.

    Raises:
        ConfigError: the arguments are not valid for the local command.
        ClusterError: CONFIG lies outside the checkout.
    """
    if command is None:  # a command this checkout does not have locally: pass through as is
        return list(args)
    try:
        params = command.make_context(f"pomona {name}", list(args)).params
    except TyperException as error:
        raise ConfigError(f"pomona {name}: {error.format_message()}") from None
    sent = [
        f"{option}{_local_value(param, value, root)}"
        for option, param, value in _parsed(command, args)
    ]
    config = params.get("config_file")
    if config is None or not any(p.name == "overrides" for p in command.params):
        return sent
    from_file = [f"{key}={value}" for key, value in _config_paths(Path(config))]
    return [*(arg for entry in from_file for arg in ("--set", entry)), *sent]


def _parsed(
    command: TyperCommand, args: list[str]
) -> Iterator[tuple[str, TyperArgument | TyperOption | None, str]]:
    """Each argument of ``args`` (valid for ``command``) as ``(option, parameter, value)``: the
    value's parameter (None for option names, flags and what follows ``--``), and the
    ``--name=`` it was joined to, if any."""
    options = {opt: p for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    positional = [p for p in command.params if isinstance(p, TyperArgument)]
    tokens = iter(args)
    for token in tokens:
        option, eq, value = token.partition("=")
        param = options.get(option if eq else token)
        if token == "--":
            yield "", None, token
            yield from (("", None, rest) for rest in tokens)
        elif isinstance(param, TyperOption) and not (param.is_flag or param.count):
            if eq:
                yield f"{option}=", param, value
            else:
                yield "", None, token
                yield "", param, next(tokens)
        elif param is not None or token.startswith("-"):
            yield "", None, token
        else:
            yield "", positional[0] if positional else None, token
            if positional and positional[0].nargs == 1:
                positional.pop(0)


def _local_value(param: TyperArgument | TyperOption | None, value: str, root: Path) -> str:
    """``value`` of ``param`` as the job needs it (see :func:`job_args`)."""
    if param is None or "://" in value:
        return value
    if param.name == "config_file":
        absolute = Path(value).resolve()
        if not absolute.is_relative_to(root):
            raise ClusterError(
                f"CONFIG {value} is outside the project ({root}); move it inside so it ships "
                "with the job"
            )
        return absolute.relative_to(root).as_posix()
    if param.name == "overrides":
        key, _, setting = value.partition("=")
        return f"{key}={_absolute(key.rpartition('.')[2], setting)}"
    maybe = isinstance(param, TyperArgument) and param.name == "model"
    return _absolute("weights" if maybe else param.name or "", value)


def _absolute(key: str, value: str) -> str:
    """``value`` of setting ``key`` made absolute where it is a relative local path."""
    path = Path(value)
    if "://" in value or path.is_absolute() or not value:
        return value
    if key in PATH_KEYS or (key in MAYBE_PATH_KEYS and path.exists()):
        return str(path.resolve())
    return value


def _config_paths(config: Path) -> list[tuple[str, str]]:
    """The dotted keys of the YAML file ``config`` whose values are relative local paths, with
    those values made absolute.

    Raises:
        ConfigError: the file is not valid YAML.
    """
    import yaml

    try:
        data = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read CONFIG {config}: {error}") from None
    return list(_relative_paths(data, ""))


def _relative_paths(data: object, prefix: str) -> Iterator[tuple[str, str]]:
    for key, value in data.items() if isinstance(data, dict) else ():
        if isinstance(value, dict):
            yield from _relative_paths(value, f"{prefix}{key}.")
        elif isinstance(value, str) and (absolute := _absolute(str(key), value)) != value:
            yield f"{prefix}{key}", absolute


def _submit_and_follow(
    name: JobCommand, ctx: typer.Context, address: str | None, follow: bool
) -> None:
    from pomona.cluster.submit import project_root, submit

    root = project_root()
    args = job_args(local_command(name), name, list(ctx.args), root)
    client = _client(address)
    job_id = submit(client, name, args, root, _job_env(ctx))
    console.print(f"submitted {job_id} to {client.get_address()}", soft_wrap=True)
    if not follow:
        console.print(f"follow it with: {_follow_command(client, job_id)}", soft_wrap=True)
        return
    _follow_to_end(client, job_id)
    console.print(f"job {job_id} succeeded")


def _job_env(ctx: typer.Context) -> dict[str, str]:
    """The job's environment variables: ``COLUMNS``, so that its output is as wide as this
    terminal; ``POMONA_VERBOSE`` with ``-v``; and ``POMONA_REGISTRY``, the root ``--registry``
    when it was given as a flag (a ``$POMONA_REGISTRY`` of this machine stays here: the
    cluster's nodes have their own)."""
    env = {"COLUMNS": str(console.width), **({"POMONA_VERBOSE": "1"} if session.verbose else {})}
    root = ctx.find_root()
    source = root.get_parameter_source("registry")
    registry = root.params.get("registry")
    if registry is not None and source is not None and source.name == "COMMANDLINE":
        env["POMONA_REGISTRY"] = _absolute("registry", registry)
    return env


def _follow_command(client: JobSubmissionClient, job_id: str) -> str:
    """The command that follows ``job_id``, with the address this client reached."""
    return f"pomona jobs logs {job_id} --follow --address {client.get_address()}"


def _follow_to_end(client: JobSubmissionClient, job_id: str) -> None:
    """Follow ``job_id`` until it ends; exits 130 when interrupted.

    Raises:
        ClusterError: the job did not succeed (how it ended).
    """
    from pomona.cluster.submit import failure_message

    status = _follow_or_ask(client, job_id)
    if status is None:
        sys.exit(130)  # typer.Exit is swallowed when main() runs the app non-standalone
    if status.value != "SUCCEEDED":
        raise ClusterError(failure_message(client, job_id))


def _follow_or_ask(client: JobSubmissionClient, job_id: str) -> JobStatus | None:
    """Follow the logs; on Ctrl-C ask whether to stop the job. None when interrupted."""
    from pomona.cluster.submit import follow

    log = _JobLog()
    try:
        return follow(client, job_id, log.write)
    except KeyboardInterrupt:
        err_console.print()
        if _confirm(f"stop job {job_id}?"):
            err_console.print(_stop(client, job_id))
        else:
            err_console.print(
                f"{job_id} keeps running; follow it with: {_follow_command(client, job_id)}",
                soft_wrap=True,
            )
        return None
    finally:
        log.close()


def _confirm(question: str) -> bool:
    """Ask ``question`` on stderr; no answer (no terminal, end of input) is no."""
    try:
        return typer.confirm(question, default=False, err=True)
    except typer.Abort:
        err_console.print()
        return False


class _JobLog:
    """A job's logs written to stdout as they come, whole lines at a time, without Ray's own
    INFO lines (the job manager's "Runtime env is setting up."), which ``-v`` shows."""

    def __init__(self) -> None:
        self._partial = ""

    def write(self, chunk: str) -> None:
        lines = (self._partial + chunk).splitlines(keepends=True)
        self._partial = lines.pop() if lines and not lines[-1].endswith("\n") else ""
        shown = (line for line in lines if session.verbose or not _RAY_LOG_LINE.match(line))
        sys.stdout.write("".join(shown))
        sys.stdout.flush()

    def close(self) -> None:
        """Write what is left: a last line without its newline."""
        sys.stdout.write(self._partial)
        sys.stdout.flush()
        self._partial = ""


def _make_submit_command(name: JobCommand) -> None:
    @submit_app.command(
        name,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        options_metavar="[OPTIONS] [ARGS]...",
        help=f"Run `pomona {name} ARGS` as a Ray job (jobs/{name}.py) and follow its logs.\n\n"
        f"ARGS are exactly those of `pomona {name}`; relative paths are made absolute, and "
        "the job runs this checkout's code. Exits 0 only when the job succeeded.",
    )
    def command(
        ctx: typer.Context,
        address: AddressOption = None,
        follow: Annotated[
            bool, typer.Option("--follow/--no-follow", help="Stream the job's logs until it ends.")
        ] = True,
    ) -> None:
        _submit_and_follow(name, ctx, address, follow)


for _name in get_args(JobCommand):
    _make_submit_command(_name)


@jobs_app.command("list")
def list_jobs(address: AddressOption = None) -> None:
    """Jobs on the cluster, newest first."""
    from pomona.cluster.submit import cluster_errors

    client = _client(address)
    with cluster_errors(client.get_address()):
        jobs = client.list_jobs()
    table = Table()
    for name in ("job", "status", "started"):
        table.add_column(name, no_wrap=True)
    table.add_column("entrypoint", overflow="fold")  # the long one gives way to the others
    for job in sorted(jobs, key=lambda j: j.start_time or 0, reverse=True):
        job_id = job.submission_id or job.job_id or ""
        table.add_row(job_id, job.status.value, _clock(job.start_time), job.entrypoint)
    console.print(table)


def _clock(milliseconds: int | None) -> str:
    import datetime

    if not milliseconds:
        return ""
    moment = datetime.datetime.fromtimestamp(milliseconds / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


JobIdArgument = Annotated[
    str, typer.Argument(metavar="JOB_ID", help="Submission id (raysubmit_...).")
]


@jobs_app.command("status")
def job_status(job_id: JobIdArgument, address: AddressOption = None) -> None:
    """A job's status and, when it ended, how."""
    from pomona.cluster.submit import cluster_errors

    client = _client(address)
    with cluster_errors(client.get_address()):
        info = client.get_job_info(job_id)
    console.print(f"{job_id} {info.status.value}", soft_wrap=True)
    if info.message:
        console.print(info.message.strip(), soft_wrap=True)


@jobs_app.command("logs")
def job_logs(
    job_id: JobIdArgument,
    address: AddressOption = None,
    follow: Annotated[bool, typer.Option("--follow", help="Stream until the job ends.")] = False,
) -> None:
    """A job's logs so far, or all of them as they come with --follow (which then exits 0
    only when the job succeeded)."""
    from pomona.cluster.submit import cluster_errors

    client = _client(address)
    if follow:
        _follow_to_end(client, job_id)
        return
    log = _JobLog()
    with cluster_errors(client.get_address()):
        log.write(client.get_job_logs(job_id))
    log.close()


@jobs_app.command("stop")
def job_stop(job_id: JobIdArgument, address: AddressOption = None) -> None:
    """Ask the cluster to stop a job."""
    console.print(_stop(_client(address), job_id))


def _stop(client: JobSubmissionClient, job_id: str) -> str:
    """Ask the cluster to stop ``job_id``; says whether it was running."""
    from pomona.cluster.submit import cluster_errors

    with cluster_errors(client.get_address()):
        stopped = client.stop_job(job_id)
    return f"stopping {job_id}" if stopped else f"{job_id} had already ended"


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.add_typer(submit_app, name="submit")
    app.add_typer(jobs_app, name="jobs")
