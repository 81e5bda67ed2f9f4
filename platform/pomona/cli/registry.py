"""``pomona registry``: publish model directories as numbered versions, alias and delete them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Column, Table

from pomona.cli.console import console

if TYPE_CHECKING:
    from pomona.registry import ModelVersion, Registry

registry_app = typer.Typer(
    help="Versioned model registry: register, list, show, alias and delete model versions.",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(help="Model name.", show_default=False)]
VersionArgument = Annotated[int, typer.Argument(help="Version number.", show_default=False)]
AliasArgument = Annotated[str, typer.Argument(help="Alias, e.g. production.", show_default=False)]


@registry_app.callback()
def _root(
    ctx: typer.Context,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry",
            help="Registry root, a directory or an s3://, gs:// or file:// URI (default: "
            "$POMONA_REGISTRY, else ~/.pomona/registry).",
        ),
    ] = None,
) -> None:
    ctx.obj = registry


def _open(ctx: typer.Context) -> Registry:
    from pomona.registry import Registry

    return Registry(ctx.obj)


def _numbers(values: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:.4g}" for key, value in sorted(values.items())) or "-"


@registry_app.command("register")
def register_command(
    ctx: typer.Context,
    run: Annotated[
        str,
        typer.Argument(
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
        return
    table = Table(
        Column("version", no_wrap=True),
        Column("aliases", overflow="fold", min_width=10),
        Column("created", no_wrap=True),
        "architecture",
        "val error",
        "top-1 error",
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
        str, typer.Argument(help="name, name:N, name:latest or name@alias.", show_default=False)
    ],
) -> None:
    """Show one version: files, classes, metrics and the aliases pointing at it."""
    registry = _open(ctx)
    version = registry.get(ref)
    _print_version(version, registry.aliases(version.name), registry.uri)


def _print_version(version: ModelVersion, aliases: dict[str, int], uri: str) -> None:
    pointing = sorted(a for a, v in aliases.items() if v == version.version)
    classes = ", ".join(version.classes)
    table = Table(
        Column(no_wrap=True),
        Column(overflow="fold"),
        show_header=False,
        box=None,
        padding=(0, 2, 0, 0),
    )
    for key, value in (
        ("version", f"{version.ref} in {uri}"),
        ("aliases", ", ".join(pointing) or "-"),
        ("created", version.created.isoformat(timespec="seconds")),
        ("architecture", version.architecture),
        ("classes", f"{len(version.classes)}: {classes}"),
        ("metrics", _numbers(version.metrics)),
        ("evaluation", _numbers(version.evaluation)),
        ("dataset sha256", version.dataset_sha256 or "-"),
        ("source", version.source or "-"),
        *((f"sha256 {name}", digest) for name, digest in sorted(version.files.items())),
    ):
        table.add_row(key, escape(value))
    console.print(table)


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


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.add_typer(registry_app, name="registry")
