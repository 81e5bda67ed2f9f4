"""What the HTTP API answers, as pydantic models, and the request bodies its OpenAPI page shows.

No Ray here. The routes in :mod:`pomona.serving.api` read their bodies themselves (raw image
bytes or multipart, under a size limit), so FastAPI cannot infer those bodies: they are
described here for the ``/docs`` page, with every error answer's shape.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, StrictFloat, StrictStr

from pomona.serving.config import MAX_TOP_K


class PinQuery(BaseModel):
    """Query parameters that pin the version that answers (unknown ones are ignored)."""

    version: int | None = Field(None, ge=1, description="Pin this version.")
    alias: str | None = Field(None, description="Pin the version this alias serves.")


class PredictQuery(PinQuery):
    """Query parameters of the predict routes."""

    top_k: int = Field(5, ge=1, le=MAX_TOP_K, description="Classes to return per image.")


class Label(BaseModel):
    """One class and its probability."""

    label: str = Field(examples=["3"])
    score: float = Field(ge=0.0, le=1.0, examples=[0.9963])


class Prediction(BaseModel):
    """The top-k classes of one image, most probable first."""

    model: str = Field(examples=["digits"])
    version: int = Field(examples=[1], description="The version that answered.")
    predictions: list[Label]


class BatchPrediction(BaseModel):
    """The top-k classes of each image, in the order they were sent."""

    model: str = Field(examples=["digits"])
    version: int = Field(examples=[1], description="The version that answered.")
    predictions: list[list[Label]]


class ServedModel(BaseModel):
    """One served model name."""

    name: str = Field(examples=["digits"])
    versions: list[int] = Field(examples=[[1, 2]])
    aliases: dict[str, int] = Field(
        examples=[{"production": 1, "canary": 2, "latest": 2}],
        description="Route label (alias, `latest` or `pinned`) -> version.",
    )
    split: dict[str, int] = Field(
        examples=[{"production": 90, "canary": 10}],
        description="Relative weights of requests that pin no version or alias.",
    )


class ServedModels(BaseModel):
    """Everything served."""

    models: list[ServedModel]


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: int = Field(examples=[404], description="The HTTP status, repeated.")
    message: str = Field(examples=["version 9 of 'digits' is not served; served: 1, 2"])


class ErrorBody(BaseModel):
    """Every error answer of the v1 routes (4xx and 503)."""

    error: ErrorDetail


class OipErrorBody(BaseModel):
    """Every error answer of the ``/v2`` routes, as the Open Inference Protocol defines it."""

    error: str = Field(examples=["version 9 of 'digits' is not served; served: 1, 2"])


# --- Open Inference Protocol v2 answers -----------------------------------------------------


class ServerMetadata(BaseModel):
    """``GET /v2``: the server's name and version, and the protocol extensions it supports."""

    name: str = Field(examples=["pomona"])
    version: str = Field(examples=["0.1.0"])
    extensions: list[str] = Field(examples=[[]])


class Live(BaseModel):
    """``GET /v2/health/live``."""

    live: bool


class Ready(BaseModel):
    """``GET /v2/health/ready``."""

    ready: bool


class ModelReady(BaseModel):
    """``GET /v2/models/{model}[/versions/{version}]/ready``."""

    name: str = Field(examples=["digits"])
    version: str = Field(examples=["1"], description="The version that answered.")
    ready: bool


class TensorMetadata(BaseModel):
    """An input or output tensor of a model; -1 is a dimension of any size."""

    name: str = Field(examples=["image"])
    datatype: str = Field(examples=["UINT8"])
    shape: list[int] = Field(examples=[[-1, 16, 16, 1]])


class ModelParameters(BaseModel):
    """What pomona adds to a model's metadata."""

    architecture: str = Field(examples=["simple_cnn"])
    classes: list[str] = Field(examples=[["0", "1", "2"]], description="Index -> class.")
    accepted_inputs: dict[str, str] = Field(
        description="Datatype -> the shape and values the `image` input takes in it."
    )


class ModelMetadata(BaseModel):
    """``GET /v2/models/{model}[/versions/{version}]``: the model's tensors and classes."""

    name: str = Field(examples=["digits"])
    versions: list[str] = Field(examples=[["1", "2"]], description="The versions served.")
    platform: str = Field(examples=["pytorch"])
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: ModelParameters


class OutputTensor(BaseModel):
    """One output of an infer answer, its values flattened in row-major order."""

    name: str = Field(examples=["label"])
    shape: list[int] = Field(examples=[[1]])
    datatype: str = Field(examples=["BYTES"])
    # Strict members: a label such as "3" stays a string.
    data: list[StrictFloat] | list[StrictStr] = Field(examples=[["3"]])


class InferResponse(BaseModel):
    """``POST /v2/models/{model}[/versions/{version}]/infer``: the requested outputs."""

    model_name: str = Field(examples=["digits"])
    model_version: str = Field(examples=["1"], description="The version that answered.")
    id: str | None = Field(None, description="The request's `id`, when it had one.")
    outputs: list[OutputTensor]


def _error(code: int, description: str, example: str, oip: bool = False) -> dict[str, Any]:
    body = {"error": example} if oip else {"error": {"code": code, "message": example}}
    answer: dict[str, Any] = {
        "model": OipErrorBody if oip else ErrorBody,
        "description": description,
        "content": {"application/json": {"example": body}},
    }
    if code == 503:
        answer["headers"] = {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
        }
    return answer


_NOT_SERVED = "version 9 of 'digits' is not served; served: 1, 2"
_FULL = "the queue of model 'digits' is full; retry later"
_TOO_LARGE = "body of 300000 bytes is over the limit of 262144"

#: Error answers of a route that takes a model reference and an uploaded image.
IMAGE_ERRORS: dict[int | str, dict[str, Any]] = {
    404: _error(404, "Unknown model, version or alias.", _NOT_SERVED),
    413: _error(413, "Body over the server's size limit.", _TOO_LARGE),
    415: _error(
        415,
        "Body neither `image/*` nor `multipart/form-data`, or no `Content-Type`.",
        "Content-Type 'text/plain' is not supported: send image bytes with an image/* type "
        "or a multipart/form-data field 'file'",
    ),
    422: _error(
        422,
        "Undecodable, truncated or oversized image, decompression bomb, missing or repeated "
        "multipart field, multipart body without a boundary, bad reference or query parameter.",
        "not an image (unrecognised format)",
    ),
    503: _error(
        503,
        "The model's queue is full or a replica is restarting: retry after `Retry-After`.",
        _FULL,
    ),
}

#: Error answers of an Open Inference Protocol route that reads a model's metadata or readiness.
MODEL_ERRORS: dict[int | str, dict[str, Any]] = {
    404: _error(404, "Unknown model, version or alias.", _NOT_SERVED, oip=True),
    422: _error(
        422,
        "A bad model reference, a version pinned twice, or a version below 1.",
        "invalid version 'x' in 'digits:x': a positive integer or 'latest'",
        oip=True,
    ),
    503: _error(
        503,
        "The server is starting or its queue is full: retry after `Retry-After`.",
        "the server is starting; no routing table yet",
        oip=True,
    ),
}

#: Error answers of an Open Inference Protocol infer route: a model reference and a JSON body.
INFER_ERRORS: dict[int | str, dict[str, Any]] = {
    404: MODEL_ERRORS[404],
    413: _error(413, "Body over the server's size limit.", _TOO_LARGE, oip=True),
    415: _error(
        415,
        "Body declared as something other than JSON.",
        "Content-Type 'text/plain' is not supported: send the request as application/json",
        oip=True,
    ),
    422: _error(
        422,
        "Malformed JSON; unknown input or output name; wrong tensor shape, datatype or values; "
        "a bad reference.",
        "input 'image': shape must be [N, 16, 16, 1] (N images of height, width, channels), "
        "got [1, 8, 8, 1]",
        oip=True,
    ),
    503: _error(
        503,
        "The model's queue is full or a replica is restarting: retry after `Retry-After`.",
        _FULL,
        oip=True,
    ),
}

#: The header that names the version that answered, on every model answer.
VERSION_HEADER = "Pomona-Model-Version"
ANSWERED_BY = {
    VERSION_HEADER: {"description": "The version that answered.", "schema": {"type": "integer"}}
}

_BINARY = {"type": "string", "format": "binary"}


def image_body(field: str, many: bool) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads image bytes or a multipart ``field`` itself.

    Args:
        field: the multipart field name.
        many: the field may repeat (several images); then only multipart is accepted.
    """
    multipart = {
        "schema": {
            "type": "object",
            "properties": {field: {"type": "array", "items": _BINARY} if many else _BINARY},
            "required": [field],
        }
    }
    content: dict[str, Any] = {"multipart/form-data": multipart}
    if not many:
        content = {"image/*": {"schema": _BINARY}, **content}
    return {"requestBody": {"required": True, "content": content}}
