"""``pomona models``: the architectures pomona can train."""

from __future__ import annotations

import typer
from rich.table import Table

from pomona.cli.console import console

models_app = typer.Typer(help="Model architectures.", no_args_is_help=True)


@models_app.command("list")
def list_models() -> None:
    """List the architectures `pomona train --model` accepts."""
    from pomona.models.zoo import list_architectures

    table = Table("architecture", "description")
    for name, description in list_architectures():
        table.add_row(name, description)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.add_typer(models_app, name="models")
