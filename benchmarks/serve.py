"""HTTP serving throughput and latency of pomona against the raw model and a plain FastAPI server.

Run from the repository root::

    apt-get install wrk   # once: the load generator
    PYTHONPATH=platform .venv/bin/python benchmarks/serve.py \\
        [--seconds 10] [--rounds 3] [--clients 16] [--models digits resnet]

For each model (the digits ``simple_cnn`` at 32x32x1, overhead-bound, and ``resnet18`` at
224x224x3, forward-bound; random weights, nothing downloaded), side by side in one run with the
same PNG bytes and the same number of concurrent clients:

a. raw: the model called in-process on pre-decoded pixels at its best batch size (1, 4, 8 or
   16), 2 torch threads: the ceiling; and two passes at once with one torch thread each, the
   cores used as pomona's replica uses them (``--concurrent-batches``). Every setup loads the
   model as ``pomona serve`` does (:func:`pomona.inference.load_for_inference`: channels-last,
   BatchNorms folded), so the ratios compare the servers, not the model preparation.
b. pomona: as ``pomona serve`` runs it (the same Serve config and direct ingress: one replica,
   2 torch threads, 2 forward passes at once, ``num_cpus=0``), batched with the max batch size
   the README advises for the model on 2 cores (``pomona serve --max-batch-size``: 16 for
   digits, 8 for resnet18, where raw runs 4-8 fastest) and a 5 ms wait; then the same at half
   of that throughput, sent open loop at a fixed rate (the p99/p50 goal); then unbatched (max
   1, the same replica reconfigured through ``user_config``).
c. fastapi: a hand-written FastAPI + torch server (uvicorn, one process, 2 torch threads) that
   decodes with the same :func:`pomona.inference.decode` and answers the same JSON; closed
   loop, then open loop at half its peak, the machine's own tail for comparison.

First ``pomona serve`` is started as a command (its own Ray included) and timed to its first
HTTP 200 on the first model. Then a, b and c are measured in ``--rounds`` rounds (3), each round
in the reverse order of the one before: this machine's speed drifts by a fifth from one minute
to the next, and setups measured minutes apart compared the drift. The table gives each setup's
median over the rounds and every round's req/s; each goal's ratio is printed round by round with
its median. Serve is deployed afresh for each round and shut down after it, so that the raw
model and the plain server never share the machine with an idle Serve app (0.07 of a core).
Both do share it with an idle Ray (another 0.07), as pomona does.

The closed-loop load comes from ``wrk`` (one thread, ``--clients`` connections on 127.0.0.1):
about 0.04 of a core at 1,500 req/s, where an asyncio client (aiohttp) took 0.23, a ninth of
this machine, from the servers it measured. Install it first (Debian and Ubuntu:
``apt-get install wrk``; macOS: ``brew install wrk``); tests never need it. The open-loop half
load, which wrk cannot pace, comes from aiohttp in this process, its garbage collector off
while it measures. Each load generator's CPU use is reported so that a starved server is
visible. Each closed-loop setup gets ``--seconds`` of unmeasured warm-up load first (a freshly
deployed replica ran resnet18 12-15% slower in its first seconds: 72.7 req/s, then 82-85), then
``--seconds`` of measured load; req/s, p50 and p99 are printed as a table. Ray (2 CPUs,
127.0.0.1) is started here and shut down at the end; everything is written to a temporary
directory that is removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import io
import json
import logging
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from pomona.cluster.runtime import connection_error, free_ports, use_local_ray_defaults
from pomona.data.manifest import Preprocessing
from pomona.inference import decode, load_for_inference, probabilities
from pomona.models import build_model, save_model
from pomona.models.card import ModelCard

# Before Ray is imported (only inside functions here): loopback only, no usage reporting,
# token authentication.
use_local_ray_defaults()

#: The environment before pomona's serving settings, for the plain FastAPI server.
_PLAIN_ENV: dict[str, str] = {}


class _Model(NamedTuple):
    architecture: str
    spec: Preprocessing
    max_batch_size: int  # pomona's, as the README advises for the model on 2 cores


#: One round's measurements: setup -> req/s, p50 ms, p99 ms, failed, client cpu.
_Round = dict[str, dict[str, float]]

MODELS = {
    "digits": _Model("simple_cnn", Preprocessing(height=32, width=32, channels=1), 16),
    "resnet": _Model("resnet18", Preprocessing(height=224, width=224, channels=3), 8),
}

#: wrk's script: POST the file $BODY as a PNG; at the end print one JSON line of results
#: (latencies in microseconds, errors by kind; "status" counts answers other than 2xx/3xx).
_WRK_SCRIPT = textwrap.dedent(
    """
    local file = assert(io.open(os.getenv("BODY"), "rb"))
    wrk.method = "POST"
    wrk.body = file:read("*a")
    file:close()
    wrk.headers["Content-Type"] = "image/png"

    function done(summary, latency, requests)
      local e = summary.errors
      io.write(string.format(
        '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "connect": %d, '
          .. '"read": %d, "write": %d, "status": %d, "timeout": %d}\\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        e.connect, e.read, e.write, e.status, e.timeout))
    end
    """
)

_FASTAPI_SERVER = textwrap.dedent(
    """
    import sys, torch, uvicorn
    from fastapi import FastAPI, Request
    from pomona.inference import decode, load_for_inference, predict_pixels

    torch.set_num_threads(2)
    model, card = load_for_inference(sys.argv[1], "cpu")
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request):
        pixels = decode(await request.body(), card.preprocessing)[None]
        (p,) = predict_pixels(model, card, pixels, 5)
        return {"predictions": [{"label": l, "score": s} for l, s in zip(p.labels, p.scores)]}

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
    """
)


def _png(spec: Preprocessing) -> bytes:
    rng = np.random.default_rng(0)
    shape = (spec.height, spec.width) if spec.channels == 1 else spec.image_shape
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """The load generator's garbage collector off while it measures: a full collection over
    thousands of request objects stalled every connection for 100-200 ms, which the
    latencies then charged to the server."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _stats(latencies: list[float], failures: int, cpu: float, wall: float) -> dict[str, float]:
    ordered = sorted(latencies) or [float("nan")]
    return {
        "req/s": len(latencies) / wall,
        "p50 ms": 1000 * statistics.median(ordered),
        "p99 ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "failed": failures,
        "client cpu": cpu / wall,
    }


def _load(url: str, body: bytes, clients: int, seconds: int) -> dict[str, float]:
    """Closed loop with wrk: ``clients`` connections, each sending its next request on an
    answer; ``seconds`` of warm-up, then ``seconds`` measured."""
    with tempfile.TemporaryDirectory() as tmp:
        script, body_file = Path(tmp) / "post.lua", Path(tmp) / "body"
        script.write_text(_WRK_SCRIPT)
        body_file.write_bytes(body)
        # wrk's own 2 s timeout would count the plain server's slowest resnet18 answers
        # (over 2 s, from a queue that is not first in, first out) as failures.
        command = ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "60s"]
        command += ["-s", str(script), url]
        env = {**os.environ, "BODY": str(body_file)}
        subprocess.run(command, env=env, check=True, capture_output=True)  # warm-up
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    wall = result["duration_us"] / 1e6
    failed = sum(result[kind] for kind in ("connect", "read", "write", "status", "timeout"))
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "req/s": (result["requests"] - result["status"]) / wall,
        "p50 ms": result["p50_us"] / 1000,
        "p99 ms": result["p99_us"] / 1000,
        "failed": failed,
        "client cpu": cpu / wall,
    }


async def _paced(
    url: str, body: bytes, rate: float, clients: int, seconds: float
) -> dict[str, float]:
    """Open loop: requests sent at ``rate`` per second whatever the answers; a latency runs from
    the request's scheduled time, so time spent waiting for a free connection counts.

    Each request is started when it is due (not all created up front, which kept the event loop
    busy past the first due times and charged that to the server), after one round of requests
    has opened the connections.
    """
    import aiohttp

    latencies: list[float] = []
    headers = {"Content-Type": "image/png"}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(at: float) -> bool:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                ok = response.status == 200
            if ok:
                latencies.append(time.perf_counter() - at)
            return ok

        await asyncio.gather(*(one(time.perf_counter()) for _ in range(clients)))
        latencies.clear()
        with _no_gc():
            cpu, wall = time.process_time(), time.perf_counter()
            requests = []
            for i in range(int(rate * seconds)):
                at = wall + i / rate
                await asyncio.sleep(max(0.0, at - time.perf_counter()))
                requests.append(asyncio.create_task(one(at)))
            failures = sum(not ok for ok in await asyncio.gather(*requests))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return _stats(latencies, failures, cpu, wall)


def _peak_and_half(
    url: str, body: bytes, clients: int, seconds: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Closed-loop peak, then open loop at half of it (where the p99/p50 goal is measured)."""
    peak = _load(url, body, clients, seconds)
    return peak, asyncio.run(_paced(url, body, peak["req/s"] / 2, clients, seconds))


#: Batch sizes tried for the raw model, which is measured at its best.
_BATCHES = (1, 4, 8, 16)


def _raw(model_dir: Path, body: bytes, seconds: float) -> _Round:
    """The model called in-process at its best batch size: one pass at a time with 2 torch
    threads (the issue's ceiling), and two passes at once with 1 torch thread each (the 2 cores
    used as pomona's replica uses them, without oversubscribing them)."""
    threads = torch.get_num_threads()
    model, card = load_for_inference(model_dir, "cpu")
    pixels = decode(body, card.preprocessing)
    rows = {}
    for callers, setup in ((1, "raw (in-process)"), (2, "raw, 2 passes at once")):
        torch.set_num_threads(2 // callers)
        best = {}
        for batch in _BATCHES:
            stack = np.repeat(pixels[None], batch, axis=0)
            probabilities(model, card.preprocessing, stack)
            start = time.perf_counter()
            deadline = start + seconds / 3
            if callers == 1:
                # On this thread, whose OpenMP team exists already: a second team (a pool
                # thread's) puts more threads than cores under libgomp, which then stops
                # spinning between ops, and digits ran 2.5x slower.
                done = _passes(model, card, stack, deadline)
            else:
                with ThreadPoolExecutor(callers) as pool:
                    done = sum(
                        pool.map(
                            functools.partial(_passes, model, card, stack), [deadline] * callers
                        )
                    )
            best[batch] = done / (time.perf_counter() - start)
        top = max(best, key=best.get)
        rows[setup] = {"req/s": best[top], "best batch": top}
    torch.set_num_threads(threads)
    return rows


def _passes(model: torch.nn.Module, card: ModelCard, stack: np.ndarray, deadline: float) -> int:
    """Images classified by forward passes over ``stack`` until ``deadline``."""
    done = 0
    while time.perf_counter() < deadline:
        probabilities(model, card.preprocessing, stack)
        done += len(stack)
    return done


@contextlib.contextmanager
def _fastapi(model_dir: Path) -> Iterator[str]:
    """The plain FastAPI server on ``model_dir``, started and stopped; yields its predict URL."""
    (port,) = free_ports(1)
    server = subprocess.Popen(
        [sys.executable, "-c", _FASTAPI_SERVER, str(model_dir), str(port)],
        # A plain server as its author would run it: none of pomona's serving environment.
        env={**_PLAIN_ENV, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        _wait_port(port)
        yield f"http://127.0.0.1:{port}/predict"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _fastapi_round(url: str, body: bytes, clients: int, seconds: int) -> _Round:
    peak, half = _peak_and_half(url, body, clients, seconds)
    return {"fastapi (uvicorn)": peak, "fastapi, half load": half}


def _wait_port(port: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if connection_error("127.0.0.1", port, timeout_s=1.0) is None:
            return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def _pomona_round(
    registry: str, name: str, body: bytes, clients: int, seconds: int, direct: int
) -> _Round:
    """Deploy ``name`` as ``pomona serve`` does, measure it batched and unbatched, shut Serve
    down: an idle Serve app costs this machine about 0.07 of a core (its controller, proxy and
    replica), which the plain server and the raw model must not pay."""
    from pomona.serving import control
    from pomona.serving.config import AppArgs, BatchSettings, ServeOptions
    from pomona.serving.plan import plan_routing, serve_config

    # As `pomona serve` runs it: the replica answers on `direct`, the proxy on a spare port.
    args = AppArgs(registry=registry, references=[name])
    (spare,) = free_ports(1, besides={direct})
    options = ServeOptions(port=spare, max_queued_requests=256)
    batch = BatchSettings(max_batch_size=MODELS[name].max_batch_size)
    control.deploy(serve_config(args, plan_routing(args, batch=batch), options))
    url = f"http://127.0.0.1:{direct}/v1/models/{name}/predict"
    try:
        peak, half = _peak_and_half(url, body, clients, seconds)
        results = {"pomona batched": peak, "pomona batched, half load": half}
        control.apply_batch(name, BatchSettings(max_batch_size=1, batch_wait_timeout_s=0.0))
        results["pomona unbatched"] = _load(url, body, clients, seconds)
    finally:
        control.shutdown()
    return results


def _first_answer(registry: str, name: str, body: bytes, timeout_s: float = 120.0) -> float:
    """Seconds from starting ``pomona serve NAME`` (its own Ray included) to its first HTTP 200."""
    import urllib.error
    import urllib.request

    port, metrics_port = free_ports(2)
    command = [sys.executable, "-c", "from pomona.cli import main; main()", "--registry"]
    command += [registry, "serve", name, "--port", str(port), "--metrics-port", str(metrics_port)]
    start = time.perf_counter()
    server = subprocess.Popen(
        command,
        env={**_PLAIN_ENV, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/models/{name}/predict",
        data=body,
        headers={"Content-Type": "image/png"},
    )
    try:
        while time.perf_counter() - start < timeout_s:
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        return time.perf_counter() - start
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"pomona serve {name} gave no answer in {timeout_s:g} s")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=120)


def _rounds(
    registry: str,
    name: str,
    body: bytes,
    options: argparse.Namespace,
    direct: int,
    plain: str,
    model_dir: Path,
) -> list[_Round]:
    """``options.rounds`` rounds of pomona, the plain server (at ``plain``) and the raw model,
    each round in the reverse order of the one before, so that all three meet the same spells
    of this machine's load: its speed drifted by a fifth from one minute to the next."""
    setups = [
        lambda: _pomona_round(registry, name, body, options.clients, options.seconds, direct),
        lambda: _fastapi_round(plain, body, options.clients, options.seconds),
        lambda: _raw(model_dir, body, options.seconds),
    ]
    rounds = []
    for index in range(options.rounds):
        row: _Round = {}
        for setup in setups if index % 2 == 0 else reversed(setups):
            row.update(setup())
        rounds.append(row)
    return rounds


def main() -> None:
    """Run every setup for every model and print one table per model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        parser.error(
            "the load generator, wrk, is not on PATH: install it first (Debian and Ubuntu: "
            "apt-get install wrk; macOS: brew install wrk)"
        )

    from pomona.serving.config import serving_env

    # Before Serve is imported, as `pomona serve` does for the Ray it starts.
    (direct,) = free_ports(1)
    _PLAIN_ENV.update(os.environ)
    os.environ.update(serving_env(direct))
    import ray

    from pomona.cluster.runtime import ensure_ray
    from pomona.registry import Registry

    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry(Path(tmp) / "registry")
        for name in options.models:
            model = MODELS[name]
            model_dir = Path(tmp) / name
            save_model(
                model_dir,
                build_model(model.architecture, 10, model.spec.channels).eval(),
                architecture=model.architecture,
                classes=[str(i) for i in range(10)],
                preprocessing=model.spec,
            )
            registry.register(model_dir, name)
        bodies = {name: _png(MODELS[name].spec) for name in options.models}
        first = options.models[0]
        seconds = _first_answer(registry.uri, first, bodies[first])
        print(f"pomona serve {first}: first HTTP 200 after {seconds:.1f} s (Ray start included)")
        ensure_ray(num_cpus=2)
        # As `pomona serve` does: Serve's logger does not propagate to "ray".
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        try:
            for name in options.models:
                model_dir = Path(tmp) / name
                with _fastapi(model_dir) as plain:
                    rounds = _rounds(
                        registry.uri, name, bodies[name], options, direct, plain, model_dir
                    )
                _print(name, rounds, options)
        finally:
            ray.shutdown()


def _print(name: str, rounds: list[_Round], options: argparse.Namespace) -> None:
    """One table per model (medians over the rounds, each round's req/s beside), then each
    goal's ratio round by round and its median."""
    load = os.getloadavg()[0]
    print(
        f"\n{name} ({options.clients} clients, {len(rounds)} rounds of {options.seconds:g} s, "
        f"load {load:.1f})"
    )
    print("| setup | req/s | each round | p50 ms | p99 ms | failed | client cpu |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for setup in rounds[0]:
        each = [one[setup] for one in rounds]
        if "best batch" in each[0]:
            batches = "/".join(f"{row['best batch']:.0f}" for row in each)
            measured = ["-", "-", "-", f"batch {batches}"]
        else:
            measured = [
                f"{_median(each, 'p50 ms'):.1f}",
                f"{_median(each, 'p99 ms'):.1f}",
                str(sum(row["failed"] for row in each)),
                f"{max(row['client cpu'] for row in each):.0%}",
            ]
        req_s = [f"{_median(each, 'req/s'):.1f}", " / ".join(f"{r['req/s']:.0f}" for r in each)]
        print(f"| {setup} | {' | '.join(req_s + measured)} |")

    def each_round(label: str, value: Callable[[_Round], float]) -> str:
        values = [value(row) for row in rounds]
        each = ", ".join(f"{one:.2f}" for one in values)
        return f"{label} {statistics.median(values):.2f} ({each})"

    def ratio(numerator: str, denominator: str) -> Callable[[_Round], float]:
        return lambda row: row[numerator]["req/s"] / row[denominator]["req/s"]

    def tail(setup: str) -> Callable[[_Round], float]:
        return lambda row: row[setup]["p99 ms"] / row[setup]["p50 ms"]

    print("Medians over the rounds, then each round:")
    print(
        each_round("pomona/raw", ratio("pomona batched", "raw (in-process)"))
        + "; "
        + each_round("of 2 passes at once", ratio("pomona batched", "raw, 2 passes at once"))
    )
    print(each_round("batched/unbatched", ratio("pomona batched", "pomona unbatched")))
    print(each_round("pomona/fastapi", ratio("pomona batched", "fastapi (uvicorn)")))
    print(
        each_round("p99/p50 at half load", tail("pomona batched, half load"))
        + "; "
        + each_round("fastapi", tail("fastapi, half load"))
    )


def _median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(row[key] for row in rows)


if __name__ == "__main__":
    main()
