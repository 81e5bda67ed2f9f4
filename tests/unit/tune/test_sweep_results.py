"""Sweep results without Ray: results.csv, the best trial, the `best` link, error lines, report."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from pomona.errors import TrainingError
from pomona.evaluate import plots
from pomona.models.card import CARD_FILE
from pomona.tune.config import SweepConfig
from pomona.tune.report import write_sweep_report
from pomona.tune.results import TrialResult, best_trial, error_line, link_best, write_results_csv


@pytest.fixture
def config(tmp_path: Path) -> SweepConfig:
    return SweepConfig.model_validate(
        {
            "out": str(tmp_path),
            "train": {"data": "D", "epochs": 3},
            "space": {"lr": "loguniform(0.01, 1)", "schedule.name": "choice(cosine, step)"},
        }
    )


@pytest.fixture
def results(tmp_path: Path) -> list[TrialResult]:
    def trial(name: str, **fields: object) -> TrialResult:
        run_dir = tmp_path / "trials" / name
        run_dir.mkdir(parents=True)
        if fields.get("status") != "failed":
            (run_dir / CARD_FILE).write_text("{}")
        return TrialResult(trial=name, run_dir=str(run_dir), **fields)

    return [
        trial("t1", settings={"learning_rate": 0.05, "schedule.name": "cosine"}, status="completed",
              epochs=3, best_metric=0.2, best_epoch=3, curve=[0.5, 0.3, 0.2]),
        trial("t2", settings={"learning_rate": 0.5, "schedule.name": "step"}, status="stopped",
              epochs=1, best_metric=0.6, best_epoch=1, curve=[0.6]),
        trial("t3", settings={"learning_rate": 0.9, "schedule.name": "step"}, status="failed",
              epochs=1, best_metric=0.1, best_epoch=1, curve=[0.1],
              error="TrainingError: epoch 2: the training loss is nan <b>"),
    ]  # fmt: skip


def test_results_csv_has_one_row_per_trial_with_settings_and_status(
    tmp_path: Path, config: SweepConfig, results: list[TrialResult]
) -> None:
    write_results_csv(tmp_path / "results.csv", config, results)
    with open(tmp_path / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["trial"] for r in rows] == ["t1", "t2", "t3"]
    assert list(rows[0])[:3] == ["trial", "learning_rate", "schedule.name"]
    assert rows[0]["best_val_error"] == "0.2" and rows[0]["status"] == "completed"
    assert rows[1]["epochs"] == "1" and rows[1]["status"] == "stopped"
    assert rows[2]["status"] == "failed" and "loss is nan" in rows[2]["error"]


def test_best_skips_failed_trials_and_link_points_at_the_winner(
    tmp_path: Path, results: list[TrialResult]
) -> None:
    best = best_trial(results, "min")
    assert best is not None and best.trial == "t1"  # t3 scored lower, but it failed
    assert best_trial(results, "max").trial == "t2"
    link = link_best(tmp_path, best)
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()
    assert (link / CARD_FILE).is_file()
    link_best(tmp_path, results[1])  # replaced, not an error
    assert link.resolve() == Path(results[1].run_dir).resolve()


def test_best_is_none_when_every_trial_failed(results: list[TrialResult]) -> None:
    assert best_trial(results[2:], "min") is None


def test_error_line_finds_the_root_cause_in_one_line() -> None:
    try:
        try:
            raise TrainingError("epoch 1: the training loss is nan;\nlower learning_rate")
        except TrainingError as cause:
            raise RuntimeError("Training failed due to worker errors") from cause
    except RuntimeError as error:
        line = error_line(error)
    assert line == "TrainingError: epoch 1: the training loss is nan; lower learning_rate"


def test_report_is_one_escaped_self_contained_page(
    tmp_path: Path, config: SweepConfig, results: list[TrialResult]
) -> None:
    page = write_sweep_report(tmp_path, config, results, results[0]).read_text()
    assert page.count("data:image/png;base64,") == 3  # curves + one plot per setting
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")
    assert "loss is nan &lt;b&gt;" in page  # errors shown, escaped
    for heading in ("Summary", "Best trial", "Figures", "Trials"):
        assert f"<h2>{heading}</h2>" in page


@pytest.mark.parametrize(
    ("folder", "title"), [("sweep", "Sweep"), ("lr-search", "Sweep lr-search")]
)
def test_report_title_names_the_sweep_once(
    tmp_path: Path, config: SweepConfig, results: list[TrialResult], folder: str, title: str
) -> None:
    (tmp_path / folder).mkdir()
    page = write_sweep_report(tmp_path / folder, config, results, results[0]).read_text()
    assert f"<title>{title}</title>" in page and f"<h1>{title}</h1>" in page


def test_report_ticks_a_choice_at_its_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, results: list[TrialResult]
) -> None:
    ticks: list[list[str]] = []
    write_png = plots.save_figure

    def save_figure(figure: Figure, path: Path) -> Path:
        ticks.append([label.get_text() for label in figure.axes[0].get_xticklabels()])
        return write_png(figure, path)

    monkeypatch.setattr(plots, "save_figure", save_figure)
    config = SweepConfig.model_validate(
        {"out": str(tmp_path), "train": {"data": "D"}, "space": {"batch_size": "choice(16, 32)"}}
    )
    for trial, batch_size in zip(results, (16, 32, 16), strict=True):
        trial.settings = {"batch_size": batch_size}
    write_sweep_report(tmp_path, config, results, results[0])
    assert ticks[-1] == ["16", "32"]  # best val_error against batch_size: no 18, 20, ...


@pytest.mark.parametrize(
    ("cpus", "workers", "trials", "expected"),
    [
        (2, 1, 6, 2),  # two trials share the 2 CPUs: one starts while the other trains
        (2, 1, 1, 1),
        (2, 2, 6, 1),  # two trials would put 4 workers on 2 cores
        (4, 2, 6, 2),
        (3, 1, 6, 2),
        (16, 2, 6, 6),
        (16, 2, 100, 7),
        (16, 4, 100, 3),
        (1, 1, 3, 1),
    ],
)
def test_concurrent_trials_leave_a_cpu_for_ray_data(
    cpus: float, workers: int, trials: int, expected: int
) -> None:
    from pomona.tune.sweep import auto_concurrent_trials

    assert auto_concurrent_trials(cpus, workers, trials) == expected
