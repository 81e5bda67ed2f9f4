"""Ray Train end to end: accuracy, 1 vs 2 workers, fault tolerance, resume, transfer learning,
the head kept or replaced, the best epoch between checkpoints, listeners on loopback only."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from PIL import Image
from support.processes import train_worker_pids

from pomona.cluster import runtime
from pomona.data.demo import write_digits
from pomona.data.ingest import IngestConfig, ingest
from pomona.data.manifest import Preprocessing
from pomona.errors import ConfigError
from pomona.location import as_location
from pomona.models.artifact import read_card
from pomona.models.weights import load_state_dict_file
from pomona.train.config import TrainConfig
from pomona.train.run_dir import checkpointed_epoch, read_metrics
from pomona.train.trainer import train

pytestmark = pytest.mark.ray

SPEC = Preprocessing(height=16, width=16, channels=1)


def ingest_folder(src: Path, out: Path, keep: set[str] | None = None) -> Path:
    if keep is not None:
        for folder in src.iterdir():
            if folder.name not in keep:
                shutil.rmtree(folder)
    ingest(IngestConfig(src=src, out=out, preprocessing=SPEC, workers=1, seed=0))
    return out


@pytest.fixture(scope="module")
def all_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("all-digits")
    write_digits(root / "images", size=16)
    return ingest_folder(root / "images", root / "dataset")


def config(data: Path, out: Path, **updates: object) -> TrainConfig:
    base = {
        "data": str(data),
        "out": str(out),
        "epochs": 6,
        "batch_size": 32,
        "learning_rate": 0.1,
        "num_workers": 2,
        "seed": 0,
    }
    return TrainConfig.model_validate({**base, **updates})


def _listeners(pids: list[int]) -> set[tuple[int, str, int]]:
    found = set()
    for pid in pids:
        try:
            for connection in psutil.Process(pid).net_connections(kind="inet"):
                if connection.status == psutil.CONN_LISTEN:
                    found.add((pid, connection.laddr.ip, connection.laddr.port))
        except psutil.Error:
            continue
    return found


@contextmanager
def _listeners_of_train_workers() -> Iterator[set[tuple[int, str, int]]]:
    """The (pid, address, port) listening sockets of Ray Train's workers while the block runs."""
    listeners: set[tuple[int, str, int]] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.2):
            listeners.update(_listeners(train_worker_pids()))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield listeners
    finally:
        done.set()
        watcher.join()


def test_two_workers_reach_95_percent_like_one_worker_and_listen_on_loopback_only(
    ray_session: None, all_digits: Path, tmp_path: Path
) -> None:
    with _listeners_of_train_workers() as listeners:
        two = train(config(all_digits, tmp_path / "two"))
    # Two workers: at least rank 0's rendezvous store and each worker's gloo pair listen.
    assert len({pid for pid, _, _ in listeners}) == 2, listeners
    wildcard = {entry for entry in listeners if entry[1] in ("0.0.0.0", "::")}
    assert not wildcard, f"listening on all interfaces: {wildcard}"
    assert [int(r["epoch"]) for r in two] == [1, 2, 3, 4, 5, 6]
    assert two[-1]["val_error"] <= 0.05
    for name in ("model.safetensors", "model.json", "curves.png", "metrics.csv", "config.yaml"):
        assert (tmp_path / "two" / name).is_file()

    one = train(config(all_digits, tmp_path / "one", num_workers=1))
    # Same global batch: the curves agree up to data order and per-worker BatchNorm statistics.
    # Measured here: train loss 1.148 vs 1.149 after epoch 1, at most 0.062 apart later, and
    # once 0.110 apart (epoch losses start near 2.3).
    for a, b in zip(one, two, strict=True):
        assert abs(a["train_loss"] - b["train_loss"]) <= 0.15
    assert abs(one[-1]["val_error"] - two[-1]["val_error"]) <= 0.03


def test_the_same_seed_repeats_a_run_exactly(
    ray_session: None, digits_dataset: Path, tmp_path: Path
) -> None:
    augment = {"random_crop_padding": 2, "hflip": True}
    runs = {
        name: config(digits_dataset, tmp_path / name, epochs=2, seed=seed, augment=augment)
        for name, seed in (("first", 0), ("again", 0), ("other", 1))
    }
    rows = {name: train(cfg) for name, cfg in runs.items()}

    def losses(name: str) -> list[tuple[float, ...]]:
        return [(r["train_loss"], r["val_loss"], r["val_error"]) for r in rows[name]]

    # Data order, shuffle, crops and flips all follow the seed, on both workers.
    assert losses("again") == losses("first")
    weights = {name: load_state_dict_file(tmp_path / name / "model.safetensors") for name in runs}
    assert all(torch.equal(weights["first"][k], weights["again"][k]) for k in weights["first"])
    assert losses("other") != losses("first")


def test_killed_worker_is_replaced_and_resumes_from_checkpoint(
    ray_session: None, digits_dataset: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    cfg = config(digits_dataset, run, epochs=5, learning_rate=0.05)
    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.setdefault("rows", train(cfg)))
    thread.start()
    deadline = time.monotonic() + 240
    while not read_metrics(run) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert read_metrics(run), "training produced no epoch in time"
    pids = train_worker_pids()
    assert len(pids) == 2
    os.kill(pids[-1], signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive()

    rows = read_metrics(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]  # none lost, none duplicated
    attempts = [int(r["attempt"]) for r in rows]
    assert attempts[0] == 1 and attempts[-1] == 2  # one restart happened
    restarted_at = attempts.index(2) + 1
    assert restarted_at >= 2  # resumed from a checkpoint, not from scratch
    assert result["rows"] == rows


def test_resume_continues_an_existing_run(
    ray_session: None, digits_dataset: Path, tmp_path: Path, pomona, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    train(config(digits_dataset, run, epochs=2, num_workers=1))
    with pytest.raises(ConfigError, match="--resume"):
        train(config(digits_dataset, run, epochs=2, num_workers=1))
    rows = train(config(digits_dataset, run, epochs=3, num_workers=1), resume=True)
    assert [(int(r["epoch"]), int(r["attempt"])) for r in rows] == [(1, 1), (2, 1), (3, 2)]
    with pytest.raises(ConfigError, match="cannot resume"):
        train(config(digits_dataset, tmp_path / "never", num_workers=1), resume=True)

    # Checkpointed to its last epoch: the CLI says so, and does not start Ray for nothing.
    assert checkpointed_epoch(as_location(run)) == 3
    assert checkpointed_epoch(as_location(tmp_path / "never")) == 0
    monkeypatch.setattr(runtime, "ensure_ray", lambda *_a, **_k: pytest.fail("Ray was started"))
    for epochs in ("3", "2"):
        result = pomona("train", "--resume", run, "--epochs", epochs)
        assert result.code == 0, result.err
        assert result.out.startswith(
            f"{run} has trained 3 epochs (--epochs {epochs}): nothing to resume. Train it "
            f"further with --resume {run} --epochs N, N over 3.\n"
        )
        assert result.err == ""  # nothing from Ray's checkpoint manager either


@pytest.fixture(scope="module")
def low_high(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Digits 0-4 and 5-9 as two datasets, and a run pretrained on 0-4."""
    root = tmp_path_factory.mktemp("transfer")
    write_digits(root / "low", size=16)
    write_digits(root / "high", size=16)
    low = ingest_folder(root / "low", root / "ds-low", keep={"0", "1", "2", "3", "4"})
    high = ingest_folder(root / "high", root / "ds-high", keep={"5", "6", "7", "8", "9"})
    train(config(low, root / "pretrain", epochs=4, num_workers=1))
    return low, high, root / "pretrain"


def test_pretrained_features_beat_random_ones(
    ray_session: None, low_high: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, high, pretrain = low_high
    # A linear probe (backbone frozen) on pretrained features against one on random features,
    # after one epoch. Measured here with BatchNorm statistics recalibrated before validation
    # (seeds 1 and 2, scratch/tuned): val loss 1.22/0.85 and 1.26/0.84, val error 0.37/0.34 and
    # 0.51/0.30. Fine-tuning every layer is no test of transfer on this data: from scratch the
    # network reaches 94-98% on digits 5-9 within the same epoch, and the two were within noise
    # (val loss 0.32/0.39, 0.32/0.34 at rate 0.02; 0.13/0.13, 0.15/0.12 at 0.05).
    budget = {
        "epochs": 1,
        "num_workers": 1,
        "batch_size": 16,
        "seed": 1,
        "learning_rate": 0.05,
        "schedule": {"name": "constant"},
    }
    frozen = {"freeze_backbone": True}
    scratch = train(config(high, tmp_path / "scratch", model=frozen, **budget))
    weights = {"weights": str(pretrain), **frozen}
    tuned = train(config(high, tmp_path / "tuned", model=weights, **budget))
    assert tuned[-1]["val_loss"] < scratch[-1]["val_loss"] - 0.1


def _parameters(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # BatchNorm's running statistics and step counts move in train mode whatever the rate.
    return {
        k: v
        for k, v in state.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    }


def test_fine_tuning_for_other_classes_starts_a_new_head(
    ray_session: None, low_high: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    low, high, pretrain = low_high
    source = _parameters(load_state_dict_file(pretrain))
    # A learning rate near zero leaves every trained parameter where it started, so what the
    # run started from shows through: the same five-class shape, but digits 5-9 are not 0-4.
    still = {
        "epochs": 1,
        "num_workers": 1,
        "learning_rate": 1e-7,
        "weight_decay": 0,
        "schedule": {"name": "constant"},
    }
    for dataset, name, head in ((high, "other-classes", "new"), (low, "same-classes", "kept")):
        run = tmp_path / name
        train(config(dataset, run, model={"weights": str(pretrain)}, **still))
        card = read_card(run)
        assert card.initial_weights is not None
        assert (card.initial_weights.source, card.initial_weights.head) == (str(pretrain), head)
        tuned = _parameters(load_state_dict_file(run))
        for key, value in source.items():
            if key.startswith("fc.") and head == "new":
                assert not torch.allclose(tuned[key], value, atol=1e-3), key
            else:
                torch.testing.assert_close(tuned[key], value, atol=1e-4, rtol=0, msg=key)


@pytest.fixture(scope="module")
def dark_light(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Dark and light noise images (trivially separable), and a run that already separates them."""
    root = tmp_path_factory.mktemp("dark-light")
    rng = np.random.default_rng(0)
    for label, (low, high) in {"dark": (0, 60), "light": (190, 256)}.items():
        (root / "images" / label).mkdir(parents=True)
        for i in range(60):
            pixels = rng.integers(low, high, size=(16, 16), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(root / "images" / label / f"{i:03d}.png")
    dataset = ingest_folder(root / "images", root / "dataset")
    train(config(dataset, root / "pretrain", epochs=3, num_workers=1))
    return dataset, root / "pretrain"


def test_the_best_epoch_between_checkpoints_is_published(
    ray_session: None, dark_light: tuple[Path, Path], tmp_path: Path
) -> None:
    dataset, pretrain = dark_light
    run = tmp_path / "run"
    # Only the last epoch is checkpointed. Training continues a model that already separates
    # the two classes, so every epoch reaches the floor of zero validation error, the first
    # epoch is the best (a tie keeps the earlier epoch) and the weights move on after it.
    rows = train(
        config(
            dataset,
            run,
            epochs=4,
            num_workers=1,
            schedule={"name": "constant"},
            checkpoint={"frequency": 4},
            model={"weights": str(pretrain)},
        )
    )
    assert [r["val_error"] for r in rows] == [0, 0, 0, 0], f"precondition: {rows}"
    card = read_card(run)
    assert card.metrics["epoch"] == 1
    # metrics.csv keeps six significant digits.
    assert card.metrics["val_loss"] == pytest.approx(rows[0]["val_loss"], rel=1e-5)
    checkpoints = sorted(p.name for p in (run / "checkpoints").glob("epoch-*"))
    assert checkpoints == ["epoch-0004"]
    last = _parameters(load_state_dict_file(run / "checkpoints" / "epoch-0004"))
    published = _parameters(load_state_dict_file(run))
    assert any(not torch.equal(published[k], last[k]) for k in last), "the last epoch was published"
