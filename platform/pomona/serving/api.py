"""The HTTP API: a FastAPI ingress that resolves models and versions and answers from them.

Routes (OpenAPI page at ``/docs``):

* ``GET /v1/models``: served models, versions, aliases and traffic split.
* ``POST /v1/models/{model}/predict`` and ``.../predict/batch``: image bytes (``image/*``) or a
  multipart ``file`` (``files`` for the batch form); top-k labels with scores.
* ``POST /v1/models/{model}/explain``: the Grad-CAM overlay PNG of an uploaded image.
* Open Inference Protocol v2: ``/v2``, ``/v2/health/live``, ``/v2/health/ready``,
  ``/v2/models/{model}[/versions/{v}]``, ``.../ready`` and ``.../infer``. Their errors are
  ``{"error": "message"}`` as the protocol defines them; the v1 routes' are
  ``{"error": {"code": N, "message": "..."}}``.

``{model}`` is ``name``, ``name:N`` or ``name@alias``; ``?version=`` and ``?alias=`` pin too.
Requests that pin nothing follow the model's traffic split. Every answer names the version that
produced it, in the JSON and in the ``Pomona-Model-Version`` header. Each replica holds every
version its routing table serves (:mod:`pomona.serving.model`); images are decoded on the
replica's event loop, outside the batched forward pass. The most frequent request, one image
posted as the body of ``.../predict``, is answered by the same code without FastAPI's
per-request machinery (:class:`_ImagePredict`).
"""

import asyncio
import logging
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from python_multipart.multipart import parse_options_header
from ray import serve
from starlette.datastructures import Headers, State, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pomona.config import format_validation_error
from pomona.errors import ConfigError, InvalidRequestError, PomonaError
from pomona.inference import decode, top_classes
from pomona.models.card import ModelCard
from pomona.registry import Registry, parse_ref
from pomona.serving.config import LATEST, AppArgs, Routing
from pomona.serving.metrics import UNKNOWN_MODEL, ingress_metrics, model_metrics
from pomona.serving.model import ServedVersion, load_version, replica_device
from pomona.serving.oip import (
    InferRequest,
    UnprocessableInput,
    images_from_tensor,
    infer_response,
    model_metadata,
    output_names,
    server_metadata,
)
from pomona.serving.schema import (
    ANSWERED_BY,
    IMAGE_ERRORS,
    INFER_ERRORS,
    MODEL_ERRORS,
    VERSION_HEADER,
    BatchPrediction,
    InferResponse,
    Live,
    ModelMetadata,
    ModelReady,
    PinQuery,
    Prediction,
    PredictQuery,
    Ready,
    ServedModels,
    ServerMetadata,
    image_body,
)

logger = logging.getLogger(__name__)

IMAGE_TYPES = ("image/", "application/octet-stream")

#: How long the replica's event loop may keep the GIL while a forward pass waits for it. A
#: forward pass takes the GIL back between every two torch ops, and the event loop runs Python
#: (HTTP, decoding) for as long as Python's default 5 ms allows: beside a busy loop a digits batch
#: of 8 took 3-97 ms instead of 0.7. With 50 us its forward passes at half load took 2.2-3.2 ms
#: instead of 2.6-4.6, at the same peak throughput (``benchmarks/RESULTS.md``, Serving).
GIL_SWITCH_INTERVAL_S = 50e-6


class PayloadTooLarge(InvalidRequestError):
    """The request body is over the configured limit (HTTP 413)."""

    http_status = 413


class UnsupportedMediaType(InvalidRequestError):
    """The body is neither an image nor a multipart form (HTTP 415)."""

    http_status = 415


class Unavailable(PomonaError):
    """The server cannot answer yet; the client should retry (HTTP 503)."""

    http_status = 503


_V1 = "pomona v1"
_V2 = "Open Inference Protocol v2"

app = FastAPI(
    title="pomona",
    description=(
        "Image classifiers from the pomona registry, served by Ray Serve. `{model}` is `name` "
        "(its traffic split decides the version), `name:N` or `name@alias`; every answer names "
        f"the version that produced it, in its JSON and in the `{VERSION_HEADER}` header. "
        'Errors are `{"error": {"code", "message"}}`, and `{"error": "message"}` on the `/v2` '
        "routes, as the Open Inference Protocol defines them."
    ),
    version="1",
    openapi_tags=[
        {"name": _V1, "description": "Top-k classes and Grad-CAM for uploaded images."},
        {"name": _V2, "description": "The KServe / Triton protocol: health, metadata, infer."},
    ],
)

ModelPath = Annotated[
    str, Path(description="`name`, `name:N` or `name@alias`.", examples=["digits"])
]
PathVersion = Annotated[int, Path(ge=1, description="The version number.", examples=[1])]


def _route_path(scope: Scope) -> str:
    """The request's path without the prefix the app is mounted at (``root_path``)."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if path.startswith(root) else path


def _is_oip(scope: Scope) -> bool:
    """Whether the request is for an Open Inference Protocol route (``/v2``, ``/v2/...``)."""
    path = _route_path(scope)
    return path == "/v2" or path.startswith("/v2/")


def _error(
    status: int, message: str, headers: dict[str, str] | None = None, oip: bool = False
) -> JSONResponse:
    """An error answer: ``{"error": {"code", "message"}}``, or ``{"error": message}`` for an
    Open Inference Protocol route (``oip``), whose specification defines that shape."""
    body = {"error": message} if oip else {"error": {"code": status, "message": message}}
    return JSONResponse(body, status, headers)


def _error_answer(state: State, error: PomonaError, oip: bool) -> JSONResponse:
    headers = None
    if isinstance(error, Unavailable):
        headers = {"Retry-After": str(state.retry_after)}
    return _error(error.http_status, str(error), headers, oip)


@app.exception_handler(PomonaError)
async def _pomona_error(request: Request, error: PomonaError) -> JSONResponse:
    return _error_answer(request.app.state, error, _is_oip(request.scope))


@app.exception_handler(RequestValidationError)
async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
    return _error(422, _problems(error.errors()), oip=_is_oip(request.scope))


def _problems(items: Sequence[Any]) -> str:
    """One line for pydantic's or FastAPI's validation errors: ``where: what; ...``."""
    return "; ".join(_problem(item) for item in items)


def _problem(item: dict[str, Any]) -> str:
    if item["type"] == "json_invalid":  # its location is (body, character offset)
        where = f" at character {item['loc'][1]}" if len(item["loc"]) > 1 else ""
        return f"body: malformed JSON{where}: {item.get('ctx', {}).get('error', item['msg'])}"
    return f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"


@app.exception_handler(StarletteHTTPException)
async def _no_such_route(request: Request, error: StarletteHTTPException) -> JSONResponse:
    """Unknown paths and methods answer in the same error shape as everything else."""
    message = f"{request.method} {request.url.path}: {error.detail}"
    allowed = Headers(headers=error.headers).get("allow")
    if allowed:
        message += f"; use {allowed}"
    elif error.status_code == 404:
        message += "; the routes are listed at /docs"
    return _error(error.status_code, message, error.headers, _is_oip(request.scope))


def _predict_query(request: Request) -> PredictQuery:
    """``request``'s query parameters, refused as FastAPI refuses them on its routes (HTTP 422)."""
    try:
        return PredictQuery.model_validate(dict(request.query_params))
    except ValidationError as error:
        problems = [{**item, "loc": ("query", *item["loc"])} for item in error.errors()]
        raise UnprocessableInput(_problems(problems)) from None


def _media_type(headers: Headers) -> str:
    """A request's ``Content-Type`` without parameters, lower case ('' when absent)."""
    return headers.get("content-type", "").split(";")[0].strip().lower()


async def _json_body(request: Request) -> None:
    """Refuse a body declared as something other than JSON (HTTP 415) before it is parsed."""
    kind = _media_type(request.headers)
    if kind and kind != "application/json" and not kind.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type {kind!r} is not supported: send the request as application/json"
        )


class _Admission:
    """Refuses an oversize body before it is read and records every answer's metrics.

    A plain ASGI middleware: Starlette's ``@app.middleware("http")`` runs each request through
    an extra task and memory streams, CPU that a small machine pays on every request. Every
    request it answers or passes on is counted once in ``pomona_requests_total``, under the
    model and version the route resolved; for one refused before that, the model its path
    names if it is served, else ``unknown`` (or '' for a route that names none).

    Args:
        app: the ASGI app it admits requests to.
        state: the FastAPI app's state (limits, metrics), set by the :class:`Api` replica.
    """

    def __init__(self, app: ASGIApp, state: State) -> None:
        self._app = app
        self._state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        start = time.perf_counter()
        state = self._state
        # What the route resolves lands here (Request.state is a view of this dict, which
        # survives the shallow scope copies on the way to the route).
        resolved = scope.setdefault("state", {})
        status = 0  # none answered yet

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            declared = Headers(scope=scope).get("content-length", "")
            if declared.isdigit() and int(declared) > state.max_body_bytes:
                refusal = f"body of {declared} bytes is over the limit of {state.max_body_bytes}"
                answer = _error(413, refusal, oip=_is_oip(scope))
                await answer(scope, receive, send_recording_status)
            else:
                if not declared:  # chunked: counted as it arrives
                    receive = _within_limit(receive, state.max_body_bytes)
                await self._app(scope, receive, send_recording_status)
        except Exception:
            status = status or 500  # what Serve answers for an error no one answered
            raise
        finally:
            # A request cancelled (the client went away) before its answer began is not counted.
            if status:
                model = resolved.get("model")
                if model is None:
                    model = _model_label(scope, state.api.routing)
                tags = {"model": model, "version": str(resolved.get("version", ""))}
                state.metrics.requests.inc(1, {**tags, "code": str(status)})
                state.metrics.latency.observe(time.perf_counter() - start, tags)


def _within_limit(receive: Receive, limit: int) -> Receive:
    """``receive`` for a body of undeclared length (chunked), raising :class:`_BodyOverLimit`
    (HTTP 413) as soon as more than ``limit`` bytes have arrived, whoever reads it."""
    received = 0

    async def receive_within_limit() -> Message:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise _BodyOverLimit(f"chunked body over the limit of {limit} bytes")
        return message

    return receive_within_limit


class _BodyOverLimit(StarletteHTTPException):
    """A body of undeclared length grew over the limit: an HTTP exception, so that FastAPI,
    which answers any other error while it reads a body with a 400, answers it as one (and
    :class:`_ImagePredict` as FastAPI would)."""

    def __init__(self, detail: str) -> None:
        super().__init__(413, detail)


#: The ``{model}`` of a ``/v1/models/{model}/...`` or ``/v2/models/{model}...`` path.
_MODEL_PATH = re.compile(r"/v[12]/models/([^/]+)")


def _model_label(scope: Scope, routing: Routing | None) -> str:
    """The ``model`` label of a request no route resolved a model for: the model name its path
    names (before any ``:`` or ``@``) when that model is served, else :data:`UNKNOWN_MODEL`, and
    '' when the path names no model. Never a string a client typed that is not served."""
    match = _MODEL_PATH.match(_route_path(scope))
    if match is None:
        return ""
    name = re.split("[:@]", match[1], maxsplit=1)[0]
    return name if routing is not None and name in routing.models else UNKNOWN_MODEL


#: ``POST /v1/models/{model}/predict``, as a route path (a model reference has no "/").
_PREDICT_PATH = re.compile(r"/v1/models/([^/]+)/predict")


class _ImagePredict:
    """Answers ``POST /v1/models/{model}/predict`` with one image as the body, without FastAPI.

    The API's most frequent request. :meth:`Api.predict_image` answers it with the code the
    FastAPI route runs; what is skipped is FastAPI's and Starlette's per-request layers, the
    routing, dependency solving and response validation, which for a small model cost more CPU
    than the model (``benchmarks/RESULTS.md``, Serving). Everything else, multipart forms
    included, goes on to FastAPI. Inside :class:`_Admission`, which limits the body and records
    the metrics of both.

    Args:
        app: the FastAPI app, for every other request; its state holds the :class:`Api` replica.
    """

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        model = _posted_image_model(scope)
        if model is None:
            await self._app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            answer = await self._state.api.predict_image(request, model)
        except PomonaError as error:
            answer = _error_answer(self._state, error, oip=False)
        except _BodyOverLimit as error:
            answer = _error(error.status_code, error.detail)
        await answer(scope, receive, send)


def _posted_image_model(scope: Scope) -> str | None:
    """The ``{model}`` of ``POST /v1/models/{model}/predict`` with an image body, else None."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    match = _PREDICT_PATH.fullmatch(_route_path(scope))
    if match is None:
        return None
    return match[1] if _media_type(Headers(scope=scope)).startswith(IMAGE_TYPES) else None


def _part_name(field: str, index: int, count: int, filename: str | None) -> str:
    """How an error names a form's part: ``files 2 of 3 'cat.png'``, ``file``."""
    name = f"{field} {index + 1} of {count}" if count > 1 else field
    return f"{name} {filename!r}" if filename else name


def _predict_route(
    suffix: str, summary: str, description: str, answer: type[BaseModel], many: bool
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The route decorator of ``POST /v1/models/{model}/<suffix>``, documented for the docs page."""
    return app.post(
        f"/v1/models/{{model}}/{suffix}",
        tags=[_V1],
        summary=summary,
        description=description,
        response_model=answer,
        responses={200: {"headers": ANSWERED_BY}, **IMAGE_ERRORS},
        openapi_extra=image_body("files" if many else "file", many=many),
    )


@serve.deployment
@serve.ingress(app)
class Api:
    """The one deployment: HTTP, image decoding and the served versions' forward passes.

    Args:
        args: the application's arguments (registry, limits, torch threads).
    """

    def __init__(self, args: dict[str, Any]) -> None:
        self._args = AppArgs.model_validate(args)
        self._registry = Registry(self._args.registry)
        self._routing: Routing | None = None
        self._versions: dict[tuple[str, int], ServedVersion] = {}
        self._rng = random.Random()
        self._model_metrics = model_metrics()
        self._device = replica_device()
        # More intra-op threads than the cores a replica can use only adds hand-offs.
        torch.set_num_threads(self._args.torch_threads)
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        app.state.api = self
        app.state.metrics = ingress_metrics()
        app.state.retry_after = max(1, round(self._args.retry_after_s))
        app.state.max_body_bytes = self._args.max_body_bytes

    def __serve_build_asgi_app__(self) -> ASGIApp:
        """The ASGI app Serve calls: the FastAPI app behind the admission check and image path.

        Serve calls this hook once the constructor has run, and what it returns replaces the app
        given to ``@serve.ingress`` (whose routes it has bound to this class). In front of the
        FastAPI app, the most frequent request also skips FastAPI's and Starlette's outer
        layers, and Serve's per-request route matching (which labels Serve's own HTTP metrics by
        route; they carry the route prefix instead, and pomona's label model and version).
        """
        return _Admission(_ImagePredict(app), app.state)

    @property
    def routing(self) -> Routing | None:
        """The routing table in effect (None until Serve has called :meth:`reconfigure`)."""
        return self._routing

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """Take a new routing table (Serve calls this for ``user_config``, no restart).

        Versions it adds are loaded (checksums verified) before it takes effect, so a promote
        never sends a request to a version that is still loading; versions it drops are
        released once their last request is answered.
        """
        try:
            routing = Routing.model_validate(config)
        except ValidationError as error:
            raise ConfigError(format_validation_error(error, "routing")) from None
        unknown = sorted(set(routing.models) - set(self._args.names))
        if unknown:
            raise ConfigError(f"routing names models this application does not serve: {unknown}")
        versions = {}
        for name, route in routing.models.items():
            for number in route.versions:
                served = self._versions.get((name, number))
                if served is None:
                    served = await asyncio.to_thread(
                        load_version,
                        self._registry,
                        name,
                        number,
                        self._model_metrics,
                        route.batch,
                        self._args.concurrent_batches,
                        self._device,
                    )
                served.configure(route.batch)
                versions[name, number] = served
        self._versions, self._routing = versions, routing
        logger.info("routing: %s", routing.model_dump_json())

    # --- resolving models ------------------------------------------------------------------

    def _resolve(
        self, request: Request, model: str, version: int | None, alias: str | None
    ) -> ServedVersion:
        if self._routing is None:
            raise Unavailable("the server is starting; no routing table yet")
        try:
            ref = parse_ref(model)
        except PomonaError as error:
            raise UnprocessableInput(str(error)) from None
        # The registry reads `name:latest` as a bare name; here a bare name follows the traffic
        # split, and `name:latest` pins the newest version served, the `latest` route.
        ref_alias = LATEST if model.endswith(f":{LATEST}") else ref.alias
        if sum(x is not None for x in (ref.version, ref_alias, version, alias)) > 1:
            pins = [f"{model!r}"] if ref.version is not None or ref_alias is not None else []
            pins += [
                f"{key}={value}"
                for key, value in (("version", version), ("alias", alias))
                if value is not None
            ]
            raise UnprocessableInput(f"{' and '.join(pins)} each pin a version: give only one")
        request.state.model = ref.name if ref.name in self._routing.models else UNKNOWN_MODEL
        number = self._routing.resolve(
            ref.name, ref.version or version, ref_alias or alias, self._rng
        )
        request.state.version = number
        return self._versions[ref.name, number]

    async def _images(self, request: Request, card: ModelCard, field: str) -> np.ndarray:
        pixels = []
        for name, data in await self._payloads(request, field):
            try:
                pixels.append(decode(data, card.preprocessing, self._args.max_pixels))
            except InvalidRequestError as error:
                raise UnprocessableInput(f"{name}: {error}" if name else f"{error}") from None
        return np.stack(pixels)

    async def _payloads(self, request: Request, field: str) -> list[tuple[str, bytes]]:
        """The posted images, each with the name an error about it gives: none for the body,
        ``file 'cat.png'`` or ``files 2 of 3 'cat.png'`` for the parts of a form."""
        limit = self._args.max_body_bytes
        kind = _media_type(request.headers)
        if kind.startswith(IMAGE_TYPES):
            body = await request.body()
            if len(body) > limit:
                raise PayloadTooLarge(f"body of {len(body)} bytes is over the limit of {limit}")
            return [("", body)]
        if kind != "multipart/form-data":
            sent = f"Content-Type {kind!r} is not supported" if kind else "no Content-Type given"
            raise UnsupportedMediaType(
                f"{sent}: send image bytes with an image/* type or a multipart/form-data field "
                f"{field!r}"
            )
        _, options = parse_options_header(request.headers["content-type"])
        if not options.get(b"boundary"):
            raise UnprocessableInput(
                "the multipart body has no boundary in its Content-Type: let the HTTP client "
                f"build the form (curl -F {field}=@image.png, requests' files=)"
            )
        async with request.form(max_part_size=limit) as form:
            uploads = [u for u in form.getlist(field) if isinstance(u, UploadFile)]
            if not uploads:
                raise UnprocessableInput(f"the multipart form has no file field {field!r}")
            if field == "file" and len(uploads) > 1:
                batch = ""
                if request.url.path.endswith("/predict"):
                    batch = ", or several images as 'files' to .../predict/batch"
                raise UnprocessableInput(
                    f"the multipart form has {len(uploads)} 'file' fields: send one{batch}"
                )
            return [
                (_part_name(field, i, len(uploads), upload.filename), await upload.read())
                for i, upload in enumerate(uploads)
            ]

    # --- v1 --------------------------------------------------------------------------------

    @app.get("/v1/models", tags=[_V1], response_model=ServedModels)
    async def list_models(self) -> dict[str, Any]:
        """Served models: versions, aliases and traffic split."""
        if self._routing is None:
            raise Unavailable("the server is starting; no routing table yet")
        return {
            "models": [
                {
                    "name": name,
                    "versions": route.versions,
                    "aliases": route.targets,
                    "split": route.split,
                }
                for name, route in sorted(self._routing.models.items())
            ]
        }

    @_predict_route(
        "predict/batch",
        "Classify several images",
        "Top-k classes of each image sent as a repeated multipart `files` field, in order, "
        "from one version.",
        BatchPrediction,
        many=True,
    )
    @_predict_route(
        "predict",
        "Classify one image",
        "Top-k classes of one image: its bytes as the body (`Content-Type: image/png`, "
        "`image/jpeg`, ...) or a multipart `file` field.",
        Prediction,
        many=False,
    )
    async def predict(
        self,
        request: Request,
        response: Response,
        model: ModelPath,
        query: Annotated[PredictQuery, Query()],
    ) -> dict[str, Any]:
        """The two predict routes: one image, or (``.../batch``) several."""
        many = request.url.path.endswith("/batch")
        served, answer = await self._predict(request, model, query, many)
        response.headers[VERSION_HEADER] = str(served.version)
        return answer

    async def predict_image(self, request: Request, model: str) -> JSONResponse:
        """The predict route's answer to one image sent as the body (:class:`_ImagePredict`)."""
        served, answer = await self._predict(request, model, _predict_query(request), False)
        return JSONResponse(answer, headers={VERSION_HEADER: str(served.version)})

    async def _predict(
        self, request: Request, model: str, query: PredictQuery, many: bool
    ) -> tuple[ServedVersion, dict[str, Any]]:
        served = self._resolve(request, model, query.version, query.alias)
        pixels = await self._images(request, served.card, "files" if many else "file")
        probs = await served.predict(pixels)
        predictions = [
            [
                {"label": label, "score": score}
                for label, score in zip(p.labels, p.scores, strict=True)
            ]
            for p in top_classes(probs, served.card.classes, query.top_k)
        ]
        return served, {
            "model": served.name,
            "version": served.version,
            "predictions": predictions if many else predictions[0],
        }

    @app.post(
        "/v1/models/{model}/explain",
        tags=[_V1],
        summary="Grad-CAM of one image",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}, "headers": ANSWERED_BY}, **IMAGE_ERRORS},
        openapi_extra=image_body("file", many=False),
    )
    async def explain(
        self, request: Request, model: ModelPath, query: Annotated[PinQuery, Query()]
    ) -> Response:
        """Grad-CAM overlay (PNG) of one image, for the class the model predicts."""
        served = self._resolve(request, model, query.version, query.alias)
        pixels = await self._images(request, served.card, "file")
        png = await served.explain(pixels[0])
        return Response(png, media_type="image/png", headers={VERSION_HEADER: str(served.version)})

    # --- Open Inference Protocol v2 --------------------------------------------------------

    @app.get("/v2", tags=[_V2], response_model=ServerMetadata)
    async def server(self) -> dict[str, Any]:
        """Server metadata: name, version and the protocol extensions it supports (none)."""
        return server_metadata()

    @app.get("/v2/health/live", tags=[_V2], response_model=Live)
    async def live(self) -> dict[str, bool]:
        """The server process answers."""
        return {"live": True}

    @app.get("/v2/health/ready", tags=[_V2], response_model=Ready)
    async def ready(self) -> dict[str, bool]:
        """The server has a routing table and can take requests."""
        return {"ready": self._routing is not None}

    # Each OIP route comes twice: ``/v2/models/{model}/...`` (the traffic split or the
    # reference decides the version) and ``/v2/models/{model}/versions/{version}/...``.

    @app.get("/v2/models/{model}", tags=[_V2], response_model=ModelMetadata, responses=MODEL_ERRORS)
    async def metadata(
        self, request: Request, response: Response, model: ModelPath
    ) -> dict[str, Any]:
        """Model metadata: inputs, outputs, classes."""
        return self._metadata(request, response, model, None)

    @app.get(
        "/v2/models/{model}/versions/{version}",
        tags=[_V2],
        response_model=ModelMetadata,
        responses=MODEL_ERRORS,
    )
    async def version_metadata(
        self, request: Request, response: Response, model: ModelPath, version: PathVersion
    ) -> dict[str, Any]:
        """Metadata of one version: inputs, outputs, classes."""
        return self._metadata(request, response, model, version)

    def _metadata(
        self, request: Request, response: Response, model: str, version: int | None
    ) -> dict[str, Any]:
        served = self._resolve(request, model, version, None)
        response.headers[VERSION_HEADER] = str(served.version)
        assert self._routing is not None
        return model_metadata(served.name, self._routing.route(served.name).versions, served.card)

    @app.get(
        "/v2/models/{model}/ready", tags=[_V2], response_model=ModelReady, responses=MODEL_ERRORS
    )
    async def model_ready(self, request: Request, model: ModelPath) -> dict[str, Any]:
        """Whether the model is loaded and answering."""
        return self._ready(request, model, None)

    @app.get(
        "/v2/models/{model}/versions/{version}/ready",
        tags=[_V2],
        response_model=ModelReady,
        responses=MODEL_ERRORS,
    )
    async def version_ready(
        self, request: Request, model: ModelPath, version: PathVersion
    ) -> dict[str, Any]:
        """Whether one version is loaded and answering."""
        return self._ready(request, model, version)

    def _ready(self, request: Request, model: str, version: int | None) -> dict[str, Any]:
        served = self._resolve(request, model, version, None)
        return {"name": served.name, "version": str(served.version), "ready": True}

    @app.post(
        "/v2/models/{model}/infer",
        tags=[_V2],
        response_model=InferResponse,
        response_model_exclude_unset=True,
        responses=INFER_ERRORS,
        dependencies=[Depends(_json_body)],
    )
    async def infer(
        self, request: Request, response: Response, body: InferRequest, model: ModelPath
    ) -> dict[str, Any]:
        """Classify a UINT8/FP32 `[N, H, W, C]` tensor or BYTES `[N]` base64-encoded images;
        the answer holds the `outputs` asked for (all when none are)."""
        return await self._infer(request, response, body, model, None)

    @app.post(
        "/v2/models/{model}/versions/{version}/infer",
        tags=[_V2],
        response_model=InferResponse,
        response_model_exclude_unset=True,
        responses=INFER_ERRORS,
        dependencies=[Depends(_json_body)],
    )
    async def version_infer(
        self,
        request: Request,
        response: Response,
        body: InferRequest,
        model: ModelPath,
        version: PathVersion,
    ) -> dict[str, Any]:
        """Classify with one version: a UINT8/FP32 `[N, H, W, C]` tensor or BYTES `[N]` images;
        the answer holds the `outputs` asked for (all when none are)."""
        return await self._infer(request, response, body, model, version)

    async def _infer(
        self,
        request: Request,
        response: Response,
        body: InferRequest,
        model: str,
        version: int | None,
    ) -> dict[str, Any]:
        served = self._resolve(request, model, version, None)
        outputs = output_names(body.outputs)
        pixels = images_from_tensor(body.inputs[0], served.card, self._args.max_pixels)
        probs = await served.predict(pixels)
        response.headers[VERSION_HEADER] = str(served.version)
        return infer_response(served.name, served.version, body.id, probs, served.card, outputs)
