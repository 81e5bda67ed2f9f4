"""What the HTTP API answers, as pydantic models, and the request bodies its OpenAPI page shows.

No Ray here. The routes in :mod:`pomona.serving.api` read their bodies themselves (raw image
bytes or multipart, under a size limit), so FastAPI cannot infer those bodies: they are
described here for the ``/docs`` page, with every error answer's shape.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

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
    """Every error answer (4xx and 503)."""

    error: ErrorDetail


def _error(code: int, description: str, example: str) -> dict[str, Any]:
    body = {"error": {"code": code, "message": example}}
    answer: dict[str, Any] = {
        "model": ErrorBody,
        "description": description,
        "content": {"application/json": {"example": body}},
    }
    if code == 503:
        answer["headers"] = {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
        }
    return answer


_NOT_SERVED = _error(
    404, "Unknown model, version or alias.", "version 9 of 'digits' is not served; served: 1, 2"
)
_FULL = _error(
    503,
    "The model's queue is full or a replica is restarting: retry after `Retry-After`.",
    "the queue of model 'digits' is full; retry later",
)

#: Error answers of a route that takes a model reference and an uploaded image.
IMAGE_ERRORS: dict[int | str, dict[str, Any]] = {
    404: _NOT_SERVED,
    413: _error(
        413,
        "Body over the server's size limit.",
        "body of 300000 bytes is over the limit of 262144",
    ),
    415: _error(
        415,
        "Body neither `image/*` nor `multipart/form-data`.",
        "Content-Type 'text/plain' is not supported: send image bytes with an image/* type "
        "or a multipart/form-data field 'file'",
    ),
    422: _error(
        422,
        "Undecodable, truncated or oversized image, decompression bomb, missing multipart "
        "field, bad reference or query parameter.",
        "not an image (unrecognised format)",
    ),
    503: _FULL,
}

#: Error answers of a route that takes a model reference and a JSON body or nothing.
MODEL_ERRORS: dict[int | str, dict[str, Any]] = {
    404: _NOT_SERVED,
    422: _error(
        422,
        "Malformed JSON, wrong tensor shape, datatype or values, or a bad reference.",
        "input 'image': shape must be [N, 16, 16, 1] (N images of height, width, channels), "
        "got [1, 8, 8, 1]",
    ),
    503: _FULL,
}

#: Error answers of an infer route: a model reference and a JSON body.
INFER_ERRORS: dict[int | str, dict[str, Any]] = {
    **MODEL_ERRORS,
    415: _error(
        415,
        "Body declared as something other than JSON.",
        "Content-Type 'text/plain' is not supported: send the request as application/json",
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
