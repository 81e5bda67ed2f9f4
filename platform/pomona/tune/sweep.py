"""Ray Tune over the Ray Train trainer: every trial is a real ``pomona train`` run.

Each trial is a Tune function trainable that builds its :class:`TrainConfig` (the base with the
trial's settings, validated again) and calls :func:`pomona.train.trainer.train` with Tune's
``TuneReportCallback``, so every epoch's report reaches Tune and ASHA can stop the trial between
epochs. The trial function itself reserves almost no CPU (it only waits on the controller);
the workers of all concurrent trials share the cluster's CPUs, less one kept for Ray Data.

```
SWEEP/sweep.yaml        the resolved SweepConfig (what --resume re-reads)
SWEEP/progress.json     live trial status, for the CLI's table
SWEEP/trials/<id>/      each trial's run directory (metrics.csv, curves.png, model, checkpoints)
SWEEP/tune/             Ray Tune's experiment state (Tuner.restore reads it)
SWEEP/results.csv       one row per trial
SWEEP/report.html       the sweep report
SWEEP/best              link to the best trial's run directory (a model directory)
```
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import ray
import yaml
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from pomona.config import validate
from pomona.errors import ConfigError
from pomona.location import as_location, check_output_dir
from pomona.storage import atomic_write_text
from pomona.train.config import TrainConfig
from pomona.train.preflight import VerifiedDataset, verify_dataset
from pomona.train.run_dir import CONFIG_FILE
from pomona.train.trainer import auto_cpus_per_worker, default_threads, train
from pomona.tune.config import TRIALS_DIR, SweepConfig, trial_config
from pomona.tune.progress import ProgressFileCallback
from pomona.tune.report import write_sweep_report
from pomona.tune.results import (
    RESULTS_FILE,
    TrialResult,
    best_trial,
    collect_results,
    link_best,
    write_results_csv,
)

logger = logging.getLogger(__name__)

SWEEP_FILE = "sweep.yaml"
TUNE_DIR = "tune"
#: CPUs a trial's own actor reserves: it only waits on its Ray Train controller, and Tune
#: cannot place a trial that reserves nothing.
TRIAL_CPUS = 0.01


def check_sweep_dir(out: str, *, resume: bool) -> Path:
    """The absolute sweep directory, checked: new (or empty) for a fresh sweep, one to resume.

    Raises:
        ConfigError: ``out`` is remote (Tune's state, the progress file and the ``best`` link
            are local files), a fresh sweep would overwrite an existing one, or there is
            nothing to resume.
    """
    location = check_output_dir(
        out, resume=resume, marker=SWEEP_FILE, kind="sweep", command="sweep"
    )
    if location.local is None:
        raise ConfigError(
            f"sweep --out {out} must be a local directory or a file:// URI (on a cluster: a "
            "volume every node mounts); --data may be a remote URI"
        )
    return location.local


def read_sweep_config(sweep_dir: Path) -> SweepConfig:
    """The config a sweep directory was started with (for ``--resume``)."""
    data = yaml.safe_load((sweep_dir / SWEEP_FILE).read_text())
    return validate(SweepConfig, data, str(sweep_dir / SWEEP_FILE))


def auto_concurrent_trials(cluster_cpus: float, num_workers: int, total_trials: int) -> int:
    """Trials to run at once: as many as fit one CPU per worker with one CPU left for Ray Data,
    and at least two where the workers of two trials still get a core each.

    A trial spends about 10 s starting and stopping Ray processes (its Tune actor, the Ray Train
    controller and workers, Ray Data's coordinators), mostly one process importing at a time,
    while the CPUs it reserved stay idle; with a second trial in flight, one trial's start-up and
    shutdown overlap the other's epochs (on 2 CPUs a 6-trial x 3-epoch sweep took 78 s with two
    at a time against 100 s with one, ``benchmarks/RESULTS.md`` section 4). The two trials share
    the CPUs: each worker then reserves and threads half as much.
    """
    fit = int(max(cluster_cpus - 1.0, 1.0) // num_workers)
    if fit < 2 and 2 * num_workers <= cluster_cpus:
        fit = 2
    return max(1, min(fit, total_trials))


def run_sweep(config: SweepConfig, *, resume: bool = False) -> list[TrialResult]:
    """Run (or resume) a sweep and write its results, report and ``best`` link.

    Ray must already be initialised (see :func:`pomona.cluster.runtime.ensure_ray`).

    Args:
        config: the validated sweep config.
        resume: continue the interrupted sweep in ``config.out``; completed trials are kept,
            unfinished ones continue from their last checkpoint.

    Returns:
        One result per trial, in the order Tune created them.

    Raises:
        ConfigError: the sweep directory is in the way, or holds no sweep to resume.
        DatasetError: the dataset cannot be read, or a shard differs from its manifest.
    """
    sweep_dir = check_sweep_dir(config.out, resume=resume)
    tune_path = sweep_dir / TUNE_DIR
    cluster_cpus = ray.cluster_resources().get("CPU", 1.0)
    concurrent = config.concurrent_trials or auto_concurrent_trials(
        cluster_cpus, config.train.num_workers, config.total_trials
    )
    base = _share_cluster(config, cluster_cpus, concurrent)
    # Once for the sweep rather than once per trial; a trial verifies the shards again only
    # if one was written since.
    dataset = verify_dataset(base.data)
    trainable = tune.with_resources(
        tune.with_parameters(
            _run_trial,
            base=base.model_dump(mode="json"),
            trials_dir=str(sweep_dir / TRIALS_DIR),
            dataset=dataset,
        ),
        {"cpu": TRIAL_CPUS},
    )
    if resume and tune.Tuner.can_restore(str(tune_path)):
        logger.info("resuming the sweep in %s", sweep_dir)
        tuner = tune.Tuner.restore(str(tune_path), trainable, resume_unfinished=True)
    else:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        # Absolute paths, so that --resume works from any working directory.
        saved = config.model_dump(mode="json", exclude={"train": {"out"}})
        saved["out"], saved["train"]["data"] = str(sweep_dir), base.data
        atomic_write_text(sweep_dir / SWEEP_FILE, yaml.safe_dump(saved, sort_keys=False))
        tuner = tune.Tuner(
            trainable,
            param_space={key: dist.to_tune() for key, dist in config.space.items()},
            tune_config=tune.TuneConfig(
                metric=config.metric,
                mode=config.mode,
                num_samples=config.trials,
                search_alg=_searcher(config, concurrent),
                scheduler=_scheduler(config),
                trial_dirname_creator=lambda trial: trial.trial_id,
            ),
            run_config=tune.RunConfig(
                name=TUNE_DIR,
                storage_path=str(sweep_dir),
                failure_config=tune.FailureConfig(max_failures=0),
                callbacks=[ProgressFileCallback(str(sweep_dir), config.metric)],
                verbose=0,
            ),
        )
    logger.info(
        "sweep of %d trials, %d at a time, in %s", config.total_trials, concurrent, sweep_dir
    )
    # Tune's newer console output prints a configuration box even at verbose=0; the classic one
    # stays silent, and the CLI draws its own table from progress.json.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    grid = tuner.fit()
    results = collect_results(grid, config, sweep_dir / TRIALS_DIR)
    write_results_csv(sweep_dir / RESULTS_FILE, config, results)
    best = best_trial(results, config.mode)
    if best is not None:
        link_best(sweep_dir, best)
    write_sweep_report(sweep_dir, config, results, best)
    return results


def _share_cluster(config: SweepConfig, cluster_cpus: float, concurrent: int) -> TrainConfig:
    """The base config with an absolute dataset path, and CPUs and threads per worker shared
    by every concurrent trial.

    The same rule as a single run (:func:`auto_cpus_per_worker`, :func:`default_threads`), over
    all workers of all concurrent trials, so one CPU stays free for Ray Data however many trials
    run. Values the user set, in the base or the space, are kept.
    """
    workers = config.train.num_workers * concurrent
    # Tune runs each trial in its own working directory: relative paths would not resolve.
    shared: dict[str, Any] = {"data": str(as_location(config.train.data))}
    if config.train.cpus_per_worker is None and "cpus_per_worker" not in config.space:
        free = cluster_cpus - concurrent * TRIAL_CPUS
        shared["cpus_per_worker"] = auto_cpus_per_worker(free, workers)
    if config.train.threads_per_worker is None and "threads_per_worker" not in config.space:
        shared["threads_per_worker"] = default_threads(cluster_cpus, workers)
    return trial_config(config.train, shared, config.train.out)


def _searcher(config: SweepConfig, concurrent: int) -> Any:
    """The search algorithm, seeded, limited to ``concurrent`` trials at once.

    (Tune ignores ``TuneConfig.max_concurrent_trials`` when given a ``BasicVariantGenerator``.)
    """
    if config.searcher == "optuna":
        import optuna
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        # Optuna logs every study and trial on stderr; the sweep's table already shows them.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return ConcurrencyLimiter(OptunaSearch(seed=config.seed), max_concurrent=concurrent)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(max_concurrent=concurrent, random_state=config.seed)


def _scheduler(config: SweepConfig) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if config.scheduler.name == "fifo":
        return FIFOScheduler()
    # `epoch` rather than Tune's iteration count: a trial resumed from its checkpoint keeps
    # counting where it stopped.
    return ASHAScheduler(
        time_attr="epoch",
        max_t=config.train.epochs,
        grace_period=config.scheduler.grace_period,
        reduction_factor=config.scheduler.reduction_factor,
    )


def _run_trial(
    settings: dict[str, Any], base: dict[str, Any], trials_dir: str, dataset: VerifiedDataset
) -> None:
    """One trial (runs in a Tune trial actor): train with the trial's settings, report to Tune."""
    trial_id = tune.get_context().get_trial_id()
    out = Path(trials_dir) / trial_id
    config: TrainConfig = trial_config(TrainConfig.model_validate(base), settings, str(out))
    # A trial interrupted by a killed driver continues its own Ray Train run from its checkpoint.
    resume = (out / CONFIG_FILE).is_file()
    train(config, resume=resume, callbacks=[TuneReportCallback()], dataset=dataset)
