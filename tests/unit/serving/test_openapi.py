"""The OpenAPI page describes what the API really takes and answers (built without starting Ray)."""

from __future__ import annotations

from typing import Any

import pytest

from pomona.serving.api import app

PREDICT = "/v1/models/{model}/predict"
BATCH = "/v1/models/{model}/predict/batch"
EXPLAIN = "/v1/models/{model}/explain"
INFER = "/v2/models/{model}/infer"
PINNED_INFER = "/v2/models/{model}/versions/{version}/infer"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return app.openapi()


def _operation(spec: dict[str, Any], path: str, method: str = "post") -> dict[str, Any]:
    return spec["paths"][path][method]


def test_upload_routes_document_the_bodies_they_read(spec: dict[str, Any]) -> None:
    for path in (PREDICT, EXPLAIN):
        content = _operation(spec, path)["requestBody"]["content"]
        assert content["image/*"]["schema"]["format"] == "binary"
        assert content["multipart/form-data"]["schema"]["required"] == ["file"]
    batch = _operation(spec, BATCH)["requestBody"]["content"]
    assert list(batch) == ["multipart/form-data"]
    assert batch["multipart/form-data"]["schema"]["properties"]["files"]["type"] == "array"


def test_answers_are_typed_and_errors_have_the_shape_the_server_sends(
    spec: dict[str, Any],
) -> None:
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # FastAPI's default 422 body is never sent
    refs = {
        path: _operation(spec, path)["responses"]["200"]["content"]["application/json"]["schema"]
        for path in (PREDICT, BATCH)
    }
    assert refs == {
        PREDICT: {"$ref": "#/components/schemas/Prediction"},
        BATCH: {"$ref": "#/components/schemas/BatchPrediction"},
    }
    for path in (PREDICT, BATCH, EXPLAIN):
        responses = _operation(spec, path)["responses"]
        for code in ("404", "413", "415", "422", "503"):
            body = responses[code]["content"]["application/json"]
            assert body["schema"] == {"$ref": "#/components/schemas/ErrorBody"}, (path, code)
            assert body["example"]["error"]["code"] == int(code), (path, code)
        assert "Retry-After" in responses["503"]["headers"]
    assert "Pomona-Model-Version" in _operation(spec, PREDICT)["responses"]["200"]["headers"]


def test_v2_answers_are_typed_and_errors_have_the_protocols_shape(spec: dict[str, Any]) -> None:
    answers = {
        "/v2": ("get", "ServerMetadata"),
        "/v2/health/live": ("get", "Live"),
        "/v2/health/ready": ("get", "Ready"),
        "/v2/models/{model}": ("get", "ModelMetadata"),
        "/v2/models/{model}/versions/{version}": ("get", "ModelMetadata"),
        "/v2/models/{model}/ready": ("get", "ModelReady"),
        "/v2/models/{model}/versions/{version}/ready": ("get", "ModelReady"),
        INFER: ("post", "InferResponse"),
        PINNED_INFER: ("post", "InferResponse"),
    }
    for path, (method, model) in answers.items():
        responses = _operation(spec, path, method)["responses"]
        schema = responses["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}, path
        errors = sorted(code for code in responses if code != "200")
        wanted = ["404", "413", "415", "422", "503"] if method == "post" else ["404", "422", "503"]
        assert errors == ([] if "/models/" not in path else wanted), path
        for code in errors:
            body = responses[code]["content"]["application/json"]
            assert body["schema"] == {"$ref": "#/components/schemas/OipErrorBody"}, (path, code)
            assert isinstance(body["example"]["error"], str), (path, code)
        # A metadata or readiness route's 422 is not the infer route's tensor message.
        if method == "get" and errors:
            assert "reference" in responses["422"]["description"], path
    output = spec["components"]["schemas"]["OutputTensor"]
    assert output["required"] == ["name", "shape", "datatype", "data"]


def test_routes_are_grouped_and_summarised(spec: dict[str, Any]) -> None:
    tags = {
        path: next(iter(operations.values()))["tags"] for path, operations in spec["paths"].items()
    }
    assert tags[PREDICT] == tags["/v1/models"] == ["pomona v1"]
    assert tags["/v2/models/{model}/infer"] == ["Open Inference Protocol v2"]
    assert _operation(spec, PREDICT)["summary"] == "Classify one image"
    assert _operation(spec, BATCH)["summary"] == "Classify several images"


def test_oip_routes_take_a_version_only_in_their_versioned_path(spec: dict[str, Any]) -> None:
    for suffix, method in (("", "get"), ("/ready", "get"), ("/infer", "post")):
        plain = _operation(spec, f"/v2/models/{{model}}{suffix}", method)
        pinned = _operation(spec, f"/v2/models/{{model}}/versions/{{version}}{suffix}", method)
        assert [(p["name"], p["in"]) for p in plain["parameters"]] == [("model", "path")]
        assert [(p["name"], p["in"]) for p in pinned["parameters"]] == [
            ("model", "path"),
            ("version", "path"),
        ]
