"""Model evaluation: metrics, plots, Grad-CAM and a self-contained HTML report. No Ray here.

The plots live in :mod:`pomona.evaluate.plots`, imported where a report is drawn: matplotlib's
figure machinery would otherwise load with every model that Serve's replicas serve.
"""

from pomona.evaluate.gradcam import grad_cam, overlay
from pomona.evaluate.html import REPORT_FILE, GalleryItem, png_bytes, write_html_report
from pomona.evaluate.metrics import (
    ECE_BINS,
    AverageMetrics,
    CalibrationBins,
    ClassMetrics,
    EvaluationMetrics,
    calibration_bins,
    compute_metrics,
    expected_calibration_error,
    misclassified,
)

__all__ = [
    "ECE_BINS",
    "REPORT_FILE",
    "AverageMetrics",
    "CalibrationBins",
    "ClassMetrics",
    "EvaluationMetrics",
    "GalleryItem",
    "calibration_bins",
    "compute_metrics",
    "expected_calibration_error",
    "grad_cam",
    "misclassified",
    "overlay",
    "png_bytes",
    "write_html_report",
]
