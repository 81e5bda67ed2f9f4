"""One pomona training run for ``benchmarks/train.py``: a driver joined to the benchmark's Ray.

The run uses a private copy of ``platform/pomona/train/trainer.py`` written at run time (nothing in
``platform/`` changes), with at most two edits:

- always: before each epoch's timer starts, rank 0 waits for its turn (``epoch_gate.py``) and the
  workers meet at a barrier, so that runs alive at the same time train one at a time;
- ``--no-cache``: pomona as it was before the change recommended in ``RESULTS.md`` landed: the
  train and val splits are not cached in the object store, so every epoch re-lists and re-reads
  the Parquet files; stock pomona now reads them once.

The copy lives in ``--modules``, which the benchmark put on the ``PYTHONPATH`` of its Ray
instance so that Ray workers import the same file. The epochs' metrics rows are written to
``--result`` as JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))

TRAINER = ROOT / "platform/pomona/train/trainer.py"
GATE_PATCH = (
    """        started = time.perf_counter()
        batches = torch_batches(""",
    """        _bench_gate(epoch, context)
        started = time.perf_counter()
        batches = torch_batches(""",
)
NO_CACHE_PATCHES = [
    ('cache=_fits_in_object_store(manifest, "train")', "cache=False"),
    ('cache=_fits_in_object_store(manifest, "val")', "cache=False"),
]
ADDITIONS = """

_GATE_DIR = {gate!r}
_GATE_TAG = {tag!r}


def _bench_gate(epoch, context):
    from epoch_gate import wait_turn

    if context.get_world_rank() == 0:
        wait_turn(_GATE_DIR, _GATE_TAG, epoch)
    if dist.is_available() and dist.is_initialized():
        dist.barrier()

"""


def patched_trainer(modules: Path, name: str, tag: str, gate: str, no_cache: bool) -> ModuleType:
    """Write and import the private trainer copy for this run as module ``name``."""
    source = TRAINER.read_text()
    for old, new in [GATE_PATCH, *(NO_CACHE_PATCHES if no_cache else [])]:
        assert source.count(old) == 1, "pomona/train/trainer.py changed; update pomona_run.py"
        source = source.replace(old, new)
    path = modules / f"{name}.py"
    path.write_text(source + ADDITIONS.format(gate=gate, tag=tag))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="GCS address of the benchmark's Ray")
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--epochs", type=int, required=True, help="total, warm-up included")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cpus-per-worker", type=float, required=True)
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--gate", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--modules", required=True)
    parser.add_argument("--result", required=True)
    args = parser.parse_args()

    import ray

    from pomona.train.config import ModelConfig, TrainConfig

    name = f"pomona_trainer_{args.model}_{args.tag.replace('*', '_star')}"
    trainer = patched_trainer(Path(args.modules), name, args.tag, args.gate, args.no_cache)
    config = TrainConfig(
        data=args.data,
        out=args.out,
        model=ModelConfig(architecture=args.model),
        epochs=args.epochs,
        batch_size=64,
        num_workers=args.workers,
        threads_per_worker=args.threads,
        cpus_per_worker=args.cpus_per_worker,
    )
    ray.init(address=args.address, log_to_driver=False, configure_logging=False)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        rows = trainer.train(config)
    finally:
        ray.shutdown()
    Path(args.result).write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
