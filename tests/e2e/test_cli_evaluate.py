"""``pomona evaluate``, ``predict`` and ``explain`` on a model trained on the digits."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from pomona.data import images
from pomona.data.demo import write_digits
from pomona.data.ingest import IngestConfig, ingest
from pomona.data.manifest import Preprocessing
from pomona.data.shards import image_array, read_manifest, shard_paths
from pomona.data.tensors import to_model_input
from pomona.inference import IMAGES_PER_BATCH
from pomona.models import load_model
from pomona.registry import Registry

pytestmark = [pytest.mark.e2e, pytest.mark.ray]

PNG = b"\x89PNG\r\n\x1a\n"


def direct_predictions(model_dir: Path, dataset: Path) -> dict[str, tuple[int, np.ndarray]]:
    """path -> (true label, probabilities), computed here with the model, without Ray."""
    manifest = read_manifest(dataset)
    table = pq.read_table(shard_paths(dataset, manifest, "test"))
    pixels = torch.from_numpy(image_array(table.column("image"), manifest.image_shape).copy())
    model, card = load_model(model_dir)
    with torch.no_grad():
        probs = torch.softmax(model(to_model_input(pixels, card.preprocessing)), dim=1).numpy()
    labels = table.column("label").to_pylist()
    return {
        path: (label, row)
        for path, label, row in zip(table.column("path").to_pylist(), labels, probs, strict=True)
    }


def test_evaluate_report_matches_scikit_learn(
    pomona,
    ray_session: None,
    digits_model: Path,
    digits_dataset: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "report"
    monkeypatch.chdir(digits_dataset.parent)  # the dataset given relative, as users often do
    result = pomona(
        "evaluate",
        digits_model,
        "--data",
        digits_dataset.name,
        "--out",
        out,
        "--top-k",
        "3",
        "--gallery",
        "2",
    )
    assert result.code == 0, result.err

    expected = direct_predictions(digits_model, digits_dataset)
    paths = sorted(expected)
    y_true = np.array([expected[p][0] for p in paths])
    probs = np.stack([expected[p][1] for p in paths])
    y_pred = probs.argmax(axis=1)
    labels = list(range(10))
    report = json.loads((out / "report.json").read_text())
    assert report["count"] == len(paths) == 90
    assert report["split"] == "test"
    assert report["model"]["architecture"] == "simple_cnn"
    assert report["model"]["directory"] == str(digits_model.resolve())
    assert report["dataset"] == str(digits_dataset.resolve())
    assert report["top1_error"] == pytest.approx(1 - accuracy_score(y_true, y_pred))
    assert report["k"] == 3
    assert report["topk_error"] == pytest.approx(
        1 - top_k_accuracy_score(y_true, probs, k=3, labels=labels)
    )
    assert report["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=labels).tolist()
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    for i in labels:
        row = report["per_class"][str(i)]
        assert row["precision"] == pytest.approx(precision[i])
        assert row["recall"] == pytest.approx(recall[i])
        assert row["f1"] == pytest.approx(f1[i])
        assert row["support"] == support[i]
    # The model is decent but not perfect, so the gallery has something to show.
    mistakes = [p for p, truth, guess in zip(paths, y_true, y_pred, strict=True) if truth != guess]
    assert 1 <= len(mistakes) <= 20

    with open(out / "misclassified.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["path"] for r in rows) == mistakes
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    for row in rows:
        truth, row_probs = expected[row["path"]]
        assert row["true"] == str(truth)
        assert row["predicted"] == str(row_probs.argmax())
        assert float(row["score"]) == pytest.approx(row_probs.max(), abs=1e-5)

    shown = min(2, len(mistakes))
    overlays = sorted((out / "gradcam").iterdir())
    assert len(overlays) == shown
    assert all(p.read_bytes().startswith(PNG) for p in overlays)
    for name in ("confusion", "confusion_normalized", "per_class", "reliability"):
        assert (out / f"{name}.png").read_bytes().startswith(PNG)
    html = (out / "index.html").read_text()
    assert html.count('alt="Grad-CAM"') == shown
    # 4 figures plus an input and a heat map per gallery item, all embedded.
    assert html.count('src="data:image/png;base64,') == 4 + 2 * shown
    assert 'src="http' not in html

    # The dataset as the user wrote it; report.json records it resolved.
    assert f"on test of {digits_dataset.name}: 90 samples, 10 classes" in result.out
    assert f"top-1 error {report['top1_error']:.2%}" in result.out
    assert f"top-3 error {report['topk_error']:.2%}" in result.out
    assert f"ECE {report['ece']:.4f}" in result.out
    assert "macro avg" in result.out and "precision" in result.out
    assert f"report: {out / 'index.html'}" in result.out


def test_evaluate_refuses_a_dataset_the_model_does_not_fit(
    pomona, ray_forbidden: None, digits_model: Path, tmp_path: Path
) -> None:
    write_digits(tmp_path / "images", size=8, limit=40)
    ingest(
        IngestConfig(
            src=tmp_path / "images",
            out=tmp_path / "small",
            preprocessing=Preprocessing(height=8, width=8, channels=1),
            workers=1,
        )
    )
    result = pomona("evaluate", digits_model, "--data", tmp_path / "small", "--out", tmp_path / "r")
    assert result.code == 2
    assert "stores 8x8x1 images" in result.err
    assert "--image-size 16x16 --channels 1" in result.err
    assert not (tmp_path / "r").exists()

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("keep me")
    result = pomona(
        "evaluate", digits_model, "--data", tmp_path / "small", "--out", tmp_path / "run"
    )
    assert result.code == 2
    assert "exists and is not an evaluation report" in result.err
    assert (tmp_path / "run" / "notes.txt").read_text() == "keep me"

    result = pomona("evaluate", digits_model, "--data", tmp_path / "none", "--out", tmp_path / "r")
    assert result.code == 2
    assert "is not a pomona dataset" in result.err
    result = pomona(
        "evaluate", tmp_path / "no-model", "--data", tmp_path / "small", "--out", tmp_path / "r"
    )
    assert result.code == 2
    assert "no-model" in result.err


def known_digits(model_dir: Path, dataset: Path, folder: Path) -> dict[Path, str]:
    """One test-split file per digit that the model classifies correctly."""
    chosen: dict[str, Path] = {}
    for path, (label, probs) in sorted(direct_predictions(model_dir, dataset).items()):
        if probs.argmax() == label:
            chosen.setdefault(str(label), folder / path)
    assert len(chosen) >= 8
    return {path: label for label, path in chosen.items()}


def test_predict_names_known_digits(
    pomona, digits_model: Path, digits_dataset: Path, digits_folder: Path
) -> None:
    files = known_digits(digits_model, digits_dataset, digits_folder)
    result = pomona("predict", digits_model, *files, "--top-k", "3", "--json")
    assert result.code == 0, result.err
    payload = json.loads(result.out)
    assert [Path(item["path"]) for item in payload] == list(files)
    for item in payload:
        top = item["predictions"]
        assert len(top) == 3
        assert top[0]["label"] == files[Path(item["path"])]
        scores = [p["score"] for p in top]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6

    first = next(iter(files))
    result = pomona("predict", digits_model / "model.safetensors", first, "--top-k", "2")
    assert result.code == 0, result.err
    assert f"{files[first]} " in result.out
    assert "#1" in result.out and "#2" in result.out and "#3" not in result.out
    assert result.out.startswith(f"model: {digits_model / 'model.safetensors'}\n")


def test_predict_and_explain_name_the_version_a_reference_stands_for(
    pomona, digits_model: Path, digits_folder: Path, tmp_path: Path
) -> None:
    registry = Registry(tmp_path / "registry")
    registry.register(digits_model, "digits")
    registry.register(digits_model, "digits")
    registry.set_alias("digits", 1, "production")
    image = next(digits_folder.rglob("*.png"))
    for reference, named in [
        ("digits@production", "digits@production = digits:1"),
        ("digits", "digits = digits:2"),
        ("digits:1", "digits:1"),
    ]:
        result = pomona("--registry", registry.uri, "predict", reference, image)
        assert result.code == 0, result.err
        assert result.out.startswith(f"model: {named}\n")
    result = pomona("--registry", registry.uri, "explain", "digits@production", image,
                    "--out", tmp_path / "overlays")  # fmt: skip
    assert result.code == 0, result.err
    assert result.out.startswith("model: digits@production = digits:1\n")


def test_predict_takes_folders(
    pomona,
    digits_model: Path,
    digits_dataset: Path,
    digits_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = known_digits(digits_model, digits_dataset, digits_folder)
    folder = tmp_path / "mixed"
    for i, (file, label) in enumerate(files.items()):
        copy = folder / ("nested" if i % 2 else "") / f"{label}_{i}{file.suffix}"
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(file.read_bytes())
    (folder / ".DS_Store").write_bytes(b"litter")
    (folder / "nested" / "notes.txt").write_text("not an image")
    whole = next(iter(files)).read_bytes()
    (folder / "9_cut.png").write_bytes(whole[: len(whole) // 2])
    extra = next(iter(files))
    decoded: list[int] = []
    preprocess = images.preprocess
    monkeypatch.setattr(images, "preprocess", lambda *a: decoded.append(1) or preprocess(*a))

    result = pomona("predict", digits_model, extra, folder, "--top-k", "1", "--json")
    assert result.code == 0, result.err
    notes, cut = folder / "nested" / "notes.txt", folder / "9_cut.png"
    assert result.err.startswith(
        f"skipped 2 files that are not usable images: {cut} (corrupt or truncated: "
    )
    assert f", {notes} (not an image (unrecognised format))\n" in result.err
    payload = json.loads(result.out)
    below = sorted(p for p in folder.rglob("*.png") if p != cut)
    assert [Path(item["path"]) for item in payload] == [extra, *below]
    assert len(decoded) == 1 + len(below) + 2  # each file once, the two skipped ones included
    for item in payload[1:]:
        assert item["predictions"][0]["label"] == Path(item["path"]).stem.split("_")[0]

    (tmp_path / "empty").mkdir()
    result = pomona("predict", digits_model, tmp_path / "empty")
    assert result.code == 2
    assert "empty holds no files: expected image files" in result.err
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("a")
    result = pomona("predict", digits_model, tmp_path / "texts")
    assert result.code == 2
    assert f"folder {tmp_path / 'texts'} holds no usable images: " in result.err


def test_more_files_than_one_forward_pass_show_a_progress_bar(
    pomona, digits_model: Path, digits_folder: Path, tmp_path: Path
) -> None:
    image = next(digits_folder.rglob("*.png")).read_bytes()
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(IMAGES_PER_BATCH + 8):
        (folder / f"{i:02d}.png").write_bytes(image)
    (folder / "notes.txt").write_text("not an image")  # read, then skipped: counted as read
    result = pomona("predict", digits_model, folder, "--json")
    assert result.code == 0, result.err
    assert len(json.loads(result.out)) == IMAGES_PER_BATCH + 8
    assert re.search(rf"^predict .* {IMAGES_PER_BATCH + 9}/{IMAGES_PER_BATCH + 9} ", result.err,
                     re.MULTILINE)  # fmt: skip
    few = pomona("predict", digits_model, *sorted(folder.glob("*.png"))[:IMAGES_PER_BATCH])
    assert few.code == 0 and few.err == ""  # one forward pass: no bar


def test_explain_writes_overlays(
    pomona, digits_model: Path, digits_dataset: Path, digits_folder: Path, tmp_path: Path
) -> None:
    files = list(known_digits(digits_model, digits_dataset, digits_folder).items())[:3]
    result = pomona("explain", digits_model, *(f for f, _ in files), "--out", tmp_path / "cam")
    assert result.code == 0, result.err
    # Each overlay keeps its image's folder below the one all three share.
    shared = Path(os.path.commonpath([f.parent for f, _ in files]))
    expected = [tmp_path / "cam" / f.parent.relative_to(shared) / f"{f.stem}.gradcam.png"
                for f, _ in files]  # fmt: skip
    assert sorted((tmp_path / "cam").rglob("*.png")) == sorted(expected)
    for path in expected:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.mode == "RGB"
            assert image.size == (96, 96)  # 16x16 enlarged 6x for the page
    for (file, label), overlay in zip(files, expected, strict=True):
        assert f"{file}: {label} (" in result.out
        assert f"-> {overlay}\n" in result.out


def test_predict_reports_unreadable_images(pomona, digits_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    result = pomona("predict", digits_model, broken)
    assert result.code == 2
    assert f"{broken}: not an image" in result.err
    result = pomona("predict", digits_model, tmp_path / "missing.png")
    assert result.code == 2
    assert "missing.png: cannot read" in result.err
    result = pomona("predict", tmp_path / "nowhere", broken)
    assert result.code == 2
    assert "no such file or directory" in result.err
    assert "Traceback" not in result.err
