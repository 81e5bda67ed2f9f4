"""Model evaluation: metrics, plots, Grad-CAM and a self-contained HTML report. No Ray here."""

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
from pomona.evaluate.plots import plot_confusion, plot_per_class, plot_reliability

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
    "plot_confusion",
    "plot_per_class",
    "plot_reliability",
    "png_bytes",
    "write_html_report",
]
