"""The run directory: its layout, the per-epoch metrics file and the best model.

```
RUN/config.yaml         the resolved TrainConfig (what --resume re-reads)
RUN/metrics.csv         one row per epoch, rewritten atomically
RUN/curves.png          training vs validation error and loss by epoch
RUN/model.safetensors   weights of the best epoch by validation error
RUN/model.json          its model card
RUN/checkpoints/        Ray Train's storage: per-epoch checkpoints and run state; a checkpoint
                        may hold best/, the better model of an epoch since the previous one
```

RUN is a local directory or a URI (:mod:`pomona.location`). The files other than checkpoints are
written in a local directory (RUN itself, or a staging copy of a remote RUN, see
:class:`RunFiles`) and uploaded from there.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import yaml

from pomona.config import load_config
from pomona.location import Location, as_location, check_output_dir
from pomona.models.card import CARD_FILE, WEIGHTS_FILE
from pomona.storage import atomic_write_text
from pomona.train.config import TrainConfig

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
CURVES_FILE = "curves.png"
CHECKPOINTS = "checkpoints"
BEST_DIR = "best"
METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "train_error",
    "val_loss",
    "val_error",
    "lr",
    "samples_per_s",
    "epoch_time_s",
    "attempt",
)


def check_run_dir(out: str, *, resume: bool) -> Location:
    """The run directory (a local path or a URI), checked: new (or empty) for a fresh run, a
    run to resume.

    Raises:
        ConfigError: a bad URI, a fresh run would overwrite an existing one, or there is
            nothing to resume.
    """
    return check_output_dir(out, resume=resume, marker=CONFIG_FILE, kind="run", command="train")


def write_config(run_dir: Path | Location, config: TrainConfig) -> None:
    """Save the resolved config as YAML, its dataset and run directory as absolute paths or
    URIs, so that ``train --resume`` works from any working directory."""
    saved = config.model_dump(mode="json")
    saved["data"], saved["out"] = str(as_location(config.data)), str(as_location(run_dir))
    text = yaml.safe_dump(saved, sort_keys=False)
    (as_location(run_dir) / CONFIG_FILE).write_text(text)


def read_config(run_dir: Path | Location) -> TrainConfig:
    """The config a run was started (or last resumed) with.

    Raises:
        ConfigError: there is none, or it does not validate.
    """
    return load_config(TrainConfig, as_location(run_dir) / CONFIG_FILE)


def checkpointed_epoch(run_dir: Location) -> int:
    """The epoch of the newest checkpoint Ray Train recorded for the run, which a resume
    continues after; 0 before the first. Read from storage, without Ray."""
    from ray.train import Result

    storage = run_dir / CHECKPOINTS
    if not storage.is_dir():
        return 0
    # Ray logs, at INFO, that a new run in this folder would resume: not news to a reader.
    train_logger = logging.getLogger("ray.train")
    level = train_logger.level
    train_logger.setLevel(logging.WARNING)
    try:
        result = Result.from_path(storage.path, storage_filesystem=storage.filesystem)
    except (RuntimeError, ValueError, OSError):  # no checkpoint recorded yet
        return 0
    finally:
        train_logger.setLevel(level)
    return int(result.metrics.get("epoch", 0)) if result.checkpoint is not None else 0


def read_metrics(run_dir: Path | Location) -> list[dict[str, float]]:
    """Rows of ``metrics.csv`` as floats, ordered by epoch; [] when there are none yet."""
    try:
        text = (as_location(run_dir) / METRICS_FILE).read_text()
    except FileNotFoundError:
        return []
    return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]


def record_epoch(run_dir: Path, row: Mapping[str, float]) -> list[dict[str, float]]:
    """Insert or replace the row of ``row["epoch"]`` and rewrite ``metrics.csv`` atomically.

    Keyed by epoch, so an epoch re-run after a failure replaces its row instead of duplicating it.
    """
    rows = {int(r["epoch"]): r for r in read_metrics(run_dir)}
    rows[int(row["epoch"])] = {k: float(row[k]) for k in METRIC_COLUMNS}
    ordered = [rows[e] for e in sorted(rows)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for item in ordered:
        writer.writerow({k: _format(item[k]) for k in METRIC_COLUMNS})
    atomic_write_text(run_dir / METRICS_FILE, buffer.getvalue())
    return ordered


def publish_best(checkpoint_dir: Path, run_dir: Path) -> bool:
    """Publish the better model of a checkpoint if it beats the run's published model.

    The checkpoint's own model is its epoch's; ``checkpoint_dir/best`` (when present) holds a
    better epoch since the previous checkpoint.

    Returns:
        Whether a model was published into ``run_dir``.
    """
    # best/ first: on a tie min() keeps it, and a tie keeps the earlier epoch.
    winner = min((checkpoint_dir / BEST_DIR, checkpoint_dir), key=_val_error)
    if _val_error(winner) >= _val_error(run_dir):
        return False
    _publish_model(winner, run_dir)
    return True


def _val_error(model_dir: Path) -> float:
    """Validation error of the model in ``model_dir`` (inf when there is none)."""
    from pomona.models.artifact import read_card

    if not (model_dir / CARD_FILE).is_file():
        return math.inf
    return read_card(model_dir).metrics.get("val_error", math.inf)


def _publish_model(source_dir: Path, run_dir: Path) -> None:
    """Copy a checkpoint's model files into the run directory, weights first, card last."""
    for name in (WEIGHTS_FILE, CARD_FILE):
        tmp = run_dir / f".{name}.tmp"
        shutil.copyfile(source_dir / name, tmp)
        tmp.replace(run_dir / name)


class RunFiles:
    """A local directory holding the run's own files (metrics, curves, published model).

    For a local run that is the run directory. For a remote one it is a staging directory,
    filled with the run's files on first use (a resumed run continues its metrics and competes
    with its published model) and uploaded file by file after each change: each upload is one
    atomic put, weights before card as locally.

    Args:
        run: the run directory.
    """

    def __init__(self, run: Location) -> None:
        self.run = run
        self._staging: tempfile.TemporaryDirectory[str] | None = None

    def directory(self) -> Path:
        """The local directory to read and write the run's files in."""
        if self.run.local is not None:
            return self.run.local
        if self._staging is None:
            self._staging = tempfile.TemporaryDirectory(prefix="pomona-run-")
            names = (METRICS_FILE, WEIGHTS_FILE, CARD_FILE)
            self.run.download_existing(names, Path(self._staging.name))
        return Path(self._staging.name)

    def sync(self, names: list[str]) -> None:
        """Upload the files ``names`` of :meth:`directory` to a remote run, in that order."""
        if self.run.local is None:
            for name in names:
                (self.run / name).upload(self.directory() / name)


def discard_if_unstarted(run_dir: Path | Location, *, keep_directory: bool) -> None:
    """Delete a fresh run that failed before recording an epoch, so its ``--out`` is free again.

    A run with at least one epoch is kept: ``--resume`` continues it.

    Args:
        run_dir: the run directory.
        keep_directory: it existed (empty) before the run; empty it instead of removing it.
    """
    run_dir = as_location(run_dir)
    if read_metrics(run_dir):
        return
    local = run_dir.local
    if local is None:
        run_dir.delete()
        return
    if not keep_directory:
        shutil.rmtree(local, ignore_errors=True)
        return
    for child in local.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _format(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"
