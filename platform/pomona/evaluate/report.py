"""``report.json``: the evaluation metrics plus which model was evaluated on which data.

It lives apart from :mod:`pomona.evaluate.runner` (which needs Ray) so the registry can read a
report without importing Ray.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field, ValidationError

from pomona.config import StrictModel, format_validation_error
from pomona.errors import ConfigError
from pomona.evaluate.metrics import EvaluationMetrics

REPORT_JSON = "report.json"


class EvaluatedModel(StrictModel):
    """The model a report describes.

    Attributes:
        reference: MODEL as the user gave it (path or registry reference).
        directory: the local model directory that was loaded.
        architecture: the card's architecture key.
        weights_sha256: sha256 of the weights, so a report can be matched to its model.
    """

    reference: str
    directory: str
    architecture: str
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class EvaluationReport(EvaluationMetrics):
    """:class:`EvaluationMetrics` of one split, with the model and dataset it came from.

    Attributes:
        model: the evaluated model.
        dataset: the dataset directory.
        dataset_sha256: sha256 of the dataset's ``manifest.json``.
        split: the evaluated split.
        created: when the evaluation finished (UTC).
    """

    model: EvaluatedModel
    dataset: str
    dataset_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    split: str
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def headline_metrics(self) -> dict[str, float]:
        """Top-1 error, top-k error and ECE, keyed with the split as a prefix.

        The prefix keeps the split with the numbers wherever they are copied (e.g. the
        registry): ``{"test_top1_error": ..., "test_top5_error": ..., "test_ece": ...}``.
        """
        return {
            f"{self.split}_top1_error": self.top1_error,
            f"{self.split}_top{self.k}_error": self.topk_error,
            f"{self.split}_ece": self.ece,
        }


def read_report(report_dir: str | Path) -> EvaluationReport:
    """Read ``report.json`` from a directory written by ``pomona evaluate``.

    Raises:
        ConfigError: the file is missing or is not a valid report.
    """
    path = Path(report_dir) / REPORT_JSON
    if not path.is_file():
        raise ConfigError(
            f"{report_dir} holds no {REPORT_JSON}; pass the --out directory of `pomona evaluate`"
        )
    try:
        return EvaluationReport.model_validate_json(path.read_bytes())
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, f"evaluation report {path}")) from None
