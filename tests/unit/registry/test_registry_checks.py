"""What the registry refuses to publish, and how it reports a version corrupted after publishing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import safetensors.torch
import torch
from support.fake_models import flip_byte, make_model_dir

from pomona.errors import CheckpointError
from pomona.models import read_card
from pomona.models.card import CARD_FILE, WEIGHTS_FILE
from pomona.registry import Registry
from pomona.storage import sha256_file

Edit = Callable[[dict[str, torch.Tensor]], None]


def rewrite_weights(model_dir: Path, edit: Edit) -> None:
    """Change the state dict and re-sign the card, so only the architecture check can object."""
    state = safetensors.torch.load_file(model_dir / WEIGHTS_FILE)
    edit(state)
    safetensors.torch.save_file(state, model_dir / WEIGHTS_FILE)
    card = read_card(model_dir).model_copy(
        update={"weights_sha256": sha256_file(model_dir / WEIGHTS_FILE)}
    )
    (model_dir / CARD_FILE).write_text(card.model_dump_json())


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: s.update(extra=torch.zeros(3)), r"Unexpected key\(s\) in state_dict: \"extra\""),
        (lambda s: s.pop("fc.bias"), r"Missing key\(s\) in state_dict: \"fc\.bias\""),
        (lambda s: s.update({"fc.bias": torch.zeros(5)}), r"size mismatch for fc\.bias"),
    ],
    ids=["extra tensor", "missing tensor", "wrong shape"],
)
def test_weights_that_do_not_fit_the_architecture_are_refused(
    tmp_path: Path, edit: Edit, match: str
) -> None:
    model_dir = make_model_dir(tmp_path / "model")
    rewrite_weights(model_dir, edit)
    registry = Registry(tmp_path / "registry")
    with pytest.raises(CheckpointError, match=rf"does not fit simple_cnn: .*{match}"):
        registry.register(model_dir, "pets")
    assert registry.list_models() == []
    assert registry.incomplete_versions() == []


@pytest.mark.parametrize("kind", ["local", "object store"])
def test_verify_reports_a_flipped_byte(tmp_path: Path, kind: str) -> None:
    if kind == "local":
        registry, stored = Registry(tmp_path / "registry"), tmp_path / "registry"
    else:
        (tmp_path / "bucket").mkdir()
        bucket = pafs.SubTreeFileSystem(str(tmp_path / "bucket"), pafs.LocalFileSystem())
        registry, stored = Registry("models", filesystem=bucket), tmp_path / "bucket" / "models"
    registry.register(make_model_dir(tmp_path / "model"), "pets")
    assert registry.verify("pets").ref == "pets:1"
    version_dir = stored / "pets" / "versions" / "1"
    flip_byte(version_dir / WEIGHTS_FILE)
    with pytest.raises(
        CheckpointError, match=r"pets:1 in .*model\.safetensors has sha256 .* modified or corrupted"
    ):
        registry.verify("pets")
    flip_byte(version_dir / WEIGHTS_FILE)
    assert registry.verify("pets").ref == "pets:1"
    (version_dir / CARD_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"model\.json is missing"):
        registry.verify("pets:1")
