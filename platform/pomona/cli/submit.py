"""``pomona submit`` and ``pomona jobs``: run pomona commands as Ray jobs on a cluster."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, get_args

import typer
from rich.table import Table
from typer.core import TyperCommand
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
        "$RAY_ADDRESS, else the local cluster).",
    ),
]
#: Parameters holding local paths: relative ones are made absolute, so the job (which runs in
#: a copy of the checkout) reads and writes where the local command would.
PATH_PARAMS = {"config_file", "data", "out", "src", "resume", "report", "registry"}
#: Parameters that may be a path or something else (a registry reference, torchvision:...).
MAYBE_PATH_PARAMS = {"model", "weights"}


def _address(address: str | None) -> str | None:
    return address or session.address or os.environ.get("RAY_ADDRESS") or None


def _client(address: str | None) -> JobSubmissionClient:
    from pomona.cluster.submit import connect

    return connect(_address(address), quiet=not session.verbose)


def local_command(name: str) -> TyperCommand | None:
    """The command ``pomona <name>``, to parse the submitted arguments exactly as it would."""
    from pomona.cli import app

    return getattr(typer.main.get_command(app), "commands", {}).get(name)


def job_args(command: TyperCommand | None, name: str, args: list[str], root: Path) -> list[str]:
    """Check ``args`` against the local command and make its local paths absolute.

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
    rewrites: dict[str, str] = {}
    for param in command.params:
        value = params.get(param.name or "")
        if value is None or not isinstance(value, str | Path) or "://" in str(value):
            continue
        path = Path(value)
        if param.name == "config_file":
            absolute = path.resolve()
            if not absolute.is_relative_to(root):
                raise ClusterError(
                    f"CONFIG {value} is outside the project ({root}); move it inside so it "
                    "ships with the job"
                )
            rewrites[str(value)] = absolute.relative_to(root).as_posix()
        elif not path.is_absolute() and (
            param.name in PATH_PARAMS or (param.name in MAYBE_PATH_PARAMS and path.exists())
        ):
            rewrites[str(value)] = str(path.resolve())
    return _replace_values(args, rewrites)


def _replace_values(args: list[str], rewrites: dict[str, str]) -> list[str]:
    """Replace argument values (``VALUE`` or ``--opt=VALUE``) found in ``rewrites``."""
    out = []
    for arg in args:
        option, eq, value = arg.partition("=")
        if eq and option.startswith("--") and value in rewrites:
            out.append(f"{option}={rewrites[value]}")
        else:
            out.append(rewrites.get(arg, arg))
    return out


def _submit_and_follow(
    name: JobCommand, ctx: typer.Context, address: str | None, follow: bool
) -> None:
    from pomona.cluster.submit import failure_message, project_root, submit

    root = project_root()
    args = job_args(local_command(name), name, list(ctx.args), root)
    client = _client(address)
    job_id = submit(client, name, args, root)
    console.print(f"submitted {job_id} to {client.get_address()}", soft_wrap=True)
    if not follow:
        console.print(f"follow it with: pomona jobs logs {job_id} --follow", soft_wrap=True)
        return
    status = _follow_or_ask(client, job_id)
    if status is None:
        sys.exit(130)  # typer.Exit is swallowed when main() runs the app non-standalone
    if status.value != "SUCCEEDED":
        raise ClusterError(failure_message(client, job_id))
    console.print(f"job {job_id} succeeded")


def _follow_or_ask(client: JobSubmissionClient, job_id: str) -> JobStatus | None:
    """Follow the logs; on Ctrl-C ask whether to stop the job. None when interrupted."""
    from pomona.cluster.submit import cluster_errors, follow

    try:
        return follow(client, job_id, _write)
    except KeyboardInterrupt:
        err_console.print()
        if typer.confirm(f"stop job {job_id}?", default=False, err=True):
            with cluster_errors(client.get_address()):
                client.stop_job(job_id)
            err_console.print(f"stopping {job_id}")
        else:
            err_console.print(
                f"{job_id} keeps running; follow it with: pomona jobs logs {job_id} --follow",
                soft_wrap=True,
            )
        return None


def _write(chunk: str) -> None:
    sys.stdout.write(chunk)
    sys.stdout.flush()


def _make_submit_command(name: JobCommand) -> None:
    @submit_app.command(
        name,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
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
    """A job's logs so far, or all of them as they come with --follow."""
    from pomona.cluster.submit import cluster_errors

    client = _client(address)
    if follow:
        if _follow_or_ask(client, job_id) is None:
            sys.exit(130)  # typer.Exit is swallowed when main() runs the app non-standalone
        return
    with cluster_errors(client.get_address()):
        _write(client.get_job_logs(job_id))


@jobs_app.command("stop")
def job_stop(job_id: JobIdArgument, address: AddressOption = None) -> None:
    """Ask the cluster to stop a job."""
    from pomona.cluster.submit import cluster_errors

    client = _client(address)
    with cluster_errors(client.get_address()):
        stopped = client.stop_job(job_id)
    console.print(f"stopping {job_id}" if stopped else f"{job_id} had already ended")


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.add_typer(submit_app, name="submit")
    app.add_typer(jobs_app, name="jobs")
