"""A single self-contained HTML evaluation report.

Images are embedded as base64 ``data:`` URIs and the CSS is inline, so ``index.html`` can be
mailed, attached to a CI run or opened from object storage on its own. Every string that reaches
the page is escaped (class names come from folder names), and a Content-Security-Policy forbids
scripts and any non-inline resource as a second line of defence.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import numpy as np
from PIL import Image

from pomona.evaluate.metrics import EvaluationMetrics
from pomona.storage import atomic_write_text

REPORT_FILE = "index.html"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.2rem; } .sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f3f3f3; } tr.avg td { font-weight: 600; background: #fafafa; }
td.low { background: #fde2e2; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem 1rem; min-width: 9rem; }
.card .v { font-size: 1.5rem; font-weight: 600; } .card .k { color: #666; font-size: 0.85rem; }
figure { display: inline-block; margin: 0.5rem 1rem 1rem 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr));
           gap: 0.8rem; }
.item { border: 1px solid #ddd; border-radius: 6px; padding: 0.5rem; font-size: 0.85rem; }
.item img { width: 104px; image-rendering: pixelated; margin-right: 4px; }
.item .path { color: #888; word-break: break-all; font-size: 0.75rem; }
.bad { color: #b00020; }
"""
# Per-class rows whose F1 falls below this are tinted so weak classes stand out.
_LOW_F1 = 0.5


@dataclass(frozen=True)
class GalleryItem:
    """One misclassified sample in the report's gallery.

    Attributes:
        image_png: the input image as PNG bytes (see :func:`png_bytes`).
        heatmap_png: Grad-CAM overlay as PNG bytes, or None when not computed.
        true_label: the true class name.
        predicted_label: the predicted class name.
        score: probability of the predicted class.
        path: where the sample came from (source file or shard row), shown as a caption.
    """

    image_png: bytes
    heatmap_png: bytes | None
    true_label: str
    predicted_label: str
    score: float
    path: str


def png_bytes(image: np.ndarray, min_size: int = 96) -> bytes:
    """Encode a uint8 image as PNG, enlarging small images so they are visible in a page.

    Enlargement is by an integer factor with nearest-neighbour sampling, so pixels stay sharp
    and no detail is invented.

    Args:
        image: uint8 array, (H, W), (H, W, 1) or (H, W, 3).
        min_size: the shorter side is scaled up to at least this many pixels.

    Returns:
        PNG file contents.

    Raises:
        ValueError: the array is not a uint8 grayscale or RGB image.
    """
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"image must be HxW, HxWx1 or HxWx3, got shape {image.shape}")
    picture = Image.fromarray(np.ascontiguousarray(image))
    factor = math.ceil(min_size / min(picture.size))
    if factor > 1:
        picture = picture.resize(
            (picture.width * factor, picture.height * factor), Image.Resampling.NEAREST
        )
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _data_uri(png: bytes, what: str) -> str:
    if not png.startswith(_PNG_SIGNATURE):
        raise ValueError(f"{what} is not a PNG image")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _summary(metrics: EvaluationMetrics) -> str:
    cards = [
        ("top-1 error", f"{metrics.top1_error:.2%}"),
        (f"top-{metrics.k} error", f"{metrics.topk_error:.2%}"),
        ("ECE (15 bins)", f"{metrics.ece:.3f}"),
        ("correct", f"{metrics.correct} / {metrics.count}"),
        ("classes", str(metrics.num_classes)),
        ("macro F1", f"{metrics.macro_avg.f1:.3f}"),
    ]
    return f"<h2>Summary</h2>{cards_html(cards)}"


def cards_html(cards: Sequence[tuple[str, str]]) -> str:
    """A row of headline numbers, each a (label, value) pair of plain text (escaped here)."""
    body = "".join(
        f'<div class="card"><div class="v">{escape(v)}</div><div class="k">{escape(k)}</div></div>'
        for k, v in cards
    )
    return f'<div class="cards">{body}</div>'


def figures_html(figures: Mapping[str, Path]) -> str:
    """A "Figures" section embedding each PNG file (caption -> path) as a ``data:`` URI.

    Raises:
        ValueError: a file is not a PNG.
    """
    if not figures:
        return ""
    parts = []
    for title, path in figures.items():
        uri = _data_uri(Path(path).read_bytes(), f"figure {title!r} ({path})")
        parts.append(
            f'<figure><img src="{uri}" alt="{escape(title)}">'
            f"<figcaption>{escape(title)}</figcaption></figure>"
        )
    return "<h2>Figures</h2>" + "".join(parts)


def _per_class(metrics: EvaluationMetrics) -> str:
    rows = []
    for name in metrics.classes:
        m = metrics.per_class[name]
        low = ' class="low"' if m.f1 < _LOW_F1 else ""
        rows.append(
            f"<tr><td>{escape(name)}</td><td>{m.precision:.3f}</td><td>{m.recall:.3f}</td>"
            f"<td{low}>{m.f1:.3f}</td><td>{m.support}</td></tr>"
        )
    for label, avg in (("macro avg", metrics.macro_avg), ("weighted avg", metrics.weighted_avg)):
        rows.append(
            f'<tr class="avg"><td>{label}</td><td>{avg.precision:.3f}</td>'
            f"<td>{avg.recall:.3f}</td><td>{avg.f1:.3f}</td><td>{metrics.count}</td></tr>"
        )
    head = "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
    return f"<h2>Per class</h2><table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _gallery(gallery: Sequence[GalleryItem]) -> str:
    if not gallery:
        return "<h2>Misclassified samples</h2><p>None.</p>"
    items = []
    for index, item in enumerate(gallery):
        images = f'<img src="{_data_uri(item.image_png, f"gallery image {index}")}" alt="input">'
        if item.heatmap_png is not None:
            uri = _data_uri(item.heatmap_png, f"gallery heatmap {index}")
            images += f'<img src="{uri}" alt="Grad-CAM">'
        items.append(
            f'<div class="item"><div>{images}</div>'
            f"<div>true: <b>{escape(item.true_label)}</b></div>"
            f'<div>predicted: <b class="bad">{escape(item.predicted_label)}</b> '
            f"({item.score:.1%})</div>"
            f'<div class="path">{escape(item.path)}</div></div>'
        )
    caption = (
        "most confident mistakes first; the second image, where present, is a Grad-CAM overlay"
    )
    return (
        f"<h2>Misclassified samples</h2><p>{len(gallery)} shown, {caption}.</p>"
        f'<div class="gallery">{"".join(items)}</div>'
    )


def write_html_report(
    out_dir: Path,
    metrics: EvaluationMetrics,
    *,
    model_name: str,
    split: str,
    figures: Mapping[str, Path],
    gallery: Sequence[GalleryItem],
) -> Path:
    """Write ``out_dir/index.html``, one page needing no other file or network access.

    Args:
        out_dir: report directory (created if missing).
        metrics: evaluation result to summarise.
        model_name: shown in the title, e.g. ``cats:3``.
        split: the evaluated split, e.g. ``test``.
        figures: caption -> PNG file, embedded in this order.
        gallery: misclassified samples to show, in this order.

    Returns:
        Path of the written page.

    Raises:
        ValueError: a figure or gallery image is not a PNG.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    page = render_page(
        f"Evaluation of {model_name} on {split}",
        f"{metrics.count} samples, {metrics.num_classes} classes",
        f"{_summary(metrics)}{figures_html(figures)}{_per_class(metrics)}{_gallery(gallery)}",
    )
    path = out_dir / REPORT_FILE
    atomic_write_text(path, page)
    return path


def render_page(title: str, subtitle: str, body: str) -> str:
    """A complete self-contained page: inline CSS, no scripts, the report's security policy.

    Args:
        title: plain text, escaped here; shown as the title and the heading.
        subtitle: plain text, escaped here; the generation time is appended.
        body: HTML built by the caller, every user string already escaped.
    """
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f'<p class="sub">{escape(subtitle)}; generated {created} by pomona</p>'
        f"{body}</body></html>\n"
    )
