"""Open Inference Protocol v2 (KServe, Triton) bodies: parsing and answers. No Ray here.

An infer request carries one input tensor, either pixels already at the model's size
(``UINT8`` ``[N, H, W, C]``, or ``FP32`` in [0, 1]) or ``BYTES`` ``[N]`` holding base64-encoded
image files, which go through the model card's preprocessing like any upload. The answer holds
the outputs the request names (all when it names none): ``probabilities`` and ``label``.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field, NonNegativeInt

from pomona import __version__
from pomona.config import StrictModel
from pomona.errors import InvalidRequestError
from pomona.inference import decode
from pomona.models.card import ModelCard

INPUT_NAME = "image"
PROBABILITIES = "probabilities"
LABEL = "label"
#: The outputs of every model, in the order an answer gives them when the request names none.
OUTPUT_NAMES = (PROBABILITIES, LABEL)
DATATYPES = ("UINT8", "FP32", "BYTES")
#: Images one infer request may carry.
MAX_IMAGES = 256


class UnprocessableInput(InvalidRequestError):
    """The request is well-formed JSON or bytes but cannot be used as model input (HTTP 422)."""

    http_status = 422


class InferTensor(StrictModel):
    """One input tensor of an infer request."""

    name: str
    shape: list[NonNegativeInt] = Field(min_length=1, max_length=8)
    datatype: str
    data: list[Any]
    parameters: dict[str, Any] | None = None


class RequestedOutput(StrictModel):
    """An output the client asks for; an answer holds only the outputs asked for."""

    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(StrictModel):
    """``POST /v2/models/{name}/infer`` body."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferTensor] = Field(min_length=1, max_length=1)
    outputs: list[RequestedOutput] | None = None


def _flat_numbers(tensor: InferTensor, count: int) -> np.ndarray:
    try:
        values = np.asarray(tensor.data, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise UnprocessableInput(
            f"input {tensor.name!r}: data must be numbers for datatype {tensor.datatype}"
        ) from None
    if values.size != count:
        raise UnprocessableInput(
            f"input {tensor.name!r}: shape {tensor.shape} needs {count} values, got {values.size}"
        )
    if not np.isfinite(values).all():
        raise UnprocessableInput(f"input {tensor.name!r}: data holds NaN or infinity")
    return values


def images_from_tensor(tensor: InferTensor, card: ModelCard, max_pixels: int) -> np.ndarray:
    """uint8 ``(N, H, W, C)`` pixels at the model's size from an infer request's input.

    Raises:
        UnprocessableInput: unknown datatype, wrong shape, values out of range, bad base64 or
            undecodable images; the message names what was expected.
    """
    spec = card.preprocessing
    if tensor.name != INPUT_NAME:
        raise UnprocessableInput(
            f"input {tensor.name!r} is unknown: the model's input is named {INPUT_NAME!r}"
        )
    if tensor.datatype not in DATATYPES:
        raise UnprocessableInput(
            f"input {tensor.name!r}: datatype {tensor.datatype!r} is not supported; use "
            f"{', '.join(DATATYPES)}"
        )
    if tensor.datatype == "BYTES":
        if len(tensor.shape) != 1 or tensor.shape[0] != len(tensor.data):
            raise UnprocessableInput(
                f"input {tensor.name!r}: BYTES takes shape [N] with N base64 strings, got "
                f"shape {tensor.shape} and {len(tensor.data)} items"
            )
        _check_count(tensor.shape[0])
        return np.stack([_decode_item(tensor.name, item, card, max_pixels) for item in tensor.data])
    expected = [spec.height, spec.width, spec.channels]
    if len(tensor.shape) != 4 or tensor.shape[1:] != expected:
        raise UnprocessableInput(
            f"input {tensor.name!r}: shape must be [N, {', '.join(map(str, expected))}] "
            f"(N images of height, width, channels), got {tensor.shape}"
        )
    _check_count(tensor.shape[0])
    values = _flat_numbers(tensor, math.prod(tensor.shape))
    top = 255.0 if tensor.datatype == "UINT8" else 1.0
    if values.min(initial=0.0) < 0 or values.max(initial=0.0) > top:
        raise UnprocessableInput(
            f"input {tensor.name!r}: {tensor.datatype} values must lie in [0, {top:g}]"
        )
    if tensor.datatype == "UINT8" and not np.array_equal(values, np.round(values)):
        raise UnprocessableInput(f"input {tensor.name!r}: UINT8 values must be integers")
    scaled = values if tensor.datatype == "UINT8" else np.round(values * 255.0)
    return scaled.astype(np.uint8).reshape(tensor.shape)


def _check_count(count: int) -> None:
    if not 1 <= count <= MAX_IMAGES:
        raise UnprocessableInput(f"an infer request takes 1 to {MAX_IMAGES} images, got {count}")


def _decode_item(name: str, item: object, card: ModelCard, max_pixels: int) -> np.ndarray:
    if not isinstance(item, str):
        raise UnprocessableInput(f"input {name!r}: BYTES items must be base64 strings")
    try:
        data = base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise UnprocessableInput(f"input {name!r}: an item is not valid base64") from None
    try:
        return decode(data, card.preprocessing, max_pixels)
    except InvalidRequestError as error:
        raise UnprocessableInput(f"input {name!r}: {error}") from None


def output_names(requested: Sequence[RequestedOutput] | None) -> tuple[str, ...]:
    """The outputs an infer answer holds: those ``requested`` in their order, else all.

    Raises:
        UnprocessableInput: an output name the model does not have; the message lists its own.
    """
    if requested is None:
        return OUTPUT_NAMES
    names = tuple(dict.fromkeys(output.name for output in requested))
    unknown = [name for name in names if name not in OUTPUT_NAMES]
    if unknown:
        raise UnprocessableInput(
            f"output {unknown[0]!r} is unknown: the model's outputs are "
            f"{', '.join(map(repr, OUTPUT_NAMES))}"
        )
    return names


def infer_response(
    name: str,
    version: int,
    request_id: str | None,
    probs: np.ndarray,
    card: ModelCard,
    outputs: Sequence[str] = OUTPUT_NAMES,
) -> dict[str, Any]:
    """The infer answer: of ``probabilities`` ``FP32 [N, classes]`` and ``label`` ``BYTES [N]``,
    those in ``outputs`` (from :func:`output_names`), in its order."""
    answer: dict[str, Any] = {
        "model_name": name,
        "model_version": str(version),
        "outputs": [_output(output, probs, card) for output in outputs],
    }
    if request_id is not None:
        answer["id"] = request_id
    return answer


def _output(name: str, probs: np.ndarray, card: ModelCard) -> dict[str, Any]:
    if name == PROBABILITIES:
        return {
            "name": name,
            "shape": list(probs.shape),
            "datatype": "FP32",
            "data": probs.astype(np.float32).reshape(-1).tolist(),
        }
    return {
        "name": LABEL,
        "shape": [len(probs)],
        "datatype": "BYTES",
        "data": [card.classes[i] for i in probs.argmax(axis=1)],
    }


def server_metadata() -> dict[str, Any]:
    """``GET /v2`` answer: the server's name and version; it implements no protocol extension."""
    return {"name": "pomona", "version": __version__, "extensions": []}


def model_metadata(name: str, versions: list[int], card: ModelCard) -> dict[str, Any]:
    """``GET /v2/models/{name}`` answer: inputs, outputs and the classes."""
    spec = card.preprocessing
    return {
        "name": name,
        "versions": [str(v) for v in versions],
        "platform": "pytorch",
        "inputs": [
            {
                "name": INPUT_NAME,
                "datatype": "UINT8",
                "shape": [-1, spec.height, spec.width, spec.channels],
            }
        ],
        "outputs": [
            {"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, card.num_classes]},
            {"name": LABEL, "datatype": "BYTES", "shape": [-1]},
        ],
        "parameters": {
            "architecture": card.architecture,
            "classes": card.classes,
            "accepted_inputs": {
                "UINT8": f"[N, {spec.height}, {spec.width}, {spec.channels}] pixels 0..255",
                "FP32": f"[N, {spec.height}, {spec.width}, {spec.channels}] pixels 0..1",
                "BYTES": "[N] base64-encoded image files (PNG, JPEG, ...)",
            },
        },
    }
