"""``pomona registry``: publish model directories as numbered versions, alias, verify, delete them,
and remove what killed registrations left behind."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Column, Table

from pomona.cli.console import console
from pomona.cli.session import session

if TYPE_CHECKING:
    from pomona.registry import IncompleteVersion, ModelVersion, Registry

registry_app = typer.Typer(
    help="Versioned model registry: register, list, show, alias and delete model versions; gc "
    "removes what killed registrations left.",
    no_args_is_help=True,
)

NameArgument = Annotated[
    str, typer.Argument(metavar="NAME", help="Model name.", show_default=False)
]
VersionArgument = Annotated[
    int, typer.Argument(metavar="VERSION", help="Version number.", show_default=False)
]
AliasArgument = Annotated[
    str, typer.Argument(metavar="ALIAS", help="Alias, e.g. production.", show_default=False)
]


@registry_app.callback()
def _root(
    ctx: typer.Context,
    # Superseded by the global `pomona --registry`; hidden, kept so existing scripts keep working.
    registry: Annotated[str | None, typer.Option("--registry", hidden=True)] = None,
) -> None:
    ctx.obj = registry


def _open(ctx: typer.Context) -> Registry:
    return session.open_registry(ctx.obj)


def _numbers(values: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:.4g}" for key, value in sorted(values.items())) or "-"


@registry_app.command("register")
def register_command(
    ctx: typer.Context,
    run: Annotated[
        str,
        typer.Argument(
            metavar="RUN",
            help="Run or model directory (or a model file, or a registry reference to copy).",
            show_default=False,
        ),
    ],
    name: Annotated[str, typer.Option(help="Model name.", show_default=False)],
    report: Annotated[
        Path | None,
        typer.Option(help="`pomona evaluate` --out directory whose metrics to record."),
    ] = None,
) -> None:
    """Publish RUN's model as the next version of NAME."""
    from pomona.errors import RegistryError
    from pomona.evaluate.report import read_report
    from pomona.models.artifact import read_card
    from pomona.registry.names import validate_name
    from pomona.registry.resolve import resolve_model

    registry = _open(ctx)
    # Fail on a bad name before resolving (possibly downloading) the model.
    validate_name(name)
    model_dir = resolve_model(run, registry)
    evaluation = None
    if report is not None:
        evaluated = read_report(report)
        weights = read_card(model_dir).weights_sha256
        if evaluated.model.weights_sha256 != weights:
            raise RegistryError(
                f"{report} evaluated other weights (sha256 {evaluated.model.weights_sha256[:12]}) "
                f"than {model_dir} holds ({weights[:12]}); run `pomona evaluate {run} ...` first"
            )
        evaluation = evaluated.headline_metrics()
    version = registry.register(model_dir, name, evaluation)
    console.print(
        f"registered {version.ref} ({version.architecture}, {len(version.classes)} classes) "
        f"from {model_dir} in {registry.uri}",
        soft_wrap=True,
        markup=False,
    )
    if version.evaluation:
        console.print(f"evaluation: {_numbers(version.evaluation)}", markup=False)


@registry_app.command("list")
def list_command(ctx: typer.Context) -> None:
    """List every version of every model, with aliases and metrics."""
    registry = _open(ctx)
    names = registry.list_models()
    if not names:
        console.print(f"no models in {registry.uri}", soft_wrap=True, markup=False)
        _print_incomplete(registry)
        return
    # A rule under the header and no borders: a listing that fits an 80-column terminal.
    table = Table(
        Column("version", no_wrap=True),
        Column("aliases", overflow="fold", min_width=10),
        Column("created", no_wrap=True),
        Column("architecture", no_wrap=True),
        "val error",
        "top-1 error",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
    )
    for name in names:
        by_version: dict[int, list[str]] = {}
        for alias, number in sorted(registry.aliases(name).items()):
            by_version.setdefault(number, []).append(alias)
        for version in registry.list_versions(name):
            val_error = version.metrics.get("val_error")
            table.add_row(
                version.ref,
                escape(", ".join(by_version.get(version.version, [])) or "-"),
                version.created.strftime("%Y-%m-%d %H:%M"),
                escape(version.architecture),
                "-" if val_error is None else f"{val_error:.4f}",
                escape(_top1_error(version)),
            )
        table.add_section()
    console.print(table)
    _print_incomplete(registry)


def _print_incomplete(registry: Registry) -> None:
    """One line about incomplete versions, so their bytes do not go unnoticed."""
    leftovers = registry.incomplete_versions()
    if leftovers:
        refs = ", ".join(leftover.ref for leftover in leftovers)
        console.print(
            f"incomplete (files without version.json, never published): {refs}; "
            "`pomona registry gc` removes them",
            soft_wrap=True,
            markup=False,
        )


def _top1_error(version: ModelVersion) -> str:
    """The recorded held-out top-1 error(s), e.g. ``0.0111 (test)``; ``-`` when none."""
    suffix = "_top1_error"
    return (
        ", ".join(
            f"{value:.4f} ({key.removesuffix(suffix)})"
            for key, value in sorted(version.evaluation.items())
            if key.endswith(suffix)
        )
        or "-"
    )


@registry_app.command("show")
def show_command(
    ctx: typer.Context,
    ref: Annotated[
        str,
        typer.Argument(
            metavar="REF", help="name, name:N, name:latest or name@alias.", show_default=False
        ),
    ],
) -> None:
    """Show one version: files, classes, metrics and the aliases pointing at it.

    Every stored file is checked against its recorded sha256; a corrupted version is shown
    with "checksums CORRUPT" and the command fails.
    """
    from pomona.errors import CheckpointError

    registry = _open(ctx)
    version = registry.get(ref)
    try:
        registry.verify(version.ref)
    except CheckpointError:
        _print_version(version, registry.aliases(version.name), registry.uri, "CORRUPT")
        raise
    _print_version(version, registry.aliases(version.name), registry.uri, "ok")


def _print_version(
    version: ModelVersion, aliases: dict[str, int], uri: str, checksums: str
) -> None:
    pointing = sorted(a for a, v in aliases.items() if v == version.version)
    classes = ", ".join(version.classes)
    rows = [
        ("version", f"{version.ref} in {uri}"),
        ("aliases", ", ".join(pointing) or "-"),
        ("created", version.created.isoformat(timespec="seconds")),
        ("architecture", version.architecture),
        ("classes", f"{len(version.classes)}: {classes}"),
        ("metrics", _numbers(version.metrics)),
        ("evaluation", _numbers(version.evaluation)),
        ("dataset sha256", version.dataset_sha256 or "-"),
        ("source", version.source or "-"),
        *_sweep_rows(version),
        *((f"sha256 {name}", digest) for name, digest in sorted(version.files.items())),
        ("checksums", checksums),
    ]
    # Lines of their own rather than a table: a long value wraps under its column between words,
    # and a digest or a path is never cut (a terminal wraps it, and copies it, whole).
    indent = max(len(key) for key, _ in rows) + 2
    for key, value in rows:
        console.print(
            textwrap.fill(
                value,
                width=max(console.width, indent + 20),
                initial_indent=key.ljust(indent),
                subsequent_indent=" " * indent,
                break_long_words=False,
                break_on_hyphens=False,
            ),
            soft_wrap=True,
            markup=False,
        )


def _sweep_rows(version: ModelVersion) -> list[tuple[str, str]]:
    """The sweep trial a version came from, and its searched settings (none if not a sweep)."""
    from pomona.tune.space import format_setting

    origin = version.sweep
    if origin is None:
        return []
    settings = ", ".join(f"{k}={format_setting(v)}" for k, v in origin.settings.items())
    return [
        ("sweep", f"{origin.sweep} trial {origin.trial} ({origin.metric} {origin.value:.4f})"),
        ("settings", settings or "-"),
    ]


@registry_app.command("alias")
def alias_command(
    ctx: typer.Context, name: NameArgument, version: VersionArgument, alias: AliasArgument
) -> None:
    """Point ALIAS of NAME at VERSION (creating or moving it)."""
    previous = _open(ctx).set_alias(name, version, alias)
    was = "new" if previous is None else f"was {previous}"
    console.print(f"{name}@{alias} -> {version} ({was})", markup=False)


@registry_app.command("unalias")
def unalias_command(ctx: typer.Context, name: NameArgument, alias: AliasArgument) -> None:
    """Remove ALIAS from NAME."""
    version = _open(ctx).remove_alias(name, alias)
    console.print(f"removed {name}@{alias} (was {version})", markup=False)


@registry_app.command("delete")
def delete_command(ctx: typer.Context, name: NameArgument, version: VersionArgument) -> None:
    """Delete VERSION of NAME; refused while an alias points at it. Numbers are never reused."""
    _open(ctx).delete(name, version)
    console.print(f"deleted {name}:{version}", markup=False)


@registry_app.command("gc")
def gc_command(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(metavar="NAME", help="Only this model (default: every model).")
    ] = None,
    grace_s: Annotated[
        float | None,
        typer.Option(
            "--grace-s",
            min=0,
            help="Leave incomplete versions last written less than this many seconds ago "
            "alone: a registration may still be copying them (default: 600).",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list incomplete versions.")
    ] = False,
) -> None:
    """Remove incomplete versions: files a killed registration left without version.json.

    Their numbers stay taken. A version a live registration is still writing is never removed.
    """
    from pomona.registry.store import DEFAULT_GC_GRACE_S

    registry = _open(ctx)
    grace = DEFAULT_GC_GRACE_S if grace_s is None else grace_s
    leftovers = registry.incomplete_versions(name) if dry_run else registry.gc(name, grace_s=grace)
    if not leftovers:
        scope = f"of {name} " if name else ""
        console.print(
            f"no incomplete versions {scope}in {registry.uri}", soft_wrap=True, markup=False
        )
    for leftover in leftovers:
        console.print(_describe(leftover, grace, dry_run), soft_wrap=True, markup=False)


def _describe(leftover: IncompleteVersion, grace_s: float, dry_run: bool) -> str:
    what = (
        f"{leftover.ref}: {', '.join(leftover.files)} ({leftover.size:,} bytes, last written "
        f"{leftover.modified:%Y-%m-%d %H:%M:%S} UTC)"
    )
    if leftover.removed:
        return f"removed {what}"
    if dry_run:
        return f"incomplete {what}"
    if leftover.writing:
        return f"kept {what}: a registration is still writing it"
    return f"kept {what}: written {leftover.age_s():.0f} s ago, within the {grace_s:g} s grace"


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.add_typer(registry_app, name="registry")
