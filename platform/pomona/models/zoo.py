"""The architectures pomona can train, and the few facts about each that the rest of pomona needs.

Every architecture is one :class:`ArchitectureSpec` entry in :data:`ARCHITECTURES`: a builder plus
the dotted paths of its first convolution (``stem``), its final ``Linear`` (``head``) and the
layer Grad-CAM hooks (``target_layer``). Head replacement, channel adaptation, freezing and
optimizer parameter groups are all derived from those paths, so adding an architecture is one
line. Torchvision models are always built with ``weights=None``: pretrained weights are loaded
explicitly by :mod:`pomona.models.weights`, never downloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import Tensor, nn

from pomona.errors import ConfigError


@dataclass(frozen=True)
class ArchitectureSpec:
    """How to build one architecture and where its important layers live.

    Attributes:
        builder: ``builder(num_classes, in_channels)`` returns a freshly initialised model.
        head: dotted path of the final classifier ``nn.Linear`` (e.g. ``"fc"``).
        target_layer: dotted path of the module Grad-CAM hooks (the last convolutional stage).
        stem: dotted path of the first ``nn.Conv2d``, the only layer that depends on the number
            of input channels.
        description: one line shown by ``pomona models list``.
    """

    builder: Callable[[int, int], nn.Module]
    head: str
    target_layer: str
    stem: str
    description: str


def _conv_block(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class SimpleCNN(nn.Module):
    """A small three-block CNN (16/32/64 channels) for small images and fast tests.

    Only the first two blocks pool, so an 8x8 input still leaves a 2x2 map for Grad-CAM; the
    adaptive average pool makes any input size of at least 4x4 work.

    Args:
        num_classes: number of outputs of the ``fc`` head.
        in_channels: channels of the input images.
    """

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_block(in_channels, 16, pool=True),
            _conv_block(16, 32, pool=True),
            _conv_block(32, 64, pool=False),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of shape ``(N, num_classes)`` for images of shape ``(N, C, H, W)``."""
        return self.fc(self.pool(self.features(x)).flatten(1))


def _build_torchvision(factory: str, stem: str, num_classes: int, in_channels: int) -> nn.Module:
    # Imported here: torchvision takes over a second to import (it pulls in torch._dynamo), a
    # cost every Ray Train controller, worker and sweep trial would pay for simple_cnn too.
    from torchvision import models as tv

    # torchvision sizes and initialises the head itself when given num_classes with no weights.
    model = getattr(tv, factory)(weights=None, num_classes=num_classes)
    if in_channels != 3:
        old = model.get_submodule(stem)
        new = nn.Conv2d(
            in_channels,
            old.out_channels,
            kernel_size=old.kernel_size,
            stride=old.stride,
            padding=old.padding,
            dilation=old.dilation,
            groups=old.groups,
            bias=old.bias is not None,
            padding_mode=old.padding_mode,
        )
        # The same init torchvision gives every conv of these families (ResNet, MobileNetV3,
        # EfficientNet), so a 1-channel model starts like its 3-channel sibling.
        nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
        if new.bias is not None:
            nn.init.zeros_(new.bias)
        model.set_submodule(stem, new)
    return model


def _torchvision(
    factory: str, *, head: str, target_layer: str, stem: str, description: str
) -> ArchitectureSpec:
    return ArchitectureSpec(
        builder=partial(_build_torchvision, factory, stem),
        head=head,
        target_layer=target_layer,
        stem=stem,
        description=description,
    )


ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "simple_cnn": ArchitectureSpec(
        builder=SimpleCNN,
        head="fc",
        target_layer="features",
        stem="features.0.0",
        description="pomona's 3-block CNN (~24k params); small images, quick experiments",
    ),
    "resnet18": _torchvision(
        "resnet18",
        head="fc",
        target_layer="layer4",
        stem="conv1",
        description="ResNet-18 (~11M params), torchvision",
    ),
    "resnet34": _torchvision(
        "resnet34",
        head="fc",
        target_layer="layer4",
        stem="conv1",
        description="ResNet-34 (~21M params), torchvision",
    ),
    "resnet50": _torchvision(
        "resnet50",
        head="fc",
        target_layer="layer4",
        stem="conv1",
        description="ResNet-50 (~24M params), torchvision",
    ),
    "mobilenet_v3_small": _torchvision(
        "mobilenet_v3_small",
        head="classifier.3",
        target_layer="features",
        stem="features.0.0",
        description="MobileNetV3-Small (~1.5M params), torchvision; fast on CPU",
    ),
    "efficientnet_b0": _torchvision(
        "efficientnet_b0",
        head="classifier.1",
        target_layer="features",
        stem="features.0.0",
        description="EfficientNet-B0 (~4M params), torchvision",
    ),
}


def get_spec(architecture: str) -> ArchitectureSpec:
    """Return the spec of ``architecture``.

    Raises:
        ConfigError: ``architecture`` is not a key of :data:`ARCHITECTURES`; the message lists
            the valid keys.
    """
    try:
        return ARCHITECTURES[architecture]
    except KeyError:
        raise ConfigError(
            f"unknown architecture {architecture!r}; choose one of: {', '.join(ARCHITECTURES)}"
        ) from None


def build_model(architecture: str, num_classes: int, in_channels: int) -> nn.Module:
    """Build a freshly initialised model (never downloads weights).

    Args:
        architecture: key of :data:`ARCHITECTURES`.
        num_classes: number of outputs of the head.
        in_channels: channels of the input images (1 for grayscale, 3 for RGB).

    Raises:
        ConfigError: unknown architecture, or a non-positive class or channel count.
    """
    spec = get_spec(architecture)
    if num_classes < 1 or in_channels < 1:
        raise ConfigError(
            f"num_classes and in_channels must be positive, got {num_classes} and {in_channels}"
        )
    return spec.builder(num_classes, in_channels)


def unwrap(model: nn.Module) -> nn.Module:
    """Return the model inside a ``DistributedDataParallel``/``DataParallel`` wrapper, if any."""
    if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
        return model.module
    return model


def get_head(model: nn.Module, architecture: str) -> nn.Module:
    """Return the final classifier layer of ``model`` (unwrapping DDP)."""
    return unwrap(model).get_submodule(get_spec(architecture).head)


def target_layer(model: nn.Module, architecture: str) -> nn.Module:
    """Return the module Grad-CAM should hook: the last convolutional stage of ``model``."""
    return unwrap(model).get_submodule(get_spec(architecture).target_layer)


def split_parameters(
    model: nn.Module, architecture: str
) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Split every parameter of ``model`` into ``(backbone, head)``, ignoring ``requires_grad``."""
    head_ids = {id(p) for p in get_head(model, architecture).parameters()}
    backbone: list[nn.Parameter] = []
    head: list[nn.Parameter] = []
    for parameter in unwrap(model).parameters():
        (head if id(parameter) in head_ids else backbone).append(parameter)
    return backbone, head


def freeze_backbone(model: nn.Module, architecture: str) -> None:
    """Stop gradients for every backbone parameter so only the head trains.

    BatchNorm layers of the backbone are not switched to eval mode: in ``model.train()`` their
    running statistics still adapt to the new data, which usually helps when the new images
    differ from the pretraining set.
    """
    backbone, _ = split_parameters(model, architecture)
    for parameter in backbone:
        parameter.requires_grad_(False)


def list_architectures() -> list[tuple[str, str]]:
    """``(name, description)`` of every architecture, for ``pomona models list``."""
    return [(name, spec.description) for name, spec in ARCHITECTURES.items()]
