"""Grad-CAM finds the evidence a trained model uses, and leaves the model as it found it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pomona.evaluate.gradcam import grad_cam, overlay

PATCH = 6


class TinyCNN(nn.Module):
    def __init__(self, channels: int = 1, classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 8, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            # In place on purpose: Grad-CAM must cope with it, as with torchvision's ResNets.
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(16, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def corner_patch_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images; class 1 has a bright square somewhere in the top-left quadrant."""
    images = torch.rand(n, 1, 32, 32, generator=generator) * 0.6
    labels = torch.randint(0, 2, (n,), generator=generator)
    corners = torch.randint(1, 16 - PATCH, (n, 2), generator=generator)
    for i in torch.nonzero(labels).flatten().tolist():
        row, col = corners[i].tolist()
        images[i, 0, row : row + PATCH, col : col + PATCH] = 1.0
    return images, labels


def test_heatmap_lands_on_the_evidence() -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = TinyCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    train_x, train_y = corner_patch_data(512, generator)
    model.train()
    for _ in range(120):
        batch = torch.randint(0, len(train_x), (64,), generator=generator)
        loss = nn.functional.cross_entropy(model(train_x[batch]), train_y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    test_x, test_y = corner_patch_data(128, generator)
    model.eval()
    with torch.no_grad():
        accuracy = (model(test_x).argmax(dim=1) == test_y).float().mean().item()
    assert accuracy > 0.95

    maps = grad_cam(model, model.features[3], test_x[test_y == 1])
    share = maps[:, :16, :16].sum(axis=(1, 2)) / maps.sum(axis=(1, 2))
    # A map spread evenly would put 25% of its mass in each quadrant.
    assert share.mean() > 0.75
    assert share.min() > 0.5


def test_maps_shape_range_and_predicted_class_default() -> None:
    torch.manual_seed(1)
    model = TinyCNN(channels=3, classes=4)
    images = torch.randn(5, 3, 20, 24)
    maps = grad_cam(model, model.features[3], images)
    assert maps.shape == (5, 20, 24)
    assert maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1
    assert np.allclose(maps.max(axis=(1, 2))[maps.max(axis=(1, 2)) > 0], 1)

    with torch.no_grad():
        predicted = model.eval()(images).argmax(dim=1)
    np.testing.assert_allclose(
        maps, grad_cam(model, model.features[3], images, predicted), atol=1e-6
    )
    other = (predicted + 1) % 4
    assert not np.allclose(maps, grad_cam(model, model.features[3], images, other))


def test_model_is_left_as_found() -> None:
    model = TinyCNN()
    model.train()
    model.features[4].eval()  # a frozen BatchNorm inside a training model must stay frozen
    model.features[0].requires_grad_(False)
    modes = {name: m.training for name, m in model.named_modules()}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    layer = model.features[4]  # its output is then overwritten by the in-place ReLU

    with torch.inference_mode():
        images = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        maps = grad_cam(model, layer, images)

    assert maps.shape == (3, 16, 16)
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(p.grad is None for p in model.parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(p, before[name])
    assert not layer._forward_hooks


def test_hooks_removed_when_it_fails() -> None:
    model = TinyCNN()
    layer = model.head[3]  # a Linear: output is not a feature map
    with pytest.raises(ValueError, match=r"\(N, K, h, w\)"):
        grad_cam(model, layer, torch.rand(2, 1, 16, 16))
    assert not layer._forward_hooks
    assert model.training


def test_argument_errors() -> None:
    model = TinyCNN()
    images = torch.rand(2, 1, 16, 16)
    with pytest.raises(ValueError, match="did not run"):
        grad_cam(model, nn.Conv2d(1, 1, 1), images)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        grad_cam(model, model.features[3], images, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="2 entries"):
        grad_cam(model, model.features[3], images, torch.tensor([0]))
    with pytest.raises(ValueError, match="N, C, H, W"):
        grad_cam(model, model.features[3], images[0])


def test_overlay() -> None:
    gray = np.full((8, 6), 100, dtype=np.uint8)
    heat = np.linspace(0, 1, 48).reshape(8, 6)
    out = overlay(gray, heat)
    assert out.shape == (8, 6, 3) and out.dtype == np.uint8
    # jet runs from blue (cold) to red (hot).
    assert out[0, 0, 2] > out[0, 0, 0]
    assert out[-1, -1, 0] > out[-1, -1, 2]
    np.testing.assert_array_equal(overlay(gray[:, :, None], heat, alpha=0.0), np.dstack([gray] * 3))
    rgb = np.random.default_rng(0).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(overlay(rgb, heat, alpha=0.0), rgb)


@pytest.mark.parametrize(
    ("image", "heat", "alpha", "match"),
    [
        (np.zeros((4, 4), np.float32), np.zeros((4, 4)), 0.5, "uint8"),
        (np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4)), 0.5, "HxW"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 5)), 0.5, "does not match"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4)), 1.5, "alpha"),
    ],
)
def test_overlay_rejects(image: np.ndarray, heat: np.ndarray, alpha: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        overlay(image, heat, alpha)
