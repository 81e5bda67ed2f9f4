"""Forward-pass throughput of a loaded model in NCHW (contiguous) against channels-last layout.

Run from the repository root::

    PYTHONPATH=platform .venv/bin/python benchmarks/inference_layout.py [--seconds 3]

:func:`pomona.models.load_model` returns models in the channels-last layout, and
:func:`pomona.inference.probabilities` feeds them channels-last input (every inference path:
``pomona serve``, ``predict``, ``explain``, ``evaluate``). This measures what that is worth, for
the digits ``simple_cnn`` at 32x32x1 and ``resnet18`` at 224x224x3 (random weights), at batch
sizes 1, 8 and 16, 2 torch threads: the same model and the same input in both layouts, each
layout run in turn within one repetition, several repetitions alternated, and checks that both
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

MODELS = {
    "digits simple_cnn 32x32x1": ("simple_cnn", Preprocessing(height=32, width=32, channels=1)),
    "resnet18 224x224x3": ("resnet18", Preprocessing(height=224, width=224, channels=3)),
}
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def _images_per_s(model: torch.nn.Module, inputs: torch.Tensor, seconds: float) -> float:
    with torch.inference_mode():
        model(inputs)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            model(inputs)
            done += len(inputs)
    return done / (time.perf_counter() - start)


def main() -> None:
    """Print images/s per model, batch size and layout, and the channels-last / NCHW ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    print("| model | batch | NCHW images/s | channels-last images/s | ratio | max prob diff |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (architecture, spec) in MODELS.items():
        reference = build_model(architecture, 10, spec.channels).eval()
        models = {
            layout: build_model(architecture, 10, spec.channels).eval().to(memory_format=form)
            for layout, form in LAYOUTS.items()
        }
        for model in models.values():
            model.load_state_dict(reference.state_dict())
        for batch in (1, 8, 16):
            pixels = torch.randint(0, 256, (batch, *spec.image_shape), dtype=torch.uint8)
            inputs = {
                layout: to_model_input(pixels, spec, form) for layout, form in LAYOUTS.items()
            }
            with torch.inference_mode():
                probs = [torch.softmax(models[k](inputs[k]), dim=1) for k in LAYOUTS]
            difference = (probs[0] - probs[1]).abs().max().item()
            rates: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
            for _ in range(options.repeats):
                for layout in LAYOUTS:
                    rates[layout].append(
                        _images_per_s(models[layout], inputs[layout], options.seconds)
                    )
            nchw, last = (statistics.median(rates[k]) for k in LAYOUTS)
            print(
                f"| {name} | {batch} | {nchw:.0f} | {last:.0f} | {last / nchw:.2f}x "
                f"| {difference:.1e} |"
            )


if __name__ == "__main__":
    main()
