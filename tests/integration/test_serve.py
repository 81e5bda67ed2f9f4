"""The pomona Serve application over real HTTP on 127.0.0.1: one deployment for the module.

Two versions of a tiny 16x16 digits classifier are registered (production -> 1, canary -> 2) and
served with small queues, so overload is reachable on 2 cores. It is deployed as ``pomona serve
build`` writes it, without a routing: the application builder plans it from the registry when
Serve deploys. Tests run in file order and leave the split and aliases as they found them.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import torch
from prometheus_client.parser import text_string_to_metric_families

from pomona.cluster.runtime import free_ports
from pomona.data.manifest import Preprocessing
from pomona.models import build_model, save_model
from pomona.registry import Registry
from pomona.serving import control
from pomona.serving.config import (
    APP_NAME,
    AppArgs,
    BatchSettings,
    ModelRoute,
    Routing,
    ServeOptions,
)
from pomona.serving.plan import serve_config

pytestmark = pytest.mark.ray

CLASSES = [str(d) for d in range(10)]
DEADLINE_S = 90


@dataclass
class Server:
    url: str
    registry: Path
    images: list[Path]
    metrics_url: str
    args: AppArgs

    def predict(self, path: Path | None = None, **params: object) -> requests.Response:
        data = (path or self.images[0]).read_bytes()
        return requests.post(
            f"{self.url}/v1/models/digits/predict",
            params=params,
            data=data,
            headers={"Content-Type": "image/png"},
            timeout=30,
        )


@pytest.fixture(scope="module")
def server(
    ray_session: None, digits_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    import ray
    from ray import serve

    root = tmp_path_factory.mktemp("serve")
    registry = Registry(root / "registry")
    for seed in (1, 2):
        torch.manual_seed(seed)
        model_dir = root / f"model-{seed}"
        save_model(
            model_dir,
            build_model("simple_cnn", len(CLASSES), 1).eval(),
            architecture="simple_cnn",
            classes=CLASSES,
            preprocessing=Preprocessing(height=16, width=16, channels=1),
        )
        registry.register(model_dir, "digits")
    registry.set_alias("digits", 1, "production")
    args = AppArgs(
        registry=registry.uri,
        references=["digits"],
        max_body_bytes=256 * 1024,
        batch=BatchSettings(batch_wait_timeout_s=0.004),
    )
    options = ServeOptions(
        port=free_ports(1)[0],
        min_replicas=1,
        max_replicas=1,
        max_ongoing_requests=4,
        max_queued_requests=4,
    )
    built = serve_config(args, None, options)
    # After the config was built: it must be read when Serve deploys.
    registry.set_alias("digits", 2, "canary")
    control.deploy(built)
    here = ray.get_runtime_context().get_node_id()
    metrics_port = next(n["MetricsExportPort"] for n in ray.nodes() if n["NodeID"] == here)
    images = sorted(digits_folder.rglob("*.png"))[:12]
    yield Server(
        f"http://127.0.0.1:{options.port}",
        root / "registry",
        images,
        f"http://127.0.0.1:{metrics_port}/metrics",
        args,
    )
    serve.shutdown()


@dataclass
class Load:
    """Background clients sending unpinned predictions until stopped."""

    server: Server
    clients: int = 3
    codes: Counter[int] = field(default_factory=Counter)
    versions: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = self.server.predict()
                self.codes[response.status_code] += 1
                if response.ok:
                    self.versions.append(response.json()["version"])
            except requests.RequestException:
                self.codes[0] += 1

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._run) for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def _wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    pytest.fail(f"gave up waiting for {what}")


def _cli_predictions(run: Callable, server: Server) -> list[dict]:
    result = run(
        "predict",
        "digits:1",
        "--registry",
        server.registry,
        "--json",
        "--top-k",
        "3",
        *server.images,
    )
    assert result.code == 0, result.err
    return json.loads(result.out)


def _assert_same(got: list[dict], want: list[dict]) -> None:
    assert [p["label"] for p in got] == [p["label"] for p in want]
    assert [p["score"] for p in got] == pytest.approx([p["score"] for p in want], abs=1e-5)


def test_a_built_config_serves_the_aliases_of_the_registry_when_deployed(
    server: Server, pomona
) -> None:
    deployed = control._details()["applications"][APP_NAME]["deployed_app_config"]
    assert "user_config" not in deployed["deployments"][0]
    # What `pomona serve status` and the promote, traffic and batch commands start from.
    assert control.state().routing == Routing(
        models={
            "digits": ModelRoute(
                targets={"production": 1, "canary": 2, "latest": 2},
                split={"production": 100},
                batch=server.args.batch,
            )
        }
    )
    status = pomona("serve", "status")
    assert status.code == 0, status.err
    assert "│ canary, latest │ 0%" in status.out
    assert "│ 16 / 4 ms" in status.out
    assert "application running; replicas: api 1/1 healthy" in status.out
    assert server.predict(alias="canary").json()["version"] == 2


def _metric_samples(server: Server, name: str) -> list:
    text = requests.get(server.metrics_url, timeout=30).text
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith(name)
    ]


def _requests_by_label(server: Server) -> Counter[tuple[str, ...]]:
    """``pomona_requests_total`` by replica, model, version and code."""
    return Counter(
        {
            tuple(s.labels[k] for k in ("replica", "model", "version", "code")): s.value
            for s in _metric_samples(server, "ray_pomona_requests_total")
        }
    )


def test_every_answered_request_is_counted_once_by_code(server: Server) -> None:
    """Early in the module, while the replica has refused nothing: every refusal it reports
    is one this test sent (series of Serve apps that ran earlier in the session are
    subtracted, and the answers of the tests before, all 200, are left out)."""
    before = _requests_by_label(server)
    good = server.images[0].read_bytes()
    png = {"Content-Type": "image/png"}
    predict = "/v1/models/digits/predict"
    sent = [
        ("post", predict + "?version=1", {"data": b"x", "headers": png}, ("digits", "1", "422")),
        (
            "post",
            "/v1/models/Digits/predict",
            {"data": good, "headers": png},
            ("unknown", "", "422"),
        ),
        (
            "post",
            "/v1/models/digits:abc/predict",
            {"data": good, "headers": png},
            ("digits", "", "422"),
        ),
        ("post", predict + "?top_k=0", {"data": good, "headers": png}, ("digits", "", "422")),
        ("post", predict + "?version=1&alias=canary", {"data": good}, ("digits", "", "422")),
        ("post", predict, {"data": b"\0" * 300_000, "headers": png}, ("digits", "", "413")),
        ("get", predict, {}, ("digits", "", "405")),
        ("get", "/v1/nothing", {}, ("", "", "404")),
        (
            "post",
            "/v2/models/digits/infer",
            {"data": b"{nope", "headers": {"Content-Type": "application/json"}},
            ("digits", "", "422"),
        ),
    ]
    for method, path, kwargs, labels in sent:
        response = requests.request(method, server.url + path, timeout=30, **kwargs)
        assert response.status_code == int(labels[2]), (path, response.text)
    expected = Counter(labels for *_, labels in sent)
    seen: list[Counter[tuple[str, ...]]] = []

    def refusals_counted() -> bool:
        grown = _requests_by_label(server)
        grown.subtract(before)
        seen.append(Counter({k[1:]: n for k, n in grown.items() if n > 0 and k[3] != "200"}))
        return seen[-1] == expected

    try:
        _wait_for(refusals_counted, f"pomona_requests_total to count {expected}")
    finally:
        print("last counted:", seen[-1:])


def test_http_predictions_equal_pomona_predict(server: Server, pomona) -> None:
    expected = _cli_predictions(pomona, server)
    for path, want in zip(server.images, expected, strict=True):
        response = server.predict(path, version=1, top_k=3)
        assert response.status_code == 200, response.text
        assert response.headers["Pomona-Model-Version"] == "1"
        body = response.json()
        assert (body["model"], body["version"]) == ("digits", 1)
        _assert_same(body["predictions"], want["predictions"])
    # The multipart, batch and Open Inference Protocol forms give the same answers.
    first, second = server.images[:2]
    single = requests.post(
        f"{server.url}/v1/models/digits:1/predict",
        params={"top_k": 3},
        files={"file": (first.name, first.read_bytes(), "image/png")},
        timeout=30,
    ).json()
    _assert_same(single["predictions"], expected[0]["predictions"])
    batch = requests.post(
        f"{server.url}/v1/models/digits@production/predict/batch",
        params={"top_k": 3},
        files=[("files", (p.name, p.read_bytes(), "image/png")) for p in (first, second)],
        timeout=30,
    ).json()
    assert [labels[0]["label"] for labels in batch["predictions"]] == [
        expected[0]["predictions"][0]["label"],
        expected[1]["predictions"][0]["label"],
    ]
    infer = requests.post(
        f"{server.url}/v2/models/digits/versions/1/infer",
        json={
            "id": "r1",
            "inputs": [
                {
                    "name": "image",
                    "shape": [2],
                    "datatype": "BYTES",
                    "data": [base64.b64encode(p.read_bytes()).decode() for p in (first, second)],
                }
            ],
        },
        timeout=30,
    )
    assert infer.status_code == 200, infer.text
    assert infer.json()["outputs"][1]["data"] == [
        expected[0]["predictions"][0]["label"],
        expected[1]["predictions"][0]["label"],
    ]
    explain = requests.post(
        f"{server.url}/v1/models/digits/explain",
        data=first.read_bytes(),
        headers={"Content-Type": "image/png"},
        timeout=30,
    )
    assert explain.status_code == 200
    assert explain.content.startswith(b"\x89PNG")
    assert requests.get(f"{server.url}/v2/health/ready", timeout=30).json() == {"ready": True}
    assert requests.get(f"{server.url}/v2", timeout=30).json()["name"] == "pomona"
    assert requests.get(f"{server.url}/docs", timeout=30).status_code == 200


def test_an_image_body_and_a_multipart_upload_get_the_same_answers(server: Server) -> None:
    """The body form is answered beside FastAPI (``_ImagePredict``), the multipart form by it."""
    image = server.images[0].read_bytes()
    for params in (
        {"version": 1, "top_k": 3},
        {"alias": "canary"},
        {"top_k": 0},
        {"version": "two", "top_k": 5000},
        {"alias": "beta"},
        {"version": 1, "alias": "production"},
    ):
        body = server.predict(**params)
        upload = requests.post(
            f"{server.url}/v1/models/digits/predict",
            params=params,
            files={"file": ("a.png", image, "image/png")},
            timeout=30,
        )
        assert (body.status_code, body.json()) == (upload.status_code, upload.json()), params
        assert body.headers.get("Pomona-Model-Version") == upload.headers.get(
            "Pomona-Model-Version"
        ), params
    assert server.predict(top_k=0).json()["error"]["message"] == (
        "query.top_k: Input should be greater than or equal to 1"
    )


def test_concurrent_requests_are_batched(server: Server, pomona) -> None:
    (replica,) = _replica_pids()
    result = pomona("serve", "batch", "digits", "--max-batch-size", "2", "--batch-wait-s", "0.2")
    assert result.code == 0, result.err
    # 2 images x 2 batches at once fit the 4 requests a replica takes: nothing else changes.
    assert result.out == "digits: batches of up to 2, 200 ms wait\n"
    try:
        with ThreadPoolExecutor(4) as pool:
            codes = [r.status_code for r in pool.map(lambda _: server.predict(), range(16))]
        assert codes == [200] * 16

        def batched() -> bool:
            samples = _metric_samples(server, "ray_pomona_batch_size")
            by_bound = {
                float(s.labels["le"]): s.value
                for s in samples
                if s.name == "ray_pomona_batch_size_bucket" and s.labels["version"] == "1"
            }
            return bool(by_bound) and by_bound[float("inf")] > by_bound[1.0]

        _wait_for(batched, "a batch larger than 1 in pomona_batch_size")
        # Ray's exporter puts its namespace in front of every application metric; each replica
        # reports on its own schedule.
        wanted = {
            "ray_pomona_requests_total",
            "ray_pomona_request_latency_seconds_bucket",
            "ray_pomona_model_latency_seconds_bucket",
            "ray_pomona_queue_depth",
        }
        _wait_for(
            lambda: wanted <= {s.name for s in _metric_samples(server, "ray_pomona_")},
            f"all of {sorted(wanted)}",
        )
        # Batches of 4 could not fill with 4 requests in the replica: it takes 8 from now on.
        result = pomona("serve", "batch", "digits", "--max-batch-size", "4")
        assert result.code == 0, result.err
        assert result.out == (
            "digits: batches of up to 4, 200 ms wait; each replica now works on up to 8 "
            "requests at once (was 4)\n"
        )
        assert control.state().max_ongoing_requests == 8
        assert "│ 4 / 200 ms" in pomona("serve", "status").out
        assert _replica_pids() == [replica]  # reconfigured, not restarted
    finally:
        routing = control.state().routing
        control.apply_routing(routing.with_batch("digits", BatchSettings()), max_ongoing_requests=4)


def test_canary_split_follows_the_weights(server: Server, pomona) -> None:
    result = pomona("serve", "traffic", "digits", "production=80", "canary=20")
    assert result.code == 0, result.err
    assert "digits: split production=80% canary=20%" in result.out
    try:
        versions = Counter(server.predict().json()["version"] for _ in range(300))
        assert set(versions) == {1, 2}
        assert versions[2] / 300 == pytest.approx(0.2, abs=0.07)
        # Pins bypass the split.
        assert {server.predict(alias="canary").json()["version"] for _ in range(5)} == {2}
    finally:
        assert pomona("serve", "traffic", "digits", "production=100").code == 0


def test_promote_under_load_fails_no_request(server: Server, pomona) -> None:
    with Load(server) as load:
        _wait_for(lambda: len(load.versions) > 10, "load before the promote")
        result = pomona("serve", "promote", "digits", "2")
        assert result.code == 0, result.err
        assert "digits: production 1 -> 2" in result.out
        _wait_for(lambda: load.versions[-5:] == [2] * 5, "version 2 answering")
    assert set(load.codes) == {200}, load.codes
    assert pomona("serve", "promote", "digits", "1").code == 0  # rollback
    assert server.predict().json()["version"] == 1
    status = pomona("serve", "status")
    assert "api 1/1 healthy" in status.out


def test_a_corrupted_version_is_not_promoted(server: Server, pomona) -> None:
    weights = server.registry / "digits" / "versions" / "2" / "model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[:-1] + b"!")
    try:
        result = pomona("serve", "promote", "digits", "2")
    finally:
        weights.write_bytes(original)
    assert result.code == 2
    # The last line: lines the replica logs meanwhile reach this test's stderr too.
    error = result.err.splitlines()[-1]
    assert error.startswith("error: digits:2 in "), result.err
    assert error.endswith("the file was modified or corrupted after registration")
    # Refused before the alias moved: the registry and the server are as they were.
    assert Registry(server.registry).aliases("digits")["production"] == 1
    assert server.predict().json()["version"] == 1


def _replica_pids() -> list[int]:
    import ray
    from ray.util.state import list_actors

    # This test's Ray, by address: another Ray on the machine must not make the lookup ambiguous.
    alive = list_actors(
        address=ray.get_runtime_context().gcs_address,
        filters=[("class_name", "=", "ServeReplica:pomona:api"), ("state", "=", "ALIVE")],
    )
    return [actor.pid for actor in alive]


def test_a_killed_replica_is_replaced_under_load(server: Server) -> None:
    (old,) = _replica_pids()
    with Load(server) as load:
        _wait_for(lambda: load.codes[200] > 10, "load before the kill")
        os.kill(old, signal.SIGKILL)
        _wait_for(lambda: _replica_pids() not in ([], [old]), "a new replica")
        before = load.codes[200]
        _wait_for(lambda: load.codes[200] > before + 10, "answers from the new replica")
    # Only requests in flight on the killed replica fail (Serve's proxy answers them 500);
    # the others wait in the proxy for the replacement.
    failed = sum(n for code, n in load.codes.items() if code != 200)
    assert failed <= load.clients, load.codes
    assert set(load.codes) <= {200, 500, 503}, load.codes
    assert old not in _replica_pids()


def test_overload_yields_503_with_retry_after_and_recovers(server: Server) -> None:
    # Slow batches hold the 4 ongoing + 4 queued slots while 40 clients arrive at once.
    control.apply_batch("digits", BatchSettings(max_batch_size=64, batch_wait_timeout_s=1.0))
    try:
        with ThreadPoolExecutor(40) as pool:
            responses = list(pool.map(lambda _: server.predict(), range(40)))
    finally:
        control.apply_batch("digits", BatchSettings())
    codes = Counter(r.status_code for r in responses)
    assert set(codes) == {200, 503}, codes
    assert codes[503] >= 20
    for response in responses:
        if response.status_code == 503:
            assert int(response.headers["Retry-After"]) >= 1
    assert [server.predict().status_code for _ in range(10)] == [200] * 10

    # Serve refuses them before pomona's code runs; its own request counter has them.
    def refusals_counted() -> bool:
        samples = _metric_samples(server, "ray_serve_num_http_requests_total")
        return sum(s.value for s in samples if s.labels.get("status_code") == "503") >= 20

    _wait_for(refusals_counted, "Serve's count of the 503 answers")


def _png_bomb() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (9000, 9000)).save(buffer, "PNG")  # 81 Mpixels, a few dozen KB
    return buffer.getvalue()


def test_bad_input_gets_4xx_json_while_good_input_keeps_working(server: Server) -> None:
    good = server.images[0].read_bytes()
    png = {"Content-Type": "image/png"}
    predict = "/v1/models/digits/predict"
    infer = "/v2/models/digits/infer"

    def tensor(**changes: object) -> dict:
        item = {"name": "image", "shape": [1, 16, 16, 1], "datatype": "UINT8", "data": [0] * 256}
        return {"inputs": [{**item, **changes}]}

    corpus = [
        ("empty body", "post", predict, {"data": b"", "headers": png}, 422),
        ("not an image", "post", predict, {"data": b"hello", "headers": png}, 422),
        ("truncated", "post", predict, {"data": good[: len(good) // 2], "headers": png}, 422),
        ("bomb", "post", predict, {"data": _png_bomb(), "headers": png}, 422),
        ("oversize", "post", predict, {"data": b"\0" * 300_000, "headers": png}, 413),
        (
            "text body",
            "post",
            predict,
            {"data": b"x", "headers": {"Content-Type": "text/plain"}},
            415,
        ),
        ("no file field", "post", predict, {"files": {"other": ("a.png", good)}}, 422),
        (
            "a bad part",
            "post",
            predict + "/batch",
            {"files": [("files", ("a.png", good)), ("files", ("notes.txt", b"hello"))]},
            422,
        ),
        ("unknown model", "post", "/v1/models/cats/predict", {"data": good, "headers": png}, 404),
        ("unknown version", "post", predict + "?version=9", {"data": good, "headers": png}, 404),
        ("unknown alias", "post", predict + "?alias=beta", {"data": good, "headers": png}, 404),
        ("version not int", "post", predict + "?version=two", {"data": good, "headers": png}, 422),
        (
            "bad reference",
            "post",
            "/v1/models/digits:x/predict",
            {"data": good, "headers": png},
            422,
        ),
        ("top_k 0", "post", predict + "?top_k=0", {"data": good, "headers": png}, 422),
        ("top_k huge", "post", predict + "?top_k=100000", {"data": good, "headers": png}, 422),
        (
            "malformed JSON",
            "post",
            infer,
            {"data": b"{nope", "headers": {"Content-Type": "application/json"}},
            422,
        ),
        ("wrong shape", "post", infer, {"json": tensor(shape=[1, 8, 8, 1], data=[0] * 64)}, 422),
        ("wrong dtype", "post", infer, {"json": tensor(datatype="INT64")}, 422),
        ("out of range", "post", infer, {"json": tensor(data=[300] * 256)}, 422),
        (
            "infer as text",
            "post",
            infer,
            {"data": b"{}", "headers": {"Content-Type": "text/plain"}},
            415,
        ),
        ("unknown v2 model", "get", "/v2/models/cats", {}, 404),
        ("version twice", "post", predict + "?version=1&alias=production", {"data": good}, 422),
        ("unknown route", "get", "/v1/nothing", {}, 404),
        ("wrong method", "get", predict, {}, 405),
        ("input name", "post", infer, {"json": tensor(name="input__0")}, 422),
        ("two file parts", "post", predict, {"files": [("file", good), ("file", good)]}, 422),
        ("no Content-Type", "post", predict, {"data": good}, 415),
        (
            "no boundary",
            "post",
            predict,
            {"data": good, "headers": {"Content-Type": "multipart/form-data"}},
            422,
        ),
    ]
    expected = server.predict(top_k=1).json()["predictions"][0]["label"]
    messages = {}
    for what, method, path, kwargs, code in corpus:
        response = requests.request(method, server.url + path, timeout=30, **kwargs)
        assert response.status_code == code, (what, response.text)
        error = response.json()["error"]
        if path.startswith("/v2/"):  # the Open Inference Protocol's shape
            assert isinstance(error, str) and error, what
            messages[what] = error
        else:
            assert error["code"] == code and error["message"], what
            messages[what] = error["message"]
        answer = server.predict(top_k=1)
        assert answer.status_code == 200, (what, answer.text)
        assert answer.json()["predictions"][0]["label"] == expected, what
    # The messages say what to do, also for what FastAPI itself refuses.
    assert (
        messages["malformed JSON"]
        == "body: malformed JSON at character 1: Expecting property name enclosed in double quotes"
    )
    assert (
        messages["version twice"]
        == "version=1 and alias=production each pin a version: give only one"
    )
    assert messages["a bad part"] == "files 2 of 2 'notes.txt': not an image (unrecognised format)"
    assert messages["unknown route"] == "GET /v1/nothing: Not Found; the routes are listed at /docs"
    assert messages["wrong method"] == f"GET {predict}: Method Not Allowed; use POST"
