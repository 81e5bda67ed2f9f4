"""Which requests the API answers without FastAPI: one image posted to ``.../predict`` (no Ray)."""

from __future__ import annotations

from typing import Any

import pytest

from pomona.serving.api import _posted_image_model


def _scope(
    path: str = "/v1/models/digits/predict",
    content_type: str | None = "image/png",
    method: str = "POST",
    **extra: Any,
) -> dict[str, Any]:
    headers = [] if content_type is None else [(b"content-type", content_type.encode())]
    return {"type": "http", "method": method, "path": path, "headers": headers, **extra}


@pytest.mark.parametrize(
    ("scope", "model"),
    [
        (_scope(), "digits"),
        (_scope("/v1/models/digits@production/predict"), "digits@production"),
        (_scope("/v1/models/digits:2/predict"), "digits:2"),
        (_scope(content_type="Image/JPEG; q=1"), "digits"),
        (_scope(content_type="application/octet-stream"), "digits"),
        (_scope("/api/v1/models/digits/predict", root_path="/api"), "digits"),
    ],
)
def test_an_image_body_posted_to_predict_is_answered_directly(
    scope: dict[str, Any], model: str
) -> None:
    assert _posted_image_model(scope) == model


@pytest.mark.parametrize(
    "scope",
    [
        _scope(content_type="multipart/form-data; boundary=x"),
        _scope(content_type=None),
        _scope(content_type="application/json"),
        _scope(method="GET"),
        _scope("/v1/models/digits/predict/batch"),
        _scope("/v1/models/digits/explain"),
        _scope("/v1/models/a/b/predict"),
        _scope("/v1/models//predict"),
        {"type": "websocket", "path": "/v1/models/digits/predict", "headers": []},
    ],
)
def test_everything_else_goes_to_fastapi(scope: dict[str, Any]) -> None:
    assert _posted_image_model(scope) is None
