"""Loading pretrained weights: file formats, refusal of pickles, torch hub cache, head choice."""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import torch

from pomona.data.manifest import Preprocessing
from pomona.errors import CheckpointError
from pomona.models.artifact import save_model
from pomona.models.weights import (
    apply_pretrained,
    choose_head,
    load_state_dict_file,
    source_classes,
)
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
    report = apply_pretrained(target, "simple_cnn", source.state_dict(), keep_head=True)
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


def _save_dir(directory: Path, classes: list[str], seed: int = 0) -> Path:
    torch.manual_seed(seed)
    save_model(
        directory,
        build_model("simple_cnn", len(classes), 1),
        architecture="simple_cnn",
        classes=classes,
        preprocessing=Preprocessing(height=8, width=8, channels=1),
    )
    return directory


def test_same_class_count_but_other_classes_gets_a_new_head(tmp_path: Path) -> None:
    source_dir = _save_dir(tmp_path / "digits-0-4", ["0", "1", "2", "3", "4"])
    source = load_state_dict_file(source_dir)
    dataset_classes = ["5", "6", "7", "8", "9"]
    head, reason = choose_head("auto", source_classes(source_dir), dataset_classes)
    assert head == "new"
    assert "weights 0, 1, 2, 3, 4; dataset 5, 6, 7, 8, 9" in reason

    torch.manual_seed(1)
    model = build_model("simple_cnn", 5, 1)
    fresh_head = model.fc.weight.detach().clone()
    report = apply_pretrained(model, "simple_cnn", source, keep_head=head == "kept")
    assert sorted(report.skipped_head) == ["fc.bias", "fc.weight"]
    after = model.state_dict()
    assert not torch.equal(after["fc.weight"], source["fc.weight"])  # the shape would have fit
    assert torch.equal(after["fc.weight"], fresh_head)
    for key, value in source.items():
        if not key.startswith("fc."):
            assert torch.equal(after[key], value), key


def test_same_classes_keep_the_head(tmp_path: Path) -> None:
    classes = ["cat", "dog"]
    source_dir = _save_dir(tmp_path / "pets", classes)
    assert choose_head("auto", source_classes(source_dir), classes) == (
        "kept",
        "the weights' classes are the dataset's",
    )
    source = load_state_dict_file(source_dir / "model.safetensors")  # the file: same card
    model = build_model("simple_cnn", 2, 1)
    report = apply_pretrained(model, "simple_cnn", source, keep_head=True)
    assert report.skipped_head == []
    assert torch.equal(model.fc.weight, source["fc.weight"])


@pytest.mark.parametrize(
    ("choice", "weights_classes", "expected"),
    [
        ("auto", ["b", "a"], ("new", "the classes differ: same names in another order")),
        ("auto", None, ("new", "the weights record no classes")),
        ("new", ["a", "b"], ("new", "forced by model.head=new")),
        ("keep", None, ("kept", "forced by model.head=keep")),
        ("keep", ["x", "y"], ("kept", "forced by model.head=keep; the classes differ")),
    ],
)
def test_choose_head(
    choice: str, weights_classes: list[str] | None, expected: tuple[str, str]
) -> None:
    head, reason = choose_head(choice, weights_classes, ["a", "b"])  # type: ignore[arg-type]
    assert head == expected[0]
    assert reason.startswith(expected[1])


def test_keeping_a_head_of_another_class_count_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="weights have 3 classes and the dataset 2"):
        choose_head("keep", ["a", "b", "c"], ["a", "b"])
    bare = _state(num_classes=3, channels=1)  # no card: the shapes tell
    with pytest.raises(CheckpointError, match=r"shape fc\.weight"):
        apply_pretrained(build_model("simple_cnn", 2, 1), "simple_cnn", bare, keep_head=True)


def test_bare_files_and_torchvision_weights_record_no_classes(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file(_state(), path)
    assert source_classes(path) is None
    assert source_classes("torchvision:ResNet18_Weights.IMAGENET1K_V1") is None


def test_a_model_directory_is_checked_against_its_card(tmp_path: Path) -> None:
    source_dir = _save_dir(tmp_path / "m", ["a", "b"])
    weights = source_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # a flipped bit in a tensor: still a readable safetensors file
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_state_dict_file(source_dir)
