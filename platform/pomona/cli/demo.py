"""``pomona demo``: the whole pipeline on real data that ships with scikit-learn."""

from __future__ import annotations

import shlex
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Annotated

import typer

from pomona.cli.console import console
from pomona.errors import ConfigError

_PARTS = ("images", "dataset", "run", "report", "registry", "explain", "sweep")
#: What the serving stage serves: the production version only.
_SERVED = "digits@production"


def demo_command(
    workdir: Annotated[Path, typer.Option(help="Where the demo writes everything.")] = Path(
        "pomona-demo"
    ),
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 6,
    workers: Annotated[int, typer.Option(min=1, help="Ray Train workers.")] = 2,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier demo in WORKDIR.")
    ] = False,
) -> None:
    """Digits -> images -> Parquet shards -> Ray Train -> evaluation -> registry -> serving.

    Runs the same commands a user would, one after the other, on scikit-learn's 1,797 real
    handwritten digits, and prints what each step produced.
    """
    from pomona.cli import app
    from pomona.cli.session import session

    if workdir.exists() and any(workdir.iterdir()):
        if not overwrite:
            raise ConfigError(f"{workdir} is not empty; pass --overwrite or choose --workdir")
        strangers = sorted(p.name for p in workdir.iterdir() if p.name not in _PARTS)
        if strangers:
            raise ConfigError(f"{workdir} holds files the demo did not write: {strangers}")
        for part in _PARTS:
            shutil.rmtree(workdir / part, ignore_errors=True)
    images, dataset, run, report, registry, explain, sweep = (str(workdir / p) for p in _PARTS)
    samples = [str(workdir / "images" / d / f"{n:04d}.png") for d, n in (("3", 3), ("7", 7))]
    steps = [
        ("Write the digits as PNG files", ["datasets", "digits", images, "--size", "32"]),
        (
            "Validate, preprocess and split them into Parquet shards",
            ["ingest", images, dataset, "--image-size", "32", "--channels", "1"],
        ),
        (
            f"Fine-tune simple_cnn on {workers} Ray Train workers",
            [
                "train",
                "--data",
                dataset,
                "--out",
                run,
                "--epochs",
                str(epochs),
                "--workers",
                str(workers),
                "--batch-size",
                "32",
                "--lr",
                "0.1",
            ],
        ),
        ("Evaluate on the test split", ["evaluate", run, "--data", dataset, "--out", report]),
        (
            "Register the model and mark it production",
            [
                "--registry",
                registry,
                "registry",
                "register",
                run,
                "--name",
                "digits",
                "--report",
                report,
            ],
        ),
        ("", ["--registry", registry, "registry", "alias", "digits", "1", "production"]),
        (
            "Predict with the production model",
            ["--registry", registry, "predict", "digits@production", *samples],
        ),
        (
            "Explain its predictions with Grad-CAM",
            ["--registry", registry, "explain", "digits@production", "--out", explain, *samples],
        ),
        *_sweep_stage(dataset, sweep, registry, min(epochs, 3)),
    ]
    for title, args in steps:
        if title:
            console.rule(f"[bold]{title}")
        console.print(f"$ pomona {shlex.join(args)}", style="dim", soft_wrap=True, markup=False)
        app(args=[*session.global_args(), *args], standalone_mode=False)
    console.rule(f"[bold]Serve {_SERVED} over HTTP with Ray Serve")
    _serve_stage(registry, samples)
    console.rule("[bold]Done")
    console.print(
        f"training curves: {run}/curves.png\nevaluation report: {report}/index.html\n"
        f"registry: {registry}",
        markup=False,
    )


def _serve_stage(registry: str, samples: list[str]) -> None:
    """Serve the production model, send real HTTP requests, show answers and metrics, stop."""
    from pomona.cli.serve import PlanOptions, plan, serving
    from pomona.cli.session import session
    from pomona.cluster.runtime import free_ports

    session.registry = registry
    (port,) = free_ports(1)
    console.print(
        f"$ pomona --registry {shlex.quote(registry)} serve {_SERVED} --port {port}",
        style="dim",
        soft_wrap=True,
        markup=False,
    )
    with serving(plan([_SERVED], PlanOptions(port=port))) as urls:
        console.print(
            f"API {urls.api}/v1/models, docs {urls.api}/docs", markup=False, soft_wrap=True
        )
        for sample in samples:
            console.print(
                f"$ curl -s --data-binary @{sample} -H 'Content-Type: image/png' "
                f"'{urls.api}/v1/models/digits/predict?top_k=2'",
                style="dim",
                soft_wrap=True,
                markup=False,
            )
            console.print(
                _post(f"{urls.api}/v1/models/digits/predict?top_k=2", sample),
                soft_wrap=True,
                markup=False,
            )
        console.print(f"$ curl -s {urls.metrics} | grep ^ray_pomona_requests", style="dim")
        for line in _metric_lines(urls.metrics, "ray_pomona_requests_total"):
            console.print(line, soft_wrap=True, markup=False)


def _post(url: str, image: str) -> str:
    request = urllib.request.Request(
        url, data=Path(image).read_bytes(), headers={"Content-Type": "image/png"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read().decode()


def _metric_lines(url: str, name: str, timeout_s: float = 60.0) -> list[str]:
    # Ray exports replica metrics every few seconds; wait for the first report.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url, timeout=30) as response:
            lines = [
                line for line in response.read().decode().splitlines() if line.startswith(name)
            ]
        if lines:
            return lines
        time.sleep(1)
    return [f"(no {name} reported within {timeout_s:g} s)"]


def _sweep_stage(
    dataset: str, sweep: str, registry: str, epochs: int
) -> list[tuple[str, list[str]]]:
    """A small ASHA sweep (4 trials of at most ``epochs``) whose best model becomes ``digits:2``."""
    return [
        (
            "Search learning rate and batch size with Ray Tune (ASHA stops poor trials)",
            [
                "sweep",
                "--data",
                dataset,
                "--out",
                sweep,
                "--model",
                "simple_cnn",
                "--epochs",
                str(epochs),
                "--workers",
                "1",
                "--trials",
                "4",
                "--space",
                "lr=loguniform(0.02,0.3)",
                "--space",
                "batch_size=choice(32,64)",
                # ASHA's default (keep 1 in 4 per rung) would stop 3 of 4 trials after epoch 1.
                "--set",
                "scheduler.reduction_factor=2",
                "--register",
                "digits",
                "--registry",
                registry,
            ],
        )
    ]


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("demo")(demo_command)
