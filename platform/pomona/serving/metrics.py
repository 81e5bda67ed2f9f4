"""Every ``pomona_*`` metric, declared once, exported through ``ray.serve.metrics``.

They land on Ray's Prometheus endpoint (the one KubeRay's PodMonitor scrapes) beside Serve's
own ``ray_serve_*`` metrics; Ray's exporter prefixes its namespace, so ``pomona_batch_size``
is scraped as ``ray_pomona_batch_size``. Serve adds the deployment, replica and application tags;
pomona's labels stay bounded: model name, version and HTTP status code. The ingress's metrics
count every request it answers; one that names no served model is labelled
``model="unknown"`` (``""`` when its route names no model, e.g. the health checks), and one
refused before a version was chosen ``version=""``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ray.serve.metrics import Counter, Gauge, Histogram

_LATENCY_BOUNDARIES_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
_BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
_MODEL = ("model", "version")
#: The ``model`` label of a request whose model is not served (or could not be read).
UNKNOWN_MODEL = "unknown"


@dataclass(frozen=True)
class IngressMetrics:
    """Metrics the HTTP API records per request."""

    requests: Counter
    latency: Histogram


@dataclass(frozen=True)
class ModelMetrics:
    """Metrics a replica records per batch and per queued image of a model version."""

    model_latency: Histogram
    batch_size: Histogram
    queue_depth: Gauge


def ingress_metrics() -> IngressMetrics:
    """Create the ingress's metrics (once per replica)."""
    return IngressMetrics(
        requests=Counter(
            "pomona_requests_total",
            description="HTTP requests answered, by model, version and status code.",
            tag_keys=(*_MODEL, "code"),
        ),
        latency=Histogram(
            "pomona_request_latency_seconds",
            description="End-to-end latency of requests in the ingress, by model and version.",
            boundaries=_LATENCY_BOUNDARIES_S,
            tag_keys=_MODEL,
        ),
    )


def model_metrics() -> ModelMetrics:
    """Create the model metrics (once per replica)."""
    return ModelMetrics(
        model_latency=Histogram(
            "pomona_model_latency_seconds",
            description="Forward pass time of one batch.",
            boundaries=_LATENCY_BOUNDARIES_S,
            tag_keys=_MODEL,
        ),
        batch_size=Histogram(
            "pomona_batch_size",
            description="Images per forward pass.",
            boundaries=_BATCH_BOUNDARIES,
            tag_keys=_MODEL,
        ),
        queue_depth=Gauge(
            "pomona_queue_depth",
            description="Images waiting for or in a forward pass in this replica.",
            tag_keys=_MODEL,
        ),
    )
