"""Forward-pass throughput of a loaded model: NCHW, channels-last, and BatchNorms folded.

Run from the repository root::

    PYTHONPATH=platform .venv/bin/python benchmarks/inference_layout.py [--seconds 3]

:func:`pomona.models.load_model` returns models in the channels-last layout, and
:func:`pomona.inference.probabilities` feeds them channels-last input; every path that answers
(``pomona serve``, ``predict``, ``explain``, ``evaluate``) loads through
:func:`pomona.inference.load_for_inference`, which also folds each BatchNorm into its
convolution. This measures what each step is worth, for the digits ``simple_cnn`` at 32x32x1
and ``resnet18`` at 224x224x3 (random weights, BatchNorm statistics as after training), at batch
sizes 1, 8 and 16, 2 torch threads: the same weights and the same input in each variant, the
variants run in turn within one repetition, several repetitions alternated, and checks that all
give the same probabilities.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pomona.data.manifest import Preprocessing
from pomona.data.tensors import to_model_input
from pomona.models import build_model
from pomona.models.fusion import fold_batch_norms

MODELS = {
    "digits simple_cnn 32x32x1": ("simple_cnn", Preprocessing(height=32, width=32, channels=1)),
    "resnet18 224x224x3": ("resnet18", Preprocessing(height=224, width=224, channels=3)),
}
#: Each variant: its memory layout, and whether its BatchNorms are folded.
VARIANTS = {
    "nchw": (torch.contiguous_format, False),
    "channels_last": (torch.channels_last, False),
    "folded": (torch.channels_last, True),
}


def _images_per_s(model: torch.nn.Module, inputs: torch.Tensor, seconds: float) -> float:
    with torch.inference_mode():
        model(inputs)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            model(inputs)
            done += len(inputs)
    return done / (time.perf_counter() - start)


def _variant(architecture: str, spec: Preprocessing, state: dict, variant: str) -> torch.nn.Module:
    layout, fold = VARIANTS[variant]
    model = build_model(architecture, 10, spec.channels)
    model.load_state_dict(state)
    model = model.eval().to(memory_format=layout)
    if fold:
        fold_batch_norms(model)
    return model


def main() -> None:
    """Print images/s per model, batch size and variant, and each variant's ratio to NCHW."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    print(
        "| model | batch | NCHW images/s | channels-last images/s | folded images/s "
        "| channels-last / NCHW | folded / NCHW | max prob diff |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, (architecture, spec) in MODELS.items():
        reference = build_model(architecture, 10, spec.channels)
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):  # statistics as after training
                module.running_mean.uniform_(-1.0, 1.0)
                module.running_var.uniform_(0.5, 2.0)
        models = {k: _variant(architecture, spec, reference.state_dict(), k) for k in VARIANTS}
        for batch in (1, 8, 16):
            pixels = torch.randint(0, 256, (batch, *spec.image_shape), dtype=torch.uint8)
            inputs = {k: to_model_input(pixels, spec, VARIANTS[k][0]) for k in VARIANTS}
            with torch.inference_mode():
                probs = [torch.softmax(models[k](inputs[k]), dim=1) for k in VARIANTS]
            difference = max((p - probs[0]).abs().max().item() for p in probs[1:])
            rates: dict[str, list[float]] = {k: [] for k in VARIANTS}
            for _ in range(options.repeats):
                for k in VARIANTS:
                    rates[k].append(_images_per_s(models[k], inputs[k], options.seconds))
            nchw, last, folded = (statistics.median(rates[k]) for k in VARIANTS)
            print(
                f"| {name} | {batch} | {nchw:.0f} | {last:.0f} | {folded:.0f} "
                f"| {last / nchw:.2f}x | {folded / nchw:.2f}x | {difference:.1e} |"
            )


if __name__ == "__main__":
    main()
