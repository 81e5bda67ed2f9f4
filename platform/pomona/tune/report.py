"""The sweep report: one self-contained HTML page (``SWEEP/report.html``).

It shows the best trial's settings, every trial's metric by epoch on one plot, the best metric
against each searched setting, and a table of all trials with the error of those that failed.
The page and its plots come from the evaluation report's helpers
(:func:`pomona.evaluate.html.render_page`, :mod:`pomona.evaluate.plots`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from html import escape
from pathlib import Path

from pomona.evaluate.html import cards_html, figures_html, render_page
from pomona.evaluate.plots import plot_metric_against, plot_metric_by_epoch
from pomona.storage import atomic_write_text
from pomona.tune.config import SweepConfig
from pomona.tune.results import TrialResult
from pomona.tune.space import Choice, Grid, LogUniform, format_setting

REPORT_FILE = "report.html"


def write_sweep_report(
    sweep_dir: Path, config: SweepConfig, results: Sequence[TrialResult], best: TrialResult | None
) -> Path:
    """Write ``SWEEP/report.html`` and return its path."""
    metric = config.metric
    with tempfile.TemporaryDirectory() as scratch:
        figures = {
            f"{metric} by epoch, every trial": plot_metric_by_epoch(
                {r.trial: r.curve for r in results}, metric, Path(scratch) / "curves.png"
            )
        }
        ranked = [r for r in results if r.best_metric is not None and r.status != "failed"]
        for index, (key, distribution) in enumerate(config.space.items()):
            if ranked:
                choices = distribution.values if isinstance(distribution, Choice | Grid) else ()
                figures[f"best {metric} against {key}"] = plot_metric_against(
                    [(r.settings[key], r.best_metric) for r in ranked if key in r.settings],
                    key,
                    f"best {metric}",
                    Path(scratch) / f"setting-{index}.png",
                    log_x=isinstance(distribution, LogUniform),
                    categories=choices,
                )
        body = _summary(config, results, best) + figures_html(figures) + _table(config, results)
    counts = f"{len(results)} trials of {config.train.model.architecture} on {config.train.data}"
    page = render_page(_title(sweep_dir), counts, body)
    path = sweep_dir / REPORT_FILE
    atomic_write_text(path, page)
    return path


def _title(sweep_dir: Path) -> str:
    """The page's title: "Sweep NAME", but "Sweep" alone for a folder called ``sweep`` (as the
    demo's is), which would read "Sweep sweep"."""
    name = sweep_dir.name
    return "Sweep" if name.casefold() == "sweep" else f"Sweep {name}"


def _summary(config: SweepConfig, results: Sequence[TrialResult], best: TrialResult | None) -> str:
    by_status = {s: sum(r.status == s for r in results) for s in ("completed", "stopped", "failed")}
    cards = [
        *((status, str(count)) for status, count in by_status.items()),
        ("trial-epochs", str(sum(r.epochs for r in results))),
        ("scheduler", config.scheduler.name),
        ("searcher", config.searcher),
    ]
    html = f"<h2>Summary</h2>{cards_html(cards)}"
    if best is None:
        return html + "<p>No trial produced a model.</p>"
    rows = "".join(
        f"<tr><td>{escape(key)}</td><td>{escape(str(value))}</td></tr>"
        for key, value in best.settings.items()
    )
    return (
        f"{html}<h2>Best trial</h2><p>{escape(best.trial)}: {config.metric} "
        f"{best.best_metric:.4f} at epoch {best.best_epoch} (model in "
        f"<code>{escape(best.run_dir)}</code>)</p>"
        f"<table><thead><tr><th>setting</th><th>value</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _table(config: SweepConfig, results: Sequence[TrialResult]) -> str:
    keys = list(config.space)
    head = "".join(
        f"<th>{escape(h)}</th>"
        for h in ["trial", *keys, "epochs", f"best {config.metric}", "status", "error"]
    )
    rows = []
    for r in results:
        shown = "-" if r.best_metric is None else f"{r.best_metric:.4f}"
        cells = [r.trial, *(format_setting(r.settings.get(k)) for k in keys), str(r.epochs), shown]
        low = ' class="low"' if r.status == "failed" else ""
        rows.append(
            "<tr>"
            + "".join(f"<td>{escape(c)}</td>" for c in cells)
            + f"<td{low}>{escape(r.status)}</td><td>{escape(r.error or '')}</td></tr>"
        )
    body = "".join(rows)
    return f"<h2>Trials</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
