"""The architecture zoo: every entry builds, heads and stems sit where the spec says."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pomona.errors import ConfigError
from pomona.models.zoo import (
    ARCHITECTURES,
    build_model,
    freeze_backbone,
    get_head,
    get_spec,
    list_architectures,
    split_parameters,
    target_layer,
)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_every_architecture_builds_and_classifies(architecture: str, channels: int) -> None:
    model = build_model(architecture, num_classes=5, in_channels=channels).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, channels, 32, 32))
    assert logits.shape == (2, 5)
    head = get_head(model, architecture)
    assert isinstance(head, nn.Linear) and head.out_features == 5
    stem = model.get_submodule(get_spec(architecture).stem)
    assert isinstance(stem, nn.Conv2d) and stem.in_channels == channels
    assert_last_convolutional_stage(model, target_layer(model, architecture), channels)


def assert_last_convolutional_stage(model: nn.Module, layer: nn.Module, channels: int) -> None:
    """``layer`` outputs a spatial feature map and no convolution runs after it (Grad-CAM's
    heat map is only as fine and as close to the decision as that layer)."""
    events: list[tuple[str, torch.Tensor]] = []
    hooks = [
        module.register_forward_hook(lambda _m, _i, out: events.append(("conv", out)))
        for module in model.modules()
        if isinstance(module, nn.Conv2d)
    ]
    hooks.append(layer.register_forward_hook(lambda _m, _i, out: events.append(("target", out))))
    try:
        with torch.no_grad():
            model(torch.randn(1, channels, 32, 32))
    finally:
        for hook in hooks:
            hook.remove()
    kinds = [kind for kind, _ in events]
    assert kinds.count("target") == 1
    assert kinds[-1] == "target", "a convolution runs after the Grad-CAM layer"
    output = events[-1][1]
    assert output.dim() == 4 and output.shape[0] == 1


def test_one_channel_stem_keeps_the_other_hyper_parameters() -> None:
    rgb = build_model("resnet18", 4, 3).conv1
    gray = build_model("resnet18", 4, 1).conv1
    assert (gray.out_channels, gray.kernel_size, gray.stride, gray.padding) == (
        rgb.out_channels,
        rgb.kernel_size,
        rgb.stride,
        rgb.padding,
    )
    assert gray.bias is None and gray.in_channels == 1


def test_simple_cnn_trains_on_8x8_inputs() -> None:
    model = build_model("simple_cnn", 3, 1)
    loss = model(torch.randn(4, 1, 8, 8)).sum()
    loss.backward()
    assert model.fc.weight.grad is not None


def test_unknown_architecture_lists_the_choices() -> None:
    with pytest.raises(ConfigError) as raised:
        build_model("vgg99", 2, 3)
    message = str(raised.value)
    assert "'vgg99'" in message
    for name in ARCHITECTURES:
        assert name in message


@pytest.mark.parametrize("architecture", ["simple_cnn", "mobilenet_v3_small"])
def test_freeze_backbone_leaves_only_the_head_trainable(architecture: str) -> None:
    model = build_model(architecture, 3, 3)
    freeze_backbone(model, architecture)
    head_path = get_spec(architecture).head
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{head_path}.weight", f"{head_path}.bias"}


def test_split_parameters_partitions_every_parameter_and_sees_through_wrappers() -> None:
    model = build_model("simple_cnn", 3, 3)
    backbone, head = split_parameters(nn.DataParallel(model), "simple_cnn")
    assert [id(p) for p in head] == [id(model.fc.weight), id(model.fc.bias)]
    assert {id(p) for p in backbone} | {id(p) for p in head} == {id(p) for p in model.parameters()}
    assert len(backbone) + len(head) == len(list(model.parameters()))


def test_list_architectures_names_every_entry_with_a_description() -> None:
    listed = list_architectures()
    assert [name for name, _ in listed] == list(ARCHITECTURES)
    assert all(description for _, description in listed)
