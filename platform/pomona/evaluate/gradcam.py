"""Grad-CAM (Selvaraju et al., 2017): where in the image a convolutional classifier looked.

For a target layer with activations ``A`` (K maps of h x w), the map for class ``c`` is
``ReLU(sum_k w_k A_k)`` with ``w_k`` the spatial mean of ``d score_c / d A_k``, upsampled to the
input size and scaled to [0, 1] per image. The caller picks the layer (usually the last
convolutional block: :func:`pomona.models.zoo.target_layer`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from torch import Tensor, nn

_COLORMAP = "jet"


def grad_cam(
    model: nn.Module,
    target_layer: nn.Module,
    images: Tensor,
    class_idx: Tensor | None = None,
) -> np.ndarray:
    """Compute Grad-CAM heat maps for a batch.

    The model runs in eval mode (BatchNorm statistics and dropout must not depend on the batch);
    every module's train/eval flag is restored afterwards, the hooks are always removed, and the
    parameters' ``.grad`` are left untouched. Works under ``torch.no_grad()`` or
    ``torch.inference_mode()`` and with frozen parameters.

    Args:
        model: classifier returning logits of shape (N, num_classes).
        target_layer: a submodule of ``model`` whose output is (N, K, h, w).
        images: preprocessed input batch, shape (N, C, H, W), on the model's device.
        class_idx: class to explain per image, shape (N,); None explains the predicted class.

    Returns:
        Heat maps of shape (N, H, W), float32 in [0, 1] (all zeros where no location
        supports the class).

    Raises:
        ValueError: bad shapes, ``class_idx`` out of range, or ``target_layer`` not used by the
            forward pass or not producing a 4-D output.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    captured: dict[str, Tensor] = {}
    handles: list[torch.utils.hooks.RemovableHandle] = []

    def keep_gradient(gradient: Tensor) -> None:
        captured["gradients"] = gradient.detach()

    def on_forward(_module: nn.Module, _inputs: object, output: Tensor) -> None:
        if not isinstance(output, Tensor) or output.ndim != 4:
            shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
            raise ValueError(f"target_layer must output (N, K, h, w), got {shape}")
        # Cloned because a later in-place op (ReLU(inplace=True)) may overwrite the tensor; a
        # tensor hook, unlike a module backward hook, also tolerates those in-place ops and sees
        # the gradient of the value the layer produced.
        captured["activations"] = output.detach().clone()
        handles.append(output.register_hook(keep_gradient))

    modes = {module: module.training for module in model.modules()}
    handles.append(target_layer.register_forward_hook(on_forward))
    try:
        model.eval()
        with torch.inference_mode(False), torch.enable_grad():
            # Gradients are taken with respect to a fresh leaf input, so the graph exists even
            # when every parameter is frozen and the parameters' .grad stay untouched.
            inputs = images.detach().clone().requires_grad_(True)
            logits = model(inputs)
            if "activations" not in captured:
                raise ValueError("target_layer did not run during model's forward pass")
            if logits.ndim != 2 or logits.shape[0] != images.shape[0]:
                raise ValueError(f"model must return (N, classes), got {tuple(logits.shape)}")
            targets = _targets(logits, class_idx)
            # Samples are independent in eval mode, so one backward pass of the summed scores
            # yields every sample's own gradient.
            score = logits.gather(1, targets[:, None]).sum()
            torch.autograd.grad(score, inputs)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.train(training)

    if "gradients" not in captured:
        raise ValueError("the class scores do not depend on target_layer's output")
    activations, gradients = captured["activations"], captured["gradients"]
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activations).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)
    cam = cam[:, 0].float()
    peak = cam.amax(dim=(1, 2), keepdim=True)
    cam = torch.where(peak > 0, cam / peak.clamp_min(torch.finfo(cam.dtype).tiny), 0.0)
    return cam.clamp(0, 1).cpu().numpy()


def _targets(logits: Tensor, class_idx: Tensor | None) -> Tensor:
    if class_idx is None:
        return logits.argmax(dim=1)
    targets = torch.as_tensor(class_idx, device=logits.device).long().reshape(-1)
    num_classes = logits.shape[1]
    if targets.shape[0] != logits.shape[0]:
        raise ValueError(f"class_idx needs {logits.shape[0]} entries, got {targets.shape[0]}")
    if targets.min() < 0 or targets.max() >= num_classes:
        raise ValueError(f"class_idx values must lie in [0, {num_classes - 1}]")
    return targets


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a heat map, coloured with the jet colormap, over an image.

    Args:
        image: uint8 image, (H, W), (H, W, 1) or (H, W, 3).
        heatmap: (H, W) values in [0, 1], e.g. one map from :func:`grad_cam`.
        alpha: weight of the heat map colours (0 shows only the image).

    Returns:
        uint8 array of shape (H, W, 3).

    Raises:
        ValueError: dtype or shapes do not fit, or ``alpha`` is outside [0, 1].
    """
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"image must be HxW, HxWx1 or HxWx3, got shape {image.shape}")
    if heatmap.shape != image.shape[:2]:
        raise ValueError(f"heatmap shape {heatmap.shape} does not match image {image.shape[:2]}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    colours = colormaps[_COLORMAP](np.clip(heatmap, 0, 1))[..., :3] * 255.0
    blended = (1 - alpha) * rgb.astype(np.float64) + alpha * colours
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
