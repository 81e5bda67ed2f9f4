"""Training throughput of pomona on Ray Train against plain torch, side by side on the same data.

Run from the repository root::

    .venv/bin/python benchmarks/train.py [--quick] [--investigate | --one-worker] [--models ...]

For each model (``simple_cnn``, ``resnet18``), on the same 64x64x3 Parquet dataset (the 1,797
digits written as 256x256 JPEGs and ingested), with global batch 64 and pomona's default SGD
settings (lr 0.05, momentum 0.9, weight decay 5e-4, cosine schedule), one warm-up epoch then
``--epochs`` measured epochs of the whole train split (1,259 rows):

a. ``torch_baseline.py``: one process, ``torch.set_num_threads(2)``, data preloaded as tensors;
b. ``torchrun --nproc-per-node 2 torch_baseline.py``: gloo DDP, 1 thread per process, each rank
   preloading its half of the split;
c. ``pomona.train.trainer.train``, 2 workers, samples/s from its metrics rows (epoch 1 excluded),
   run through ``pomona_run.py`` (a private copy of the trainer whose only edit is the epoch
   gate below, placed before the epoch timer starts);
c*. the same without the split cache (``--no-cache``): how pomona ran before the change
   recommended in ``RESULTS.md`` landed, re-reading the Parquet files every epoch.

Side by side means interleaved: all four runs of a model start together, and then train one
epoch at a time in turn (``epoch_gate.py``; the order reverses every round), so each epoch of
each method meets the same background load; the machine is shared and its load swings by 10x
within a minute, which made sequential runs meaningless. Ray Train workers run at nice 15 (Ray's
``worker_niceness``), so (a) and (b) run at nice 15 too (``--baseline-niceness``).

Ray runs once, a new local instance on 127.0.0.1 (never an existing cluster), started before
anything is timed and shut down at the end. It is given 4 logical CPUs so that two 2-worker
trainers (c, c*) can be alive at once; each of their workers reserves 0.5 CPU and runs 1 torch
thread, exactly what pomona's defaults give on a 2-CPU Ray, and 2 logical CPUs stay free for
Ray Data. Every subprocess runs in its own process group and is killed if it outlives its
timeout.

Other modes (each one run of at most ~5 minutes): ``--investigate`` runs (b), then
``train_probe.py``: per-variant timings inside one TorchTrainer run (Ray Data path, threads,
prefetch, DDP buckets), on a 2-CPU Ray. ``--one-worker`` interleaves (a) with (c1*): the
materialised copy on 1 worker with 2 torch threads, the other way to use both cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform as host
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "platform"))
sys.path.insert(0, str(HERE))

MODELS = ("simple_cnn", "resnet18")
VENV_BIN = Path(sys.executable).parent
RUN_TIMEOUT_S = 420
SETTLE_S = 1.0
LABELS = {
    "a": "(a) torch, 1 process x 2 threads, preloaded",
    "b": "(b) torchrun DDP gloo, 2 x 1 thread, preloaded halves",
    "c": "(c) pomona train, 2 Ray Train workers (as is)",
    "c*": "(c*) pomona train without the split cache (as before it landed)",
    "c1*": "(c1*) pomona train, 1 worker x 2 threads",
}
RATIOS = (
    ("c", "b", "goal >= 0.97"),
    ("c", "a", "goal >= 0.85"),
    ("b", "a", ""),
    ("c*", "b", ""),
    ("c*", "a", ""),
    ("c*", "c", ""),
    ("c1*", "a", ""),
)


def baseline_command(
    tag: str, dataset_dir: Path, model: str, epochs: int, niceness: int, work: Path
) -> list[str]:
    """(a) when ``tag == "a"`` (1 process, 2 threads), else (b) (torchrun, 2 x 1 thread)."""
    common = [
        str(HERE / "torch_baseline.py"),
        f"--data={dataset_dir}",
        f"--model={model}",
        f"--epochs={epochs}",
        f"--result={work / f'result-{tag}.json'}",
        f"--gate={work / 'gate'}",
        f"--tag={tag}",
    ]
    if tag == "a":
        command = [sys.executable, *common, "--threads=2"]
    else:
        from pomona.cluster.runtime import free_ports

        command = [
            str(VENV_BIN / "torchrun"),
            "--nproc-per-node=2",
            "--nnodes=1",
            "--master-addr=127.0.0.1",
            f"--master-port={free_ports(1)[0]}",
            *common,
            "--threads=1",
        ]
    return ["nice", "-n", str(niceness), *command] if niceness else command


def pomona_command(
    tag: str, dataset_dir: Path, model: str, epochs: int, address: str, work: Path
) -> list[str]:
    """(c), (c*) or (c1*) through ``pomona_run.py`` (see its docstring)."""
    command = [
        sys.executable,
        str(HERE / "pomona_run.py"),
        f"--address={address}",
        f"--data={dataset_dir}",
        f"--out={work / f'run-{model}-{tag}'}",
        f"--model={model}",
        f"--epochs={epochs}",
        f"--gate={work / 'gate'}",
        f"--tag={tag}",
        f"--modules={work / 'modules'}",
        f"--result={work / f'result-{tag}.json'}",
    ]
    if tag == "c1*":
        # pomona's own default on a 2-CPU Ray for 1 worker reserves 1 CPU; 2 threads asked for.
        return [*command, "--workers=1", "--threads=2", "--cpus-per-worker=1"]
    # What pomona's defaults give 2 workers on a 2-CPU Ray: 0.5 CPU and 1 torch thread each
    # (this Ray has 4 logical CPUs to hold two trainers, so the thread default is set here).
    command += ["--workers=2", "--cpus-per-worker=0.5", "--threads=1"]
    return [*command, "--no-cache"] if tag == "c*" else command


def run_interleaved(commands: dict[str, list[str]], epochs: int, work: Path) -> dict[str, Any]:
    """Start every command, then give each one epoch at a time; return their parsed results."""
    gate = work / "gate"
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs = {tag: open(work / f"log-{tag}.txt", "wb") for tag in commands}  # noqa: SIM115
    deadline = time.monotonic() + RUN_TIMEOUT_S

    def wait_for(tag: str, done: Any) -> None:
        while not done():
            if processes[tag].poll() is not None and not done():
                log = (work / f"log-{tag}.txt").read_text(errors="replace")[-4000:]
                raise RuntimeError(f"{tag} exited with {processes[tag].returncode}:\n{log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"benchmark runs exceeded {RUN_TIMEOUT_S}s")
            time.sleep(0.01)

    try:
        for tag, command in commands.items():
            thread_env = {**env, "OMP_NUM_THREADS": "2" if tag == "a" else "1"}
            # Own process group: a hung run is stopped with all of torchrun's children.
            processes[tag] = subprocess.Popen(
                command,
                env=thread_env,
                stdout=logs[tag],
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        for tag in commands:  # every start-up is over before the first timed epoch
            wait_for(tag, (gate / f"ready-{tag}-1").exists)
        order = list(commands)
        for epoch in range(1, epochs + 1):
            for tag in order if epoch % 2 else reversed(order):
                # Let background work of the previous turn (Ray Data's footer-reading actors of
                # the stock loader, checkpoint bookkeeping) die down before the next epoch.
                time.sleep(SETTLE_S)
                (gate / f"go-{tag}-{epoch}").touch()
                if epoch < epochs:
                    wait_for(tag, (gate / f"ready-{tag}-{epoch + 1}").exists)
                else:
                    wait_for(tag, lambda t=tag: processes[t].poll() == 0)
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for handle in logs.values():
            handle.close()
    return {tag: json.loads((work / f"result-{tag}.json").read_text()) for tag in commands}


def summarise(tag: str, raw: Any) -> dict[str, Any]:
    """Samples/s over the measured epochs (all but the first) and per epoch."""
    if tag in ("a", "b"):
        return {
            "samples_per_s": raw["samples_per_s"],
            "per_epoch": raw["per_epoch_samples_per_s"],
            "samples_per_epoch": raw["samples_per_epoch"],
        }
    measured = [r for r in raw if r["epoch"] > 1]
    samples = sum(r["samples_per_s"] * r["epoch_time_s"] for r in measured)
    return {
        "samples_per_s": samples / sum(r["epoch_time_s"] for r in measured),
        "per_epoch": [r["samples_per_s"] for r in raw],
        "samples_per_epoch": round(samples / len(measured)),
    }


def probe_variants(model: str) -> list[dict[str, Any]]:
    def variant(name: str, data: str = "stream", threads: int = 1, prefetch: int = 2, **ddp: Any):
        return {"name": name, "data": data, "threads": threads, "prefetch": prefetch, "ddp": ddp}

    variants = [
        variant("pomona as is (stream)"),
        variant("materialized", data="materialized"),
        variant("local tensors", data="local"),
    ]
    if model == "resnet18":
        variants.append(variant("local, bucket_cap_mb=100", data="local", bucket_cap_mb=100))
    else:
        variants += [
            variant("stream, 2 threads/worker", threads=2),
            variant("stream, prefetch_batches=0", prefetch=0),
            variant("materialized, prefetch_batches=0", data="materialized", prefetch=0),
        ]
    return variants


def prepare_dataset(work: Path, limit: int | None) -> Path:
    from pomona.data.demo import write_digits
    from pomona.data.ingest import IngestConfig, ingest
    from pomona.data.manifest import Preprocessing

    src, dataset_dir = work / "digits", work / "dataset"
    write_digits(src, size=256, image_format="jpeg", limit=limit)
    spec = Preprocessing(height=64, width=64, channels=3)
    ingest(IngestConfig(src=src, out=dataset_dir, preprocessing=spec))
    return dataset_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="900 images, 1 measured epoch")
    parser.add_argument("--epochs", type=int, default=None, help="measured epochs (default 2)")
    parser.add_argument("--models", nargs="+", default=None, choices=MODELS)
    parser.add_argument("--baseline-niceness", type=int, default=15, help="nice of (a) and (b)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--investigate", action="store_true", help="(b), then train_probe.py variants per model"
    )
    mode.add_argument(
        "--one-worker", action="store_true", help="(a) and (c1*) interleaved (resnet18 default)"
    )
    parser.add_argument("--probe-rounds", type=int, default=2)
    args = parser.parse_args(argv)
    epochs = args.epochs or (1 if args.quick else 2)
    models = args.models or (["resnet18"] if args.one_worker else list(MODELS))

    import ray
    import torch

    print(
        f"date {datetime.now(UTC):%Y-%m-%d %H:%M UTC}; {host.machine()}, {os.cpu_count()} cores, "
        f"CPU only; torch {torch.__version__}, ray {ray.__version__}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    results: dict[str, dict[str, Any]] = {}
    probes: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="pomona-bench-train-") as tmp:
        work = Path(tmp)
        dataset_dir = prepare_dataset(work, 900 if args.quick else None)
        (work / "modules").mkdir()
        # Ray workers inherit this: they import the trainer copies and epoch_gate from here.
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(work / "modules"), str(HERE), os.environ.get("PYTHONPATH")) if p
        )
        ray.init(
            address="local",
            num_cpus=2 if args.investigate else 4,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
        try:
            ray.data.DataContext.get_current().enable_progress_bars = False
            address = ray.get_runtime_context().gcs_address
            for model in models:
                run_dir = work / model
                (run_dir / "gate").mkdir(parents=True)
                (run_dir / "modules").symlink_to(work / "modules")
                total = epochs + 1
                nice = args.baseline_niceness
                if args.investigate:
                    tags = ["b"]
                elif args.one_worker:
                    tags = ["a", "c1*"]
                else:
                    tags = ["a", "b", "c", "c*"]
                commands = {
                    tag: baseline_command(tag, dataset_dir, model, total, nice, run_dir)
                    if tag in ("a", "b")
                    else pomona_command(tag, dataset_dir, model, total, address, run_dir)
                    for tag in tags
                }
                load = [os.getloadavg()[0]]
                started = time.perf_counter()
                raw = run_interleaved(commands, total, run_dir)
                load.append(os.getloadavg()[0])
                results[model] = {tag: summarise(tag, value) for tag, value in raw.items()}
                results[model]["load"] = load
                results[model]["wall_s"] = time.perf_counter() - started
                print(
                    f"{model}: "
                    + ", ".join(
                        f"{tag} {results[model][tag]['samples_per_s']:.0f}/s" for tag in tags
                    ),
                    flush=True,
                )
                if args.investigate:
                    from train_probe import run_probe

                    probes[model] = run_probe(
                        dataset_dir, model, probe_variants(model), args.probe_rounds, run_dir
                    )
        finally:
            ray.shutdown()

    report(results, probes, epochs)
    return 0


def report(
    results: dict[str, dict[str, Any]], probes: dict[str, dict[str, dict[str, float]]], epochs: int
) -> None:
    print(
        f"\n## training throughput (global batch 64, 1 warm-up + {epochs} measured epochs, "
        "epochs interleaved across methods)"
    )
    print("| model | method | samples/epoch | samples/s | per epoch, warm-up first |")
    print("|---|---|---:|---:|---|")
    for model, row in results.items():
        for key, label in LABELS.items():
            if key in row:
                r = row[key]
                per_epoch = ", ".join(f"{v:.0f}" for v in r["per_epoch"])
                print(
                    f"| {model} | {label} | {r['samples_per_epoch']} | "
                    f"{r['samples_per_s']:.0f} | {per_epoch} |"
                )
    print()
    for model, row in results.items():
        ratios = [
            f"{top}/{bottom} = {row[top]['samples_per_s'] / row[bottom]['samples_per_s']:.2f}"
            + (f" ({goal})" if goal else "")
            for top, bottom, goal in RATIOS
            if top in row and bottom in row
        ]
        load = " -> ".join(f"{v:.1f}" for v in row["load"])
        print(f"{model}: " + "; ".join(ratios) + f"; load average {load}; {row['wall_s']:.0f} s")
    for model, variants in probes.items():
        print(f"\n## probe: {model}, one TorchTrainer run, variants round-robin (rank 0)")
        print("| variant | samples/s | epoch s | waiting for data s/epoch | first batch s |")
        print("|---|---:|---:|---:|---:|")
        for name, v in variants.items():
            print(
                f"| {name} | {v['samples_per_s']:.0f} | {v['epoch_s']:.2f} | "
                f"{v['data_wait_s']:.2f} | {v['first_batch_s']:.2f} |"
            )


if __name__ == "__main__":
    raise SystemExit(main())
