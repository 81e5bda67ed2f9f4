"""Loading pretrained weights: file formats, refusal of pickles, torch hub cache, head swap."""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import torch

from pomona.data.manifest import Preprocessing
from pomona.errors import CheckpointError
from pomona.models.artifact import save_model
from pomona.models.weights import apply_pretrained, load_state_dict_file
from pomona.models.zoo import build_model


class NotATensor:
    """Something only a full unpickler could rebuild."""


def _state(num_classes: int = 10, channels: int = 3) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return build_model("simple_cnn", num_classes, channels).state_dict()


def _assert_same(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> None:
    assert left.keys() == right.keys()
    for key in left:
        assert torch.equal(left[key], right[key]), key


def test_safetensors_round_trip(tmp_path: Path) -> None:
    state = _state()
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file(state, path)
    _assert_same(load_state_dict_file(path), state)


@pytest.mark.parametrize(("suffix", "wrapper"), [(".pt", "model"), (".pth", "state_dict")])
def test_torch_checkpoint_is_unwrapped_and_ddp_prefix_stripped(
    tmp_path: Path, suffix: str, wrapper: str
) -> None:
    state = _state()
    path = tmp_path / f"ckpt{suffix}"
    checkpoint = {wrapper: {f"module.{k}": v for k, v in state.items()}, "epoch": 3}
    torch.save(checkpoint, path)
    _assert_same(load_state_dict_file(str(path)), state)


def test_model_directory_is_read(tmp_path: Path) -> None:
    model = build_model("simple_cnn", 2, 1)
    save_model(
        tmp_path / "m",
        model,
        architecture="simple_cnn",
        classes=["a", "b"],
        preprocessing=Preprocessing(height=8, width=8, channels=1),
    )
    _assert_same(load_state_dict_file(tmp_path / "m"), model.state_dict())


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(1), "payload": NotATensor()}, path)
    with pytest.raises(CheckpointError, match="weights_only=True") as raised:
        load_state_dict_file(path)
    assert "NotATensor" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_checkpoint_without_tensors_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 3}, path)
    with pytest.raises(CheckpointError, match="holds no state dict"):
        load_state_dict_file(path)


def test_missing_file_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.pt do not exist"):
        load_state_dict_file(tmp_path / "nope.pt")
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"unknown extension '\.bin'"):
        load_state_dict_file(tmp_path / "w.bin")
    with pytest.raises(CheckpointError, match=r"without model\.safetensors"):
        load_state_dict_file(tmp_path)


def test_corrupt_safetensors_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_state_dict_file(path)


def test_torchvision_weights_come_only_from_the_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # an earlier set_dir() would win over env
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(CheckpointError) as raised:
        load_state_dict_file("torchvision:ResNet18_Weights.IMAGENET1K_V1")
    assert str(expected) in str(raised.value)
    assert "download.pytorch.org" in str(raised.value)

    expected.parent.mkdir(parents=True)
    torch.save({"conv1.weight": torch.ones(2, 2)}, expected)
    loaded = load_state_dict_file("torchvision:ResNet18_Weights.IMAGENET1K_V1")
    assert torch.equal(loaded["conv1.weight"], torch.ones(2, 2))


def test_unknown_torchvision_weights_name() -> None:
    with pytest.raises(CheckpointError, match="unknown torchvision weights"):
        load_state_dict_file("torchvision:ResNet18_Weights.NOPE")


def test_apply_pretrained_replaces_the_head_and_keeps_the_backbone() -> None:
    source = _state(num_classes=10)
    torch.manual_seed(1)
    model = build_model("simple_cnn", 3, 3)
    fresh_head = model.fc.weight.detach().clone()
    report = apply_pretrained(model, "simple_cnn", source)
    assert sorted(report.skipped_head) == ["fc.bias", "fc.weight"]
    assert report.adapted == []
    after = model.state_dict()
    for key, value in source.items():
        if not key.startswith("fc."):
            assert torch.equal(after[key], value), key
    assert torch.equal(model.fc.weight, fresh_head)
    assert model.fc.out_features == 3


@pytest.mark.parametrize(("source_channels", "target_channels"), [(3, 1), (1, 3)])
def test_first_conv_is_adapted_between_gray_and_rgb(
    source_channels: int, target_channels: int
) -> None:
    torch.manual_seed(0)
    source = build_model("simple_cnn", 4, source_channels).eval()
    target = build_model("simple_cnn", 4, target_channels).eval()
    report = apply_pretrained(target, "simple_cnn", source.state_dict())
    assert report.adapted == ["features.0.0.weight"]
    # A gray image must give the same logits whether fed as 1 channel or replicated to 3.
    gray = torch.rand(2, 1, 12, 12)
    with torch.no_grad():
        expected = source(gray.expand(-1, source_channels, -1, -1))
        actual = target(gray.expand(-1, target_channels, -1, -1))
    torch.testing.assert_close(actual, expected)


def test_apply_pretrained_lists_keys_that_do_not_fit() -> None:
    model = build_model("simple_cnn", 3, 3)
    state = {f"extra{i}.weight": torch.zeros(1) for i in range(7)}
    with pytest.raises(CheckpointError) as raised:
        apply_pretrained(model, "simple_cnn", state)
    message = str(raised.value)
    assert "unexpected extra0.weight" in message
    assert "more)" in message
    wrong_shape = _state()
    wrong_shape["features.1.0.weight"] = torch.zeros(1, 1, 1, 1)
    with pytest.raises(CheckpointError, match=r"shape features\.1\.0\.weight"):
        apply_pretrained(model, "simple_cnn", wrong_shape)
