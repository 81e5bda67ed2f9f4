"""Folding BatchNorms into convolutions: same outputs, same module paths, fewer passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pomona.evaluate.gradcam import grad_cam
from pomona.models import ARCHITECTURES, build_model, get_spec, target_layer
from pomona.models.fusion import fold_batch_norms


def _with_trained_statistics(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine parameters, as after training."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            for tensor, low, high in (
                (module.running_mean, -1.0, 1.0),
                (module.running_var, 0.5, 2.0),
                (module.weight.data, 0.5, 1.5),
                (module.bias.data, -0.5, 0.5),
            ):
                tensor.copy_(torch.empty_like(tensor).uniform_(low, high, generator=generator))
    return model.eval().to(memory_format=torch.channels_last)


def _count(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(module, kind) for module in model.modules())


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_every_architecture_folds_all_its_batch_norms_and_answers_the_same(
    architecture: str,
) -> None:
    model = _with_trained_statistics(build_model(architecture, num_classes=5, in_channels=3))
    norms = _count(model, nn.BatchNorm2d)
    x = torch.randn(2, 3, 40, 40).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        before = model(x)

    assert fold_batch_norms(model) == norms > 0

    assert _count(model, nn.BatchNorm2d) == 0
    with torch.inference_mode():
        after = model(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    # The module tree keeps its paths: the Grad-CAM layer and the head are where the spec says.
    spec = get_spec(architecture)
    model.get_submodule(spec.target_layer)
    assert isinstance(model.get_submodule(spec.head), nn.Linear)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)


def test_grad_cam_sees_the_same_heatmap_after_folding() -> None:
    model = _with_trained_statistics(build_model("simple_cnn", num_classes=3, in_channels=1))
    x = torch.randn(2, 1, 16, 16).to(memory_format=torch.channels_last)
    classes = torch.tensor([0, 2])
    before = grad_cam(model, target_layer(model, "simple_cnn"), x, classes)

    fold_batch_norms(model)

    after = grad_cam(model, target_layer(model, "simple_cnn"), x, classes)
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-5)


class _Unfoldable(nn.Module):
    """Nothing here may fold: a conv whose output also feeds a shortcut, a BatchNorm after a
    ReLU, and a conv called twice (shared weights) with a BatchNorm after one of its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.norm = nn.BatchNorm2d(2)
        self.relu = nn.ReLU()
        self.late = nn.BatchNorm2d(2)
        self.shared = nn.Conv2d(2, 2, 1)
        self.after_shared = nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        y = self.late(self.relu(self.norm(y) + y))
        return self.after_shared(self.shared(y)) + self.shared(x)


def test_only_a_batch_norm_that_alone_reads_a_conv_called_once_is_folded() -> None:
    model = _with_trained_statistics(_Unfoldable())
    x = torch.randn(1, 2, 5, 5)
    with torch.inference_mode():
        before = model(x)

    assert fold_batch_norms(model) == 0

    assert _count(model, nn.BatchNorm2d) == 3
    with torch.inference_mode():
        torch.testing.assert_close(model(x), before)


def test_a_model_in_training_mode_is_refused() -> None:
    model = build_model("simple_cnn", num_classes=2, in_channels=1)
    with pytest.raises(ValueError, match=r"eval mode; call model.eval\(\) first"):
        fold_batch_norms(model)
    assert _count(model, nn.BatchNorm2d) == 3
