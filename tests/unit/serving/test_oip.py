"""Open Inference Protocol v2 tensors to model pixels, and the answers, without Ray."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from pomona.data.manifest import Preprocessing
from pomona.models.card import ModelCard
from pomona.serving.oip import (
    InferTensor,
    RequestedOutput,
    UnprocessableInput,
    images_from_tensor,
    infer_response,
    model_metadata,
    output_names,
)

CARD = ModelCard(
    architecture="simple_cnn",
    classes=["a", "b", "c"],
    preprocessing=Preprocessing(height=2, width=3, channels=1),
    weights_sha256="0" * 64,
)


def tensor(datatype: str, shape: list[int], data: list[object]) -> InferTensor:
    return InferTensor(name="image", shape=shape, datatype=datatype, data=data)


def png(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_uint8_fp32_and_bytes_inputs_become_the_same_pixels() -> None:
    pixels = np.arange(12, dtype=np.uint8).reshape(2, 2, 3, 1) * 20
    as_uint8 = images_from_tensor(tensor("UINT8", [2, 2, 3, 1], pixels.ravel().tolist()), CARD, 100)
    as_fp32 = images_from_tensor(
        tensor("FP32", [2, 2, 3, 1], (pixels / 255.0).ravel().tolist()), CARD, 100
    )
    as_bytes = images_from_tensor(
        tensor("BYTES", [2], [png(pixels[0, :, :, 0]), png(pixels[1, :, :, 0])]), CARD, 100
    )
    for result in (as_uint8, as_fp32, as_bytes):
        assert result.dtype == np.uint8
        assert np.array_equal(result, pixels)


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "message"),
    [
        ("INT64", [1, 2, 3, 1], [0] * 6, "datatype 'INT64' is not supported"),
        ("UINT8", [1, 3, 2, 1], [0] * 6, r"shape must be \[N, 2, 3, 1\]"),
        ("UINT8", [1, 2, 3, 1], [0] * 5, "needs 6 values, got 5"),
        ("UINT8", [1, 2, 3, 1], [256] * 6, r"values must lie in \[0, 255\]"),
        ("UINT8", [1, 2, 3, 1], [0.5] * 6, "must be integers"),
        ("FP32", [1, 2, 3, 1], [2.0] * 6, r"values must lie in \[0, 1\]"),
        ("FP32", [1, 2, 3, 1], ["x"] * 6, "data must be numbers"),
        ("UINT8", [0, 2, 3, 1], [], "takes 1 to 256 images, got 0"),
        ("BYTES", [1], ["***"], "not valid base64"),
        ("BYTES", [1], [base64.b64encode(b"text").decode()], "not an image"),
        ("BYTES", [2], ["aGk="], r"shape \[N\] with N base64 strings"),
    ],
)
def test_bad_tensors_are_named(
    datatype: str, shape: list[int], data: list[object], message: str
) -> None:
    with pytest.raises(UnprocessableInput, match=message) as raised:
        images_from_tensor(tensor(datatype, shape, data), CARD, 100)
    assert raised.value.http_status == 422


def test_an_input_with_another_name_than_the_metadata_gives_is_refused() -> None:
    advertised = model_metadata("cats", [1], CARD)["inputs"][0]["name"]
    item = InferTensor(name="input__0", shape=[1, 2, 3, 1], datatype="UINT8", data=[0] * 6)
    with pytest.raises(UnprocessableInput) as raised:
        images_from_tensor(item, CARD, 100)
    assert str(raised.value) == (
        f"input 'input__0' is unknown: the model's input is named {advertised!r}"
    )


def test_an_answer_holds_the_outputs_asked_for_in_their_order() -> None:
    advertised = tuple(output["name"] for output in model_metadata("cats", [1], CARD)["outputs"])
    assert output_names(None) == advertised
    asked = [RequestedOutput(name=name) for name in ("label", "probabilities", "label")]
    assert output_names(asked) == ("label", "probabilities")
    probs = np.array([[0.1, 0.7, 0.2]], dtype=np.float32)
    (only,) = infer_response("cats", 1, None, probs, CARD, ("label",))["outputs"]
    assert only == {"name": "label", "shape": [1], "datatype": "BYTES", "data": ["b"]}
    with pytest.raises(UnprocessableInput) as raised:
        output_names([RequestedOutput(name="scores")])
    assert str(raised.value) == (
        "output 'scores' is unknown: the model's outputs are 'probabilities', 'label'"
    )


def test_a_decompression_bomb_in_bytes_is_refused() -> None:
    big = png(np.zeros((20, 20), dtype=np.uint8))
    with pytest.raises(UnprocessableInput, match="too large: 20x20 = 400 pixels > limit 100"):
        images_from_tensor(tensor("BYTES", [1], [big]), CARD, 100)


def test_answers_name_model_version_and_classes() -> None:
    probs = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]], dtype=np.float32)
    answer = infer_response("cats", 3, "req-1", probs, CARD)
    assert answer["model_name"] == "cats" and answer["model_version"] == "3"
    assert answer["id"] == "req-1"
    probabilities, labels = answer["outputs"]
    assert probabilities["shape"] == [2, 3] and labels["data"] == ["b", "a"]
    meta = model_metadata("cats", [1, 3], CARD)
    assert meta["versions"] == ["1", "3"]
    assert meta["inputs"][0]["shape"] == [-1, 2, 3, 1]
    assert meta["parameters"]["classes"] == ["a", "b", "c"]
