"""``pomona evaluate``, ``pomona predict`` and ``pomona explain``.

MODEL is a run directory, a model directory, one of its two files or a registry reference
(``name``, ``name:N``, ``name@alias``), resolved by :func:`pomona.registry.resolve_model`.
``evaluate`` runs on Ray Data; ``predict`` and ``explain`` run in this process.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import TaskID
from rich.table import Column, Table

from pomona.cli.console import console, err_console, progress_bar
from pomona.cli.session import session
from pomona.errors import DatasetError, first_few

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from pomona.data.manifest import Preprocessing
    from pomona.evaluate.report import EvaluationReport
    from pomona.inference import Decoded
    from pomona.models.card import ModelCard

ModelArgument = Annotated[
    str,
    typer.Argument(
        metavar="MODEL",
        help="Run or model directory or URI, model.safetensors/model.json, or registry "
        "reference: name or name:latest (its newest version), name:N, name@alias (e.g. "
        "digits@production).",
        show_default=False,
    ),
]
# Superseded by the global `pomona --registry`; hidden, kept so existing scripts keep working.
RegistryOption = Annotated[str | None, typer.Option("--registry", hidden=True)]
ImagesArgument = Annotated[
    list[Path],
    typer.Argument(
        metavar="IMAGE",
        help="Image files, or folders of them (every image file below, in path order).",
        show_default=False,
    ),
]


#: Each path given on the command line with, for a folder, the files below it.
Listed = list[tuple[Path, list[Path] | None]]


def _listed(images: list[Path]) -> Listed:
    """Each of ``images`` with, for a folder, the files below it (sorted, litter skipped):
    listed before the model loads, so that an empty folder is reported first.

    Raises:
        DatasetError: a folder holds no files.
    """
    from pomona.data.discover import walk_files

    return [
        (
            path,
            [path / rel for rel in walk_files(path, "image files")[0]] if path.is_dir() else None,
        )
        for path in images
    ]


def _files(listed: Listed) -> list[Path]:
    """Every file of ``listed``: those named, and those below each folder."""
    return [file for path, below in listed for file in (below if below is not None else [path])]


@contextmanager
def _reading(listed: Listed, spec: Preprocessing, command: str) -> Iterator[Iterator[Decoded]]:
    """:func:`_decoded` with a progress bar on stderr, of files read, when they fill more than
    one forward pass."""
    from pomona.inference import IMAGES_PER_BATCH

    total = len(_files(listed))
    with progress_bar(command) as bar:
        task = bar.add_task(command, total=total, status="") if total > IMAGES_PER_BATCH else None
        yield _decoded(listed, spec, lambda: None if task is None else bar.advance(task))


def _decoded(listed: Listed, spec: Preprocessing, read: Callable[[], None]) -> Iterator[Decoded]:
    """The image files to use, each decoded once, as they are asked for: each one named, and
    the usable images of each folder; ``read`` is called after each file.

    A file in a folder that is not a usable image (text, empty, truncated) is skipped with a
    note on stderr once every folder has been read, as ingest rejects it, so a folder's broken
    file never stops the command midway. A file named on the command line is not skipped.

    Raises:
        ImageRejected: a file named on the command line cannot be read or is not an image.
        DatasetError: a folder holds no usable images.
    """
    from pomona.data.images import ImageRejected, load
    from pomona.inference import read_image

    skipped: list[str] = []
    for path, below in listed:
        if below is None:
            pixels = read_image(path, spec)
            read()
            yield path, pixels
            continue
        rejected: list[str] = []
        for file in below:
            usable: np.ndarray | None = None
            try:
                usable = load(file, spec)
            except ImageRejected as error:
                rejected.append(f"{file} ({error})")
            except OSError as error:
                rejected.append(f"{file} (cannot read: {error.strerror or error})")
            read()
            if usable is not None:
                yield file, usable
        if len(rejected) == len(below):
            raise DatasetError(f"folder {path} holds no usable images: {first_few(rejected, 3)}")
        skipped += rejected
    if skipped:
        what = (
            "file that is not a usable image"
            if len(skipped) == 1
            else "files that are not usable images"
        )
        err_console.print(
            f"skipped {len(skipped)} {what}: {first_few(skipped, 3)}", soft_wrap=True, markup=False
        )


def _resolve(model: str, registry: str | None) -> tuple[Path, str]:
    """The local model directory of ``model``, and ``model`` as typed with the version a
    registry reference stood for (``digits@production = digits:1``; a path or URI as it is)."""
    from pomona.registry import resolve_reference

    directory, version = resolve_reference(model, session.open_registry(registry))
    return directory, model if version in (None, model) else f"{model} = {version}"


def _load(model: str, registry: str | None) -> tuple[nn.Module, ModelCard, str]:
    """The network and card of ``model`` on the CPU, and its name as :func:`_resolve` gives it."""
    from pomona.inference import load_for_inference

    directory, named = _resolve(model, registry)
    return *load_for_inference(directory, "cpu"), named


def evaluate_command(
    model: ModelArgument,
    data: Annotated[
        str, typer.Option(help="Ingested dataset directory or URI.", show_default=False)
    ],
    out: Annotated[
        Path, typer.Option(help="Report directory to write (replaced if it holds a report).")
    ],
    split: Annotated[str, typer.Option(help="Split to evaluate.")] = "test",
    top_k: Annotated[int, typer.Option(min=1, help="k of the top-k error.")] = 5,
    gallery: Annotated[
        int, typer.Option(min=0, help="Most confident mistakes shown with Grad-CAM.")
    ] = 24,
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per inference batch.")] = 256,
    use_gpu: Annotated[
        bool, typer.Option("--use-gpu", help="One GPU per inference actor.")
    ] = False,
    registry: RegistryOption = None,
) -> None:
    """Evaluate MODEL on a dataset split: metrics, plots, mistakes with Grad-CAM, HTML report."""
    from pomona.cluster.runtime import check_local_gpus
    from pomona.evaluate.html import REPORT_FILE
    from pomona.evaluate.runner import MISCLASSIFIED_CSV, evaluate_model
    from pomona.location import is_uri

    model_dir, named = _resolve(model, registry)
    with progress_bar("evaluate") as bar:
        # The bar appears once the checks have passed and Ray starts, not before a mistake.
        task = TaskID(-1)

        def connect() -> None:
            nonlocal task
            task = bar.add_task("starting Ray", total=None, status="")
            session.connect()
            check_local_gpus(1 if use_gpu else 0, session.address, "--use-gpu")

        def update(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        report = evaluate_model(
            model if is_uri(model) else model_dir,
            data,
            out,
            split=split,
            top_k=top_k,
            gallery_size=gallery,
            batch_size=batch_size,
            use_gpu=use_gpu,
            model_name=model,
            connect=connect,
            progress=update,
        )
    _print_report(report, named, data)
    mistakes = report.count - report.correct
    console.print(
        f"report: {out / REPORT_FILE} ({min(gallery, mistakes)} of {mistakes} mistakes shown; "
        f"all in {out / MISCLASSIFIED_CSV})",
        soft_wrap=True,
        markup=False,
    )


def _print_report(report: EvaluationReport, model: str, data: str) -> None:
    # The model (with the version a registry reference stands for) and the dataset as the user
    # wrote them; report.json records the model's directory and weights' sha256.
    console.print(
        f"{model} ({report.model.architecture}) on {report.split} of "
        f"{data}: {report.count} samples, {report.num_classes} classes",
        soft_wrap=True,
        markup=False,
    )
    console.print(
        f"top-1 error {report.top1_error:.2%}   top-{report.k} error {report.topk_error:.2%}   "
        f"ECE {report.ece:.4f}"
    )
    table = Table("class", "precision", "recall", "F1", "support")
    for name in report.classes:
        row = report.per_class[name]
        table.add_row(
            escape(name),
            f"{row.precision:.3f}",
            f"{row.recall:.3f}",
            f"{row.f1:.3f}",
            str(row.support),
        )
    table.add_section()
    for label, avg in (("macro avg", report.macro_avg), ("weighted avg", report.weighted_avg)):
        table.add_row(
            label, f"{avg.precision:.3f}", f"{avg.recall:.3f}", f"{avg.f1:.3f}", str(report.count)
        )
    console.print(table)


def predict_command(
    model: ModelArgument,
    images: ImagesArgument,
    top_k: Annotated[int, typer.Option(min=1, help="Classes to show per file.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    registry: RegistryOption = None,
) -> None:
    """Print the top-k classes of each image file with their probabilities."""
    from pomona.inference import predict_images

    listed = _listed(images)
    network, card, named = _load(model, registry)
    with _reading(listed, card.preprocessing, "predict") as decoded:
        predicted = predict_images(network, card, decoded, top_k)
    if as_json:
        payload = [
            {
                "path": str(path),
                "predictions": [
                    {"label": label, "score": score}
                    for label, score in zip(p.labels, p.scores, strict=True)
                ],
            }
            for path, p in predicted
        ]
        typer.echo(json.dumps(payload, indent=2))
        return
    console.print(f"model: {named}", markup=False, soft_wrap=True)
    shown = min(top_k, card.num_classes)
    table = Table(Column("file", overflow="fold"), *(f"#{rank}" for rank in range(1, shown + 1)))
    for path, p in predicted:
        table.add_row(
            escape(str(path)),
            *(
                escape(f"{label} {score:.1%}")
                for label, score in zip(p.labels, p.scores, strict=True)
            ),
        )
    console.print(table)


def explain_command(
    model: ModelArgument,
    images: ImagesArgument,
    out: Annotated[Path, typer.Option(help="Directory for the heat-map overlays.")],
    registry: RegistryOption = None,
) -> None:
    """Write a Grad-CAM overlay per image showing where MODEL looked for its prediction."""
    from pomona.evaluate.explain import OverlayFiles, explain_images

    listed = _listed(images)
    network, card, named = _load(model, registry)
    files = OverlayFiles(out, _files(listed))
    with _reading(listed, card.preprocessing, "explain") as decoded:
        explained = explain_images(network, card, decoded, files)
    console.print(f"model: {named}", markup=False, soft_wrap=True)
    for image, prediction, overlay in explained:
        console.print(
            f"{image}: {prediction.label} ({prediction.score:.1%}) -> {overlay}",
            soft_wrap=True,
            markup=False,
        )


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("evaluate")(evaluate_command)
    app.command("predict")(predict_command)
    app.command("explain")(explain_command)
