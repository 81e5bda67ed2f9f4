"""The HTTP API's answers and metrics, its ASGI app called in-process (no Ray, no sockets).

The replica is an :class:`~pomona.serving.api.Api` built without its constructor, serving
versions 1 and 2 of ``digits`` from fakes that answer fixed probabilities; Serve's lookup of the
replica that a route's ``self`` is, and the metrics, are replaced by stand-ins.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image
from ray import serve

from pomona import __version__
from pomona.data.manifest import Preprocessing
from pomona.models.card import ModelCard
from pomona.serving.api import Api, _Admission, _ImagePredict, app
from pomona.serving.config import AppArgs, ModelRoute, Routing
from pomona.serving.metrics import IngressMetrics
from pomona.serving.oip import infer_response, model_metadata

CARD = ModelCard(
    architecture="simple_cnn",
    classes=["a", "b", "c"],
    preprocessing=Preprocessing(height=2, width=3, channels=1),
    weights_sha256="0" * 64,
)
PROBS = [0.1, 0.7, 0.2]
LIMIT = 4096


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (3, 2)).save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()


@dataclass
class FakeVersion:
    name: str
    version: int
    card: ClassVar[ModelCard] = CARD
    fail: bool = False

    async def predict(self, pixels: np.ndarray) -> np.ndarray:
        if self.fail:
            raise RuntimeError("a bug")
        return np.array([PROBS] * len(pixels), dtype=np.float32)


@dataclass
class Recorder:
    """Stands in for a Counter and a Histogram: what each was given, in order."""

    tags: list[dict[str, str]] = field(default_factory=list)

    def inc(self, _value: float, tags: dict[str, str]) -> None:
        self.tags.append(tags)

    def observe(self, _value: float, tags: dict[str, str]) -> None:
        self.tags.append(tags)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class Server:
    api: Api
    metrics: IngressMetrics

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str | None = None,
        query: str = "",
        chunks: list[bytes] | None = None,
    ) -> Answer:
        """Send ``body`` with its Content-Length, or ``chunks`` without one (chunked)."""
        headers = [] if chunks is not None else [(b"content-length", str(len(body)).encode())]
        if content_type is not None:
            headers.append((b"content-type", content_type.encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        parts = chunks if chunks is not None else [body]
        incoming = [
            {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
            for i, part in enumerate(parts)
        ]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return incoming.pop(0) if incoming else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        asgi = _Admission(_ImagePredict(app), app.state)
        asyncio.run(asgi(scope, receive, send))
        start = sent[0]
        content = b"".join(m.get("body", b"") for m in sent[1:])
        answer_headers = {k.decode(): v.decode() for k, v in start["headers"]}
        is_json = answer_headers.get("content-type") == "application/json"
        return Answer(start["status"], answer_headers, json.loads(content) if is_json else content)

    def infer(self, payload: dict[str, Any], version: int | None = None) -> Answer:
        pinned = f"/versions/{version}" if version else ""
        body = json.dumps(payload).encode()
        return self.request("POST", f"/v2/models/digits{pinned}/infer", body, "application/json")

    def counted(self) -> list[tuple[str, str, str]]:
        """(model, version, code) of each request counted, in order."""
        return [(t["model"], t["version"], t["code"]) for t in self.metrics.requests.tags]


class _Replica(Api.func_or_class):  # type: ignore[misc,name-defined]
    """The replica's class without Serve's ``async def __del__``, which an instance made here
    would leave as a coroutine never awaited."""

    def __del__(self) -> None:
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    api = _Replica.__new__(_Replica)
    api._args = AppArgs(registry="/nowhere", references=["digits"], max_body_bytes=LIMIT)
    api._routing = Routing(
        models={
            "digits": ModelRoute(targets={"production": 1, "canary": 2}, split={"production": 100})
        }
    )
    api._versions = {("digits", n): FakeVersion("digits", n) for n in (1, 2)}
    api._rng = random.Random(0)
    metrics = IngressMetrics(requests=Recorder(), latency=Recorder())
    replica = SimpleNamespace(servable_object=api)
    monkeypatch.setattr(serve, "get_replica_context", lambda: replica)
    for name, value in (
        ("api", api),
        ("metrics", metrics),
        ("retry_after", 1),
        ("max_body_bytes", LIMIT),
    ):
        monkeypatch.setattr(app.state, name, value, raising=False)
    yield Server(api, metrics)


def tensor(**changes: object) -> dict[str, Any]:
    item = {"name": "image", "shape": [1, 2, 3, 1], "datatype": "UINT8", "data": [0] * 6}
    return {"inputs": [{**item, **changes}]}


def test_v2_server_health_and_model_answers(server: Server) -> None:
    assert server.request("GET", "/v2").body == {
        "name": "pomona",
        "version": __version__,
        "extensions": [],
    }
    assert server.request("GET", "/v2/health/live").body == {"live": True}
    assert server.request("GET", "/v2/health/ready").body == {"ready": True}
    # The typed answers hold everything the protocol module builds.
    metadata = server.request("GET", "/v2/models/digits/versions/2")
    assert metadata.body == model_metadata("digits", [1, 2], CARD)
    assert metadata.headers["pomona-model-version"] == "2"
    assert server.request("GET", "/v2/models/digits/ready").body == {
        "name": "digits",
        "version": "1",
        "ready": True,
    }
    answer = server.infer({**tensor(), "id": "r1"})
    probs = np.array([PROBS], dtype=np.float32)
    assert answer.body == infer_response("digits", 1, "r1", probs, CARD)
    assert answer.body["outputs"][1]["data"] == ["b"]
    assert "id" not in server.infer(tensor()).body


def test_an_infer_answer_holds_the_outputs_asked_for(server: Server) -> None:
    def names(outputs: list[dict[str, str]]) -> list[str]:
        answer = server.infer({**tensor(), "outputs": outputs})
        assert answer.status == 200, answer.body
        return [output["name"] for output in answer.body["outputs"]]

    assert names([{"name": "label"}]) == ["label"]
    assert names([{"name": "label"}, {"name": "probabilities"}]) == ["label", "probabilities"]
    unknown = server.infer({**tensor(), "outputs": [{"name": "scores"}]})
    assert (unknown.status, unknown.body) == (
        422,
        {"error": "output 'scores' is unknown: the model's outputs are 'probabilities', 'label'"},
    )


def test_the_input_tensor_must_have_the_advertised_name(server: Server) -> None:
    answer = server.infer(tensor(name="input__0"), version=1)
    assert (answer.status, answer.body) == (
        422,
        {"error": "input 'input__0' is unknown: the model's input is named 'image'"},
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "code", "message"),
    [
        ("GET", "/v2/models/cats", b"", None, 404, "model 'cats' is not served; served: digits"),
        (
            "GET",
            "/v2/models/digits:x/ready",
            b"",
            None,
            422,
            "invalid version 'x' in 'digits:x': a positive integer or 'latest'",
        ),
        (
            "POST",
            "/v2/models/digits/infer",
            b"{nope",
            "application/json",
            422,
            "body: malformed JSON at character 1: Expecting property name enclosed in double "
            "quotes",
        ),
        (
            "POST",
            "/v2/models/digits/infer",
            b"{}",
            "text/plain",
            415,
            "Content-Type 'text/plain' is not supported: send the request as application/json",
        ),
        (
            "POST",
            "/v2/models/digits/infer",
            b"x" * (LIMIT + 1),
            "application/json",
            413,
            f"body of {LIMIT + 1} bytes is over the limit of {LIMIT}",
        ),
        (
            "GET",
            "/v2/nothing",
            b"",
            None,
            404,
            "GET /v2/nothing: Not Found; the routes are listed at /docs",
        ),
        ("POST", "/v2", b"", None, 405, "POST /v2: Method Not Allowed; use GET"),
    ],
)
def test_v2_errors_are_the_protocols_shape(
    server: Server,
    method: str,
    path: str,
    body: bytes,
    content_type: str | None,
    code: int,
    message: str,
) -> None:
    answer = server.request(method, path, body, content_type)
    assert (answer.status, answer.body) == (code, {"error": message})


def test_v1_errors_keep_their_shape(server: Server) -> None:
    for path in ("/v1/models/cats/predict", "/v1/nothing"):
        answer = server.request("POST", path, PNG, "image/png")
        assert answer.status == 404
        assert set(answer.body["error"]) == {"code", "message"}
        assert answer.body["error"]["code"] == 404


def _form(*parts: tuple[str, bytes], boundary: str = "b0undary") -> bytes:
    body = b""
    for i, (name, data) in enumerate(parts):
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{i}.png"'
            "\r\nContent-Type: image/png\r\n\r\n"
        )
        body += head.encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


@pytest.mark.parametrize(
    ("path", "body", "content_type", "code", "message"),
    [
        (
            "/v1/models/digits/predict",
            _form(("file", PNG), ("file", PNG)),
            "multipart/form-data; boundary=b0undary",
            422,
            "the multipart form has 2 'file' fields: send one, or several images as 'files' to "
            ".../predict/batch",
        ),
        (
            "/v1/models/digits/explain",
            _form(("file", PNG), ("file", PNG)),
            "multipart/form-data; boundary=b0undary",
            422,
            "the multipart form has 2 'file' fields: send one",
        ),
        (
            "/v1/models/digits/predict",
            PNG,
            None,
            415,
            "no Content-Type given: send image bytes with an image/* type or a "
            "multipart/form-data field 'file'",
        ),
        (
            "/v1/models/digits/predict/batch",
            _form(("files", PNG)),
            "multipart/form-data",
            422,
            "the multipart body has no boundary in its Content-Type: let the HTTP client build "
            "the form (curl -F files=@image.png, requests' files=)",
        ),
    ],
)
def test_uploads_the_api_cannot_use_are_explained(
    server: Server, path: str, body: bytes, content_type: str | None, code: int, message: str
) -> None:
    answer = server.request("POST", path, body, content_type)
    assert (answer.status, answer.body) == (code, {"error": {"code": code, "message": message}})


def test_one_file_part_and_several_files_parts_still_predict(server: Server) -> None:
    boundary = "multipart/form-data; boundary=b0undary"
    one = server.request("POST", "/v1/models/digits/predict", _form(("file", PNG)), boundary)
    assert one.status == 200 and one.body["predictions"][0]["label"] == "b"
    batch = _form(("files", PNG), ("files", PNG))
    two = server.request("POST", "/v1/models/digits/predict/batch", batch, boundary)
    assert two.status == 200 and len(two.body["predictions"]) == 2


def test_every_answer_is_counted_once_with_bounded_labels(server: Server) -> None:
    png, json_type = "image/png", "application/json"
    requests = [
        (("POST", "/v1/models/digits/predict", PNG, png), ("digits", "1", "200")),
        (("POST", "/v1/models/Digits/predict", PNG, png), ("unknown", "", "422")),
        (("POST", "/v1/models/cats/predict", PNG, png), ("unknown", "", "404")),
        (("POST", "/v1/models/digits:abc/predict", PNG, png), ("digits", "", "422")),
        (("POST", "/v1/models/digits/predict", PNG, png, "top_k=0"), ("digits", "", "422")),
        (("POST", "/v1/models/digits/predict", PNG, png, "version=9"), ("digits", "", "404")),
        (
            ("POST", "/v1/models/digits/predict", PNG, png, "version=1&alias=canary"),
            ("digits", "", "422"),
        ),
        (("POST", "/v1/models/digits/predict", b"x" * (LIMIT + 1), png), ("digits", "", "413")),
        (("POST", "/v1/models/digits/predict", b"hello", png), ("digits", "1", "422")),
        (("GET", "/v1/models/digits/predict"), ("digits", "", "405")),
        (("POST", "/v2/models/digits/infer", b"{nope", json_type), ("digits", "", "422")),
        (("POST", "/v2/models/who?/infer", b"{}", json_type), ("unknown", "", "422")),
        (("GET", "/v1/nothing"), ("", "", "404")),
        (("GET", "/v2/health/ready"), ("", "", "200")),
        (("GET", "/v1/models"), ("", "", "200")),
    ]
    for call, _ in requests:
        server.request(*call)
    assert server.counted() == [labels for _, labels in requests]
    # The latency histogram observes the same requests, under the same model and version.
    latency = [(t["model"], t["version"]) for t in server.metrics.latency.tags]
    assert latency == [(model, version) for _, (model, version, _code) in requests]


def test_a_failing_request_is_counted_as_the_500_it_gets(server: Server) -> None:
    server.api._versions["digits", 1].fail = True
    with pytest.raises(RuntimeError, match="a bug"):
        server.request("POST", "/v1/models/digits/predict", PNG, "image/png")
    with pytest.raises(RuntimeError, match="a bug"):
        server.infer(tensor())
    assert server.counted() == [("digits", "1", "500")] * 2


def test_name_latest_pins_the_newest_version_served(server: Server) -> None:
    # The registry reads `digits:latest` as `digits`; a server reads `digits` by its traffic
    # split (all to production here), so `digits:latest` must pin the `latest` route.
    server.api._routing = Routing(
        models={
            "digits": ModelRoute(targets={"production": 1, "latest": 2}, split={"production": 100})
        }
    )

    def version(model: str) -> int:
        answer = server.request("POST", f"/v1/models/{model}/predict", PNG, "image/png")
        assert answer.status == 200, answer.body
        return int(answer.body["version"])

    assert (version("digits"), version("digits:latest"), version("digits:1")) == (1, 2, 1)
    alias = server.request("POST", "/v1/models/digits@latest/predict", PNG, "image/png")
    assert alias.status == 422
    assert "(name:latest)" in alias.body["error"]["message"]
    both = server.request(
        "POST", "/v1/models/digits:latest/predict", PNG, "image/png", query="version=1"
    )
    assert (
        both.body["error"]["message"]
        == "'digits:latest' and version=1 each pin a version: give only one"
    )


@pytest.mark.parametrize(
    ("path", "content_type", "error"),
    [
        ("/v1/models/digits/predict", "image/png", None),  # the image path, outside FastAPI
        ("/v1/models/digits/predict/batch", "multipart/form-data; boundary=x", None),
        ("/v2/models/digits/infer", "application/json", "oip"),  # read by FastAPI
    ],
)
def test_a_chunked_body_over_the_limit_is_refused(
    server: Server, path: str, content_type: str, error: str | None
) -> None:
    head = b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'
    chunks = [head] + [b"x" * 1024] * (LIMIT // 1024 + 1)
    answer = server.request("POST", path, content_type=content_type, chunks=chunks)
    assert answer.status == 413, answer.body
    message = f"POST {path}: chunked body over the limit of {LIMIT} bytes"
    if error == "oip":
        assert answer.body == {"error": message}
    else:
        assert answer.body["error"]["code"] == 413
        assert answer.body["error"]["message"].endswith(f"over the limit of {LIMIT} bytes")
    assert server.counted()[-1][2] == "413"


def test_a_chunked_body_within_the_limit_is_answered(server: Server) -> None:
    answer = server.request(
        "POST", "/v1/models/digits/predict", content_type="image/png", chunks=[PNG[:10], PNG[10:]]
    )
    assert answer.status == 200, answer.body
