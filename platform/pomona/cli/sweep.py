"""``pomona sweep``: hyperparameter sweeps with Ray Tune, every trial a Ray Train run."""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.live import Live
from rich.table import Table

from pomona.cli.console import console, err_console
from pomona.cli.session import session
from pomona.config import load_config, with_default
from pomona.errors import ConfigError
from pomona.tune.config import SweepConfig
from pomona.tune.space import format_setting

if TYPE_CHECKING:
    from pomona.tune.progress import TrialStatus
    from pomona.tune.results import TrialResult

_REFRESH_S = 1.0


_help = functools.partial(with_default, SweepConfig)

# The flags not named after their key's last part (pomona.config.flag_of).
_FLAG_NAMES = {
    "train.model.architecture": "--model",
    "train.num_workers": "--workers",
    "concurrent_trials": "--concurrent",
    "scheduler.name": "--scheduler",
}


def sweep_command(
    config_file: Annotated[
        Path | None, typer.Argument(metavar="CONFIG", help="YAML SweepConfig (optional).")
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="key=value override, dotted keys (train.momentum=0.8)."),
    ] = None,
    space: Annotated[
        list[str] | None,
        typer.Option(
            "--space",
            help="key=kind(args): choice, grid, uniform, loguniform, randint; repeatable; "
            "replaces the file's space.",
        ),
    ] = None,
    data: Annotated[str | None, typer.Option(help="Ingested dataset directory.")] = None,
    out: Annotated[str | None, typer.Option(help="Sweep directory to create.")] = None,
    model: Annotated[
        str | None,
        typer.Option(help=_help("train.model.architecture", "Architecture (pomona models list).")),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help=_help("train.epochs", "Epochs per trial (at most)."))
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help=_help("train.num_workers", "Ray Train workers per trial."))
    ] = None,
    trials: Annotated[int | None, typer.Option(help=_help("trials", "Trials to sample."))] = None,
    concurrent: Annotated[
        int | None,
        typer.Option(
            help="Trials at once (default: as many as the CPUs fit, and two where each of "
            "their workers still gets a core)."
        ),
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help=_help("scheduler.name", "asha or fifo."))
    ] = None,
    searcher: Annotated[
        str | None, typer.Option(help=_help("searcher", "random or optuna."))
    ] = None,
    seed: Annotated[int | None, typer.Option(help=_help("seed", "Searcher seed."))] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the interrupted sweep in this directory.")
    ] = None,
    register: Annotated[
        str | None, typer.Option(help="Register the best trial's model under this name.")
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option(help="Registry for --register (default: the global --registry)."),
    ] = None,
) -> None:
    """Search training settings with Ray Tune; each trial is a data-parallel Ray Train run.

    Settings come from CONFIG, then --set, then the flags; without CONFIG, --data, --out and
    one --space are enough. ASHA stops poor trials after each epoch. --resume SWEEP continues a
    sweep whose driver was killed, without re-running finished trials.
    """
    from pomona.data.shards import read_manifest
    from pomona.tune.space import parse_space_flag
    from pomona.tune.sweep import check_sweep_dir, read_sweep_config

    if register is not None:
        from pomona.registry.names import validate_name

        validate_name(register)  # before hours of training, not after
    if resume is not None:
        given = [config_file, overrides, space, data, out, model, epochs, workers, trials]
        given += [concurrent, scheduler, searcher, seed]
        if any(value for value in given):
            raise ConfigError("--resume continues SWEEP/sweep.yaml as it is; pass no settings")
        check_sweep_dir(str(resume), resume=True)
        config = read_sweep_config(resume.resolve())
    else:
        flags = {
            "out": out,
            "train.data": data,
            "train.model.architecture": model,
            "train.epochs": epochs,
            "train.num_workers": workers,
            "trials": trials,
            "concurrent_trials": concurrent,
            "scheduler.name": scheduler,
            "searcher": searcher,
            "seed": seed,
            "space": dict(parse_space_flag(flag) for flag in space) if space else None,
        }
        config = load_config(SweepConfig, config_file, overrides or (), flags, _FLAG_NAMES)
        check_sweep_dir(config.out, resume=False)  # fail before starting Ray
    read_manifest(config.train.data)  # a missing dataset fails here, not in every trial
    results = _run_and_show(config, resume=resume is not None)
    if register is not None:
        _register(config, results, register, registry)


def _run_and_show(config: SweepConfig, *, resume: bool) -> list[TrialResult]:
    """Run the sweep with a live trial table on stderr, then print the results table."""
    from pomona.cluster.runtime import check_local_gpus
    from pomona.tune.progress import read_progress
    from pomona.tune.results import best_trial
    from pomona.tune.sweep import run_sweep

    sweep_dir = Path(config.out)
    session.connect()
    # A trial at a time at least.
    check_local_gpus(config.train.gpus, session.address, "--workers", option="train.use_gpu")
    if not session.verbose:
        # The table and results show failed trials with their error; Tune would also log
        # each one's traceback.
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    done = threading.Event()
    with Live(
        _progress_table(config, []), console=err_console, auto_refresh=False, transient=True
    ) as live:

        def watch() -> None:
            while not done.wait(_REFRESH_S):
                live.update(_progress_table(config, read_progress(sweep_dir)), refresh=True)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            results = run_sweep(config, resume=resume)
        finally:
            done.set()
            watcher.join()
    _print_results(config, results)
    best = best_trial(results, config.mode)
    if best is None:
        console.print("no trial produced a model", markup=False)
    else:
        console.print(
            f"best trial {best.trial}: {config.metric} {best.best_metric:.4f} at epoch "
            f"{best.best_epoch}; model at {sweep_dir / 'best'}",
            markup=False,
            soft_wrap=True,
        )
    console.print(
        f"results: {sweep_dir / 'results.csv'}; report: {sweep_dir / 'report.html'}",
        markup=False,
        soft_wrap=True,
    )
    return results


def _progress_table(config: SweepConfig, statuses: list[TrialStatus]) -> Table:
    keys = list(config.space)
    table = Table("trial", *keys, "epoch", config.metric, "status", title="sweep")
    for status in statuses:
        metric = "-" if status.metric is None else f"{status.metric:.4f}"
        table.add_row(
            status.trial,
            *(format_setting(status.settings.get(k)) for k in keys),
            f"{status.epoch}/{config.train.epochs}",
            metric,
            status.status.lower(),
        )
    return table


def _print_results(config: SweepConfig, results: list[TrialResult]) -> None:
    keys = list(config.space)
    table = Table("trial", *keys, "epochs", f"best {config.metric}", "status")
    for r in results:
        table.add_row(
            r.trial,
            *(format_setting(r.settings.get(k)) for k in keys),
            str(r.epochs),
            "-" if r.best_metric is None else f"{r.best_metric:.4f}",
            r.status,
        )
    console.print(table)
    for r in results:
        if r.error is not None:
            console.print(f"trial {r.trial} failed: {r.error}", markup=False, soft_wrap=True)


def _register(
    config: SweepConfig, results: list[TrialResult], name: str, registry: str | None
) -> None:
    from pomona.registry import SweepTrial
    from pomona.tune.results import best_trial

    best = best_trial(results, config.mode)
    if best is None or best.best_metric is None:
        raise ConfigError(f"nothing to register as {name!r}: no trial of the sweep saved a model")
    store = session.open_registry(registry)
    origin = SweepTrial(
        sweep=str(Path(config.out).resolve()),
        trial=best.trial,
        settings=best.settings,
        metric=config.metric,
        value=best.best_metric,
    )
    version = store.register(Path(best.run_dir), name, sweep=origin)
    console.print(
        f"registered {version.ref} from sweep {origin.sweep} trial {best.trial} in {store.uri}",
        markup=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("sweep", no_args_is_help=True)(sweep_command)
