"""``pomona train``: data-parallel fine-tuning on Ray Train."""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pomona.cli.console import console, progress_bar
from pomona.cli.session import session
from pomona.config import load_config, with_default
from pomona.errors import ConfigError
from pomona.train.config import TrainConfig

_help = functools.partial(with_default, TrainConfig)

# The flags not named after their key's last part (pomona.config.flag_of).
_FLAG_NAMES = {"model.architecture": "--model", "learning_rate": "--lr", "num_workers": "--workers"}


def train_command(
    config_file: Annotated[
        Path | None, typer.Argument(metavar="CONFIG", help="YAML TrainConfig (optional).")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="key=value override, dotted keys; repeatable.")
    ] = None,
    data: Annotated[str | None, typer.Option(help="Ingested dataset directory or URI.")] = None,
    out: Annotated[str | None, typer.Option(help="Run directory or URI to create.")] = None,
    model: Annotated[
        str | None,
        typer.Option(help=_help("model.architecture", "Architecture (pomona models list).")),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(
            help="Pretrained weights: file, model dir, registry ref, `torchvision:<W>.<m>`"
        ),
    ] = None,
    head: Annotated[
        str | None,
        typer.Option(
            help=_help(
                "model.head",
                "Head of --weights: auto (keep it only for the same classes), new or keep.",
            ),
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help=_help("epochs", "Epochs."))] = None,
    batch_size: Annotated[
        int | None, typer.Option(help=_help("batch_size", "Global batch size."))
    ] = None,
    lr: Annotated[float | None, typer.Option(help=_help("learning_rate", "Learning rate."))] = None,
    momentum: Annotated[float | None, typer.Option(help=_help("momentum", "SGD momentum."))] = None,
    weight_decay: Annotated[
        float | None, typer.Option(help=_help("weight_decay", "Weight decay."))
    ] = None,
    seed: Annotated[int | None, typer.Option(help=_help("seed", "Random seed."))] = None,
    workers: Annotated[
        int | None,
        typer.Option(help=_help("num_workers", "Data-parallel Ray Train workers.")),
    ] = None,
    freeze_backbone: Annotated[bool | None, typer.Option(help="Train the new head only.")] = None,
    use_gpu: Annotated[bool | None, typer.Option(help="One GPU per worker.")] = None,
    resume: Annotated[
        str | None, typer.Option(help="Continue the run in this directory or URI.")
    ] = None,
) -> None:
    """Fine-tune a network on an ingested dataset with data-parallel SGD on Ray Train.

    Settings come from CONFIG, then --set, then the flags. Without CONFIG, --data and --out are
    enough. --resume RUN continues RUN from its last checkpoint (flags and --set may extend it,
    e.g. --epochs 20).
    """
    from pomona.train.run_dir import CONFIG_FILE, check_run_dir

    flags = {
        "data": data,
        "out": out,
        "model.architecture": model,
        "model.weights": weights,
        "model.head": head,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": lr,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "seed": seed,
        "num_workers": workers,
        "model.freeze_backbone": freeze_backbone,
        "use_gpu": use_gpu,
    }
    if resume is not None:
        if config_file is not None:
            raise ConfigError("--resume reads RUN/config.yaml; do not pass CONFIG as well")
        if out is not None:
            raise ConfigError("--resume continues RUN in place; do not pass --out as well")
        config_file, flags["out"] = check_run_dir(resume, resume=True) / CONFIG_FILE, resume
    config = load_config(TrainConfig, config_file, overrides or (), flags, _FLAG_NAMES)
    _run_and_show(config, resume=resume is not None)


def _run_and_show(config: TrainConfig, *, resume: bool) -> list[dict[str, float]]:
    """Train with a progress bar fed from RUN/metrics.csv, then print the epoch table."""
    from pomona.cluster.runtime import check_local_gpus
    from pomona.train.preflight import prepare_run
    from pomona.train.run_dir import checkpointed_epoch, read_metrics
    from pomona.train.trainer import run

    # Everything a user can fix is checked before Ray starts.
    prepared = prepare_run(config, resume=resume, registry=session.open_registry())
    trained = checkpointed_epoch(prepared.run_dir) if resume else 0
    if trained and trained >= config.epochs:
        console.print(
            f"{config.out} has trained {trained} epochs (--epochs {config.epochs}): nothing to "
            f"resume. Train it further with --resume {config.out} --epochs N, N over {trained}.",
            soft_wrap=True,
            markup=False,
        )
        rows = read_metrics(prepared.run_dir)
        _print_epochs(rows)
        return rows
    session.connect()
    check_local_gpus(config.gpus, session.address, "--workers")
    run_dir = prepared.run_dir
    done = threading.Event()
    with progress_bar("train") as bar:
        task = bar.add_task("epochs", total=config.epochs, status="starting workers")

        def watch() -> None:
            while not done.wait(1.0):
                rows = read_metrics(run_dir)
                if rows:
                    last = rows[-1]
                    bar.update(
                        task, completed=len(rows), status=f"val error {last['val_error']:.4f}"
                    )

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            rows = run(prepared)
        finally:
            done.set()
            watcher.join()
        bar.update(task, completed=len(rows), status="done")
    _print_epochs(rows)
    initial = prepared.initial_weights
    if initial is not None:
        console.print(
            f"started from {initial.source} with the {initial.head} head ({initial.reason})",
            soft_wrap=True,
            markup=False,
        )
    best = min(rows, key=lambda r: r["val_error"])
    out = config.out.rstrip("/")  # as the user wrote it, relative or a URI
    console.print(
        f"best epoch {int(best['epoch'])}: val error {best['val_error']:.4f}; model at "
        f"{out}/model.safetensors; curves at {out}/curves.png"
    )
    return rows


def _print_epochs(rows: list[dict[str, float]]) -> None:
    table = Table("epoch", "train loss", "train err", "val loss", "val err", "lr", "samples/s")
    for row in rows:
        table.add_row(
            str(int(row["epoch"])),
            f"{row['train_loss']:.4f}",
            f"{row['train_error']:.4f}",
            f"{row['val_loss']:.4f}",
            f"{row['val_error']:.4f}",
            f"{row['lr']:.4g}",
            f"{row['samples_per_s']:.0f}",
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("train", no_args_is_help=True)(train_command)
