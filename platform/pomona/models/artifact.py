"""Model directories: ``model.safetensors`` and ``model.json``, written atomically, checked on load.

The weights are written first and the card last, so a directory whose ``model.json`` exists
always has the weights the card's checksum describes; a crash in between leaves no card and the
directory reads as "no model".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from pydantic import ValidationError
from torch import nn

from pomona.config import format_validation_error
from pomona.data.manifest import Preprocessing
from pomona.data.tensors import INFERENCE_FORMAT
from pomona.errors import CheckpointError, ModelNotFoundError
from pomona.location import Location, as_location
from pomona.models.card import CARD_FILE, WEIGHTS_FILE, InitialWeights, ModelCard
from pomona.models.zoo import build_model, get_head, get_spec, unwrap
from pomona.storage import atomic_write_bytes, atomic_write_text, sha256_bytes


def save_model(
    directory: str | Path,
    model: nn.Module,
    *,
    architecture: str,
    classes: list[str],
    preprocessing: Preprocessing,
    metrics: Mapping[str, float] | None = None,
    training: Mapping[str, Any] | None = None,
    dataset_sha256: str | None = None,
    initial_weights: InitialWeights | None = None,
) -> ModelCard:
    """Write ``model`` and its card into ``directory`` (created if needed).

    Args:
        directory: the model directory; existing ``model.*`` files are replaced atomically.
        model: the trained model, possibly wrapped in ``DistributedDataParallel``.
        architecture: key of :data:`pomona.models.zoo.ARCHITECTURES` the model was built from.
        classes: class names; output index i is ``classes[i]``.
        preprocessing: how inputs were prepared during training.
        metrics: e.g. ``{"val_error": 0.12, "epoch": 7}``.
        training: the training configuration as a plain mapping.
        dataset_sha256: sha256 of the dataset's ``manifest.json``.
        initial_weights: the pretrained weights training started from, if any.

    Returns:
        The card written to ``model.json``.

    Raises:
        ConfigError: unknown architecture.
        CheckpointError: the head's output count differs from the number of classes.
    """
    get_spec(architecture)
    outputs = getattr(get_head(model, architecture), "out_features", None)
    if outputs != len(classes):
        raise CheckpointError(
            f"the {architecture} head has {outputs} outputs but {len(classes)} classes were given"
        )
    # safetensors needs contiguous CPU tensors; DDP's prefix would stop load_model's strict load.
    tensors = {
        key.removeprefix("module."): value.detach().to("cpu").contiguous()
        for key, value in unwrap(model).state_dict().items()
    }
    data = safetensors.torch.save(tensors)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(directory / WEIGHTS_FILE, data)
    card = ModelCard(
        architecture=architecture,
        classes=list(classes),
        preprocessing=preprocessing,
        weights_sha256=sha256_bytes(data),
        metrics=dict(metrics or {}),
        training=dict(training or {}),
        dataset_sha256=dataset_sha256,
        initial_weights=initial_weights,
    )
    atomic_write_text(directory / CARD_FILE, card.model_dump_json(indent=2))
    return card


def read_card(directory: str | Path | Location) -> ModelCard:
    """Read and validate ``model.json`` of a model directory (a local path or a URI).

    Raises:
        ModelNotFoundError: ``directory`` has no ``model.json``.
        CheckpointError: ``model.json`` is not a valid model card.
    """
    path = as_location(directory) / CARD_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"no model at {directory}: {CARD_FILE} is missing")
    try:
        return ModelCard.model_validate_json(path.read_bytes())
    except ValidationError as error:
        raise CheckpointError(format_validation_error(error, str(path))) from None


def load_model(
    directory: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelCard]:
    """Rebuild the model of a model directory after checking its weights against the card.

    Args:
        directory: a directory written by :func:`save_model`.
        device: where to put the model.

    Returns:
        The model in eval mode on ``device``, and its card. Its convolution weights are in
        :data:`pomona.data.tensors.INFERENCE_FORMAT` (channels-last); feed it input in the same
        layout, as :func:`pomona.inference.probabilities` does. Any layout gives the same
        results.

    Raises:
        ModelNotFoundError: ``directory`` has no ``model.json``.
        CheckpointError: the card is invalid, the weights are missing, their sha256 differs
            from the card's, or they do not fit the architecture.
    """
    card = read_card(directory)
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing although {CARD_FILE} describes it")
    # Hash and parse the same bytes, so the file cannot change between the check and the load.
    data = path.read_bytes()
    actual = sha256_bytes(data)
    if actual != card.weights_sha256:
        raise CheckpointError(
            f"{path} has sha256 {actual} but {CARD_FILE} records {card.weights_sha256}; "
            "the weights were modified or corrupted"
        )
    model = build_model(card.architecture, card.num_classes, card.preprocessing.channels)
    try:
        model.load_state_dict(safetensors.torch.load(data), strict=True)
    except (RuntimeError, safetensors.SafetensorError) as error:
        # One line: the CLI prints a known error's message on a single line.
        reason = " ".join(str(error).split())
        raise CheckpointError(f"{path} does not fit {card.architecture}: {reason}") from None
    return model.to(device, memory_format=INFERENCE_FORMAT).eval(), card
