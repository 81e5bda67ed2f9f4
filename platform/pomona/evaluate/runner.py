"""``pomona evaluate``: batch inference over a dataset split with Ray Data, then the report.

Inference is a Ray Data ``map_batches`` stage over the split's shards with a small pool of
actors, each loading the model once. Only labels, paths and probabilities come back to the
driver, never the images; the pixels of the few samples shown in the gallery are read again from
the shards afterwards, filtered by path, and explained with Grad-CAM on the driver's CPU.

Output directory (replaced as a whole when the evaluation succeeds)::

    OUT/report.json                 EvaluationReport: metrics, model, dataset, split
    OUT/index.html                  self-contained page with figures and gallery
    OUT/confusion.png, OUT/confusion_normalized.png, OUT/per_class.png, OUT/reliability.png
    OUT/misclassified.csv           every mistake: path, true, predicted, score
    OUT/gradcam/NNN-<path>.png      Grad-CAM overlays of the gallery's mistakes

This module is the only part of :mod:`pomona.evaluate` that imports Ray.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import ray
import ray.data
from ray.util.annotations import RayDeprecationWarning
from torch import nn

from pomona.data.loader import read_split
from pomona.data.manifest import Manifest
from pomona.data.shards import MANIFEST_FILE, DatasetDir, image_array, open_dataset, shard_paths
from pomona.errors import ConfigError, DatasetError, first_few
from pomona.evaluate.explain import gradcam_overlays
from pomona.evaluate.html import GalleryItem, png_bytes, write_html_report
from pomona.evaluate.metrics import compute_metrics, misclassified
from pomona.evaluate.plots import plot_confusion, plot_per_class, plot_reliability
from pomona.evaluate.report import REPORT_JSON, EvaluatedModel, EvaluationReport
from pomona.inference import load_for_inference, probabilities
from pomona.location import Location, as_location, is_uri, replaceable
from pomona.models.card import ModelCard
from pomona.registry import resolve_model
from pomona.storage import atomic_directory, atomic_write_text

logger = logging.getLogger(__name__)

#: Called with (stage, done, total): ``predict`` counts rows, ``gallery`` counts samples.
ProgressCallback = Callable[[str, int, int], None]

MISCLASSIFIED_CSV = "misclassified.csv"
GRADCAM_DIR = "gradcam"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_LISTED = 5


class _Predictor:
    """Ray Data callable class: each actor loads the model once and scores many batches."""

    def __init__(self, model: str | Location, use_gpu: bool) -> None:
        # A remote model is fetched on this actor's node: the driver's copy may be elsewhere.
        directory = resolve_model(model) if isinstance(model, Location) else model
        self._model, self._card = load_for_inference(directory, "cuda" if use_gpu else "cpu")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        probs = probabilities(self._model, self._card.preprocessing, batch["image"])
        return {"label": batch["label"], "path": batch["path"], "probs": probs}


def evaluate_model(
    model_dir: Path | str,
    dataset_dir: DatasetDir,
    out_dir: Path,
    *,
    split: str = "test",
    top_k: int = 5,
    gallery_size: int = 24,
    batch_size: int = 256,
    use_gpu: bool = False,
    max_actors: int = 2,
    model_name: str | None = None,
    connect: Callable[[], None] | None = None,
    progress: ProgressCallback | None = None,
) -> EvaluationReport:
    """Evaluate a model on one split of an ingested dataset and write the report to ``out_dir``.

    Ray must be initialised before inference starts: already, or by ``connect``.

    Args:
        model_dir: a local model directory (see :func:`pomona.registry.resolve.resolve_model`),
            or the URI of a remote one, which the driver and every inference actor fetch into
            their node's cache.
        dataset_dir: an ingested dataset with the model's image shape and classes (a local
            path or a URI).
        out_dir: report directory; an existing report there is replaced.
        split: the split to evaluate.
        top_k: k of the top-k error.
        gallery_size: how many of the most confident mistakes the page shows with Grad-CAM.
        batch_size: rows per inference batch.
        use_gpu: give each inference actor one GPU.
        max_actors: largest number of inference actors (each holds one copy of the model).
        model_name: how the page and report name the model; defaults to ``model_dir``.
        connect: called once the arguments, model card and dataset have been checked, before
            Ray is first used (e.g. :meth:`pomona.cli.session.Session.connect`), so mistakes
            are reported without waiting for Ray to start.
        progress: called as work advances, see :data:`ProgressCallback`.

    Returns:
        The report written to ``out_dir/report.json`` (an :class:`EvaluationMetrics`).

    Raises:
        ConfigError: a bad argument, or ``out_dir`` holds something other than a report.
        DatasetError: the split is empty or missing, or the dataset's images or classes do not
            match the model card.
        ModelNotFoundError, CheckpointError: ``model_dir`` is not a loadable model.
    """
    if is_uri(model_dir):
        source: str | Location = as_location(model_dir)
        model_dir = resolve_model(source)
    else:
        model_dir = Path(model_dir)
        source = str(model_dir.resolve())
    dataset_dir, out_dir = as_location(dataset_dir), Path(out_dir)
    for name, value, minimum in (
        ("top-k", top_k, 1),
        ("batch size", batch_size, 1),
        ("max actors", max_actors, 1),
        ("gallery size", gallery_size, 0),
    ):
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    _check_out_dir(out_dir)
    # Loaded here, not only in the actors, so a corrupt model fails before Ray starts; the
    # driver needs it anyway for the gallery's Grad-CAM.
    model, card = load_for_inference(model_dir, "cpu")
    manifest = open_dataset(dataset_dir, [split])
    _check_compatible(card, manifest, dataset_dir)
    if connect is not None:
        connect()
    notify = progress or (lambda _stage, _done, _total: None)

    labels, paths, probs = _predict(
        source, dataset_dir, manifest, split, batch_size, use_gpu, max_actors, notify
    )
    metrics = compute_metrics(labels, probs, card.classes, k=top_k)
    report = EvaluationReport(
        **metrics.model_dump(),
        model=EvaluatedModel(
            reference=model_name or str(model_dir),
            directory=str(model_dir.resolve()),
            architecture=card.architecture,
            weights_sha256=card.weights_sha256,
        ),
        dataset=str(dataset_dir),
        dataset_sha256=(dataset_dir / MANIFEST_FILE).sha256(),
        split=split,
    )
    mistakes = misclassified(labels, probs)
    with atomic_directory(out_dir, overwrite=True) as staging:
        figures = {
            "Confusion matrix": plot_confusion(metrics, staging / "confusion.png", False),
            "Confusion matrix (row-normalised)": plot_confusion(
                metrics, staging / "confusion_normalized.png", True
            ),
            "Per-class precision, recall and F1": plot_per_class(
                metrics, staging / "per_class.png"
            ),
            "Reliability diagram": plot_reliability(labels, probs, staging / "reliability.png"),
        }
        atomic_write_text(
            staging / MISCLASSIFIED_CSV, _mistakes_csv(mistakes, labels, paths, probs, card)
        )
        shown = mistakes[:gallery_size]
        gallery = _gallery(
            model,
            dataset_dir,
            manifest,
            split,
            card,
            (paths[shown], labels[shown], probs[shown]),
            staging / GRADCAM_DIR,
            notify,
        )
        write_html_report(
            staging,
            metrics,
            model_name=report.model.reference,
            split=split,
            figures=figures,
            gallery=gallery,
        )
        # Written last: a directory with report.json is a finished report.
        atomic_write_text(staging / REPORT_JSON, report.model_dump_json(indent=2))
    logger.info("evaluation of %s on %s/%s written to %s", model_dir, dataset_dir, split, out_dir)
    return report


def _check_out_dir(out_dir: Path) -> None:
    # The directory is replaced as a whole, so refuse anything that is not an earlier report
    # (e.g. a run directory passed by mistake) rather than deleting it.
    if not replaceable(out_dir, REPORT_JSON):
        raise ConfigError(
            f"--out {out_dir} exists and is not an evaluation report; choose a new directory"
        )


def _check_compatible(card: ModelCard, manifest: Manifest, dataset_dir: Location) -> None:
    stored, expected = manifest.preprocessing, card.preprocessing
    if stored.image_shape != expected.image_shape:
        h, w, c = expected.image_shape
        raise DatasetError(
            f"dataset {dataset_dir} stores {'x'.join(map(str, stored.image_shape))} images "
            f"(height x width x channels) but the model was trained on {h}x{w}x{c}; ingest the "
            f"images again with --image-size {h}x{w} --channels {c}"
        )
    if manifest.classes != card.classes:
        raise DatasetError(
            f"dataset {dataset_dir} and the model disagree on the classes "
            f"({_class_difference(manifest.classes, card.classes)}); a label index would mean "
            "different classes, so evaluate on a dataset ingested from the same class folders"
        )
    if stored.resize != expected.resize:
        logger.warning(
            "dataset %s was resized with %r but the model was trained on %r images; the "
            "numbers may be worse than on data prepared like the training set",
            dataset_dir,
            stored.resize,
            expected.resize,
        )


def _class_difference(dataset: Sequence[str], model: Sequence[str]) -> str:
    only_dataset = [c for c in dataset if c not in model]
    only_model = [c for c in model if c not in dataset]
    if not only_dataset and not only_model:
        return "same names in a different order"
    parts = []
    for where, names in (("only in the dataset", only_dataset), ("only in the model", only_model)):
        if names:
            parts.append(f"{where}: {first_few(names, _LISTED)}")
    return "; ".join(parts)


def _predict(
    model: str | Location,
    dataset_dir: Location,
    manifest: Manifest,
    split: str,
    batch_size: int,
    use_gpu: bool,
    max_actors: int,
    notify: ProgressCallback,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, paths and probabilities of every row of ``split``, sorted by path."""
    with warnings.catch_warnings():
        # Ray Data puts every actor's constructor arguments in the object store, where restarts
        # are unreliable (ray-project/ray#53727, #57733) and Ray logs an error for each actor
        # it starts with restarts on. An evaluation is cheap to run again, so a crashed actor
        # fails it with the actor's error instead. Ray 2.60 (pinned) takes ``max_restarts``
        # only as a remote arg, which it deprecates without a named replacement yet.
        warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated", RayDeprecationWarning)
        scored = read_split(
            dataset_dir, split, manifest=manifest, columns=("image", "label", "path")
        ).map_batches(
            _Predictor,
            fn_constructor_kwargs={"model": model, "use_gpu": use_gpu},
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max_actors),
            num_gpus=1 if use_gpu else None,
            max_restarts=0,
        )
    total = manifest.splits[split].rows
    labels, paths, probs = [], [], []
    notify("predict", 0, total)
    for batch in scored.iter_batches(batch_size=None, batch_format="numpy"):
        labels.append(batch["label"])
        paths.append(batch["path"])
        probs.append(batch["probs"])
        notify("predict", sum(map(len, labels)), total)
    # Rows arrive in whatever order the actors finish; sorting makes the CSV and the gallery's
    # tie-breaking reproducible.
    all_paths = np.concatenate(paths).astype(str)
    order = np.argsort(all_paths, kind="stable")
    return np.concatenate(labels)[order], all_paths[order], np.concatenate(probs)[order]


def _mistakes_csv(
    mistakes: list[int],
    labels: np.ndarray,
    paths: np.ndarray,
    probs: np.ndarray,
    card: ModelCard,
) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "true", "predicted", "score"])
    for i in mistakes:
        predicted = int(probs[i].argmax())
        writer.writerow(
            [
                paths[i],
                card.classes[labels[i]],
                card.classes[predicted],
                f"{probs[i, predicted]:.6f}",
            ]
        )
    return buffer.getvalue()


def _gallery(
    model: nn.Module,
    dataset_dir: Location,
    manifest: Manifest,
    split: str,
    card: ModelCard,
    samples: tuple[np.ndarray, np.ndarray, np.ndarray],
    gradcam_dir: Path,
    notify: ProgressCallback,
) -> list[GalleryItem]:
    """Gallery entries for ``samples`` (paths, true labels, probabilities), in that order."""
    wanted, labels, probs = samples
    if not len(wanted):
        return []
    notify("gallery", 0, len(wanted))
    table = pq.read_table(
        shard_paths(dataset_dir, manifest, split),
        filesystem=dataset_dir.filesystem,
        columns=["image", "path"],
        filters=[("path", "in", wanted.tolist())],
    )
    found = dict(
        zip(
            table.column("path").to_pylist(),
            image_array(table.column("image"), manifest.image_shape),
            strict=True,
        )
    )
    pixels = np.stack([found[path] for path in wanted])
    # Grad-CAM needs gradients, which the driver computes on its CPU for these few images.
    overlays = gradcam_overlays(model, card.architecture, card.preprocessing, pixels)
    gradcam_dir.mkdir(parents=True, exist_ok=True)
    items = []
    for rank, (path, true, row, image, picture) in enumerate(
        zip(wanted, labels, probs, pixels, overlays, strict=True), start=1
    ):
        predicted = int(row.argmax())
        heatmap = png_bytes(picture)
        # Rank first so the files sort like the gallery; the sample's path keeps them findable.
        safe = _UNSAFE.sub("_", str(Path(path).with_suffix("")))
        (gradcam_dir / f"{rank:03d}-{safe}.png").write_bytes(heatmap)
        items.append(
            GalleryItem(
                image_png=png_bytes(image),
                heatmap_png=heatmap,
                true_label=card.classes[int(true)],
                predicted_label=card.classes[predicted],
                score=float(row[predicted]),
                path=str(path),
            )
        )
        notify("gallery", rank, len(wanted))
    return items
