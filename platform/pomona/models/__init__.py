"""Models: the architecture zoo, pretrained-weight loading and model directories.

This package stands alone (no training or Ray imports), so evaluation, prediction and serving can
load a model directory without pulling in the trainer.
"""

from pomona.models.artifact import load_model, read_card, save_model
from pomona.models.card import CARD_FILE, WEIGHTS_FILE, ModelCard
from pomona.models.weights import LoadReport, apply_pretrained, load_state_dict_file
from pomona.models.zoo import (
    ARCHITECTURES,
    ArchitectureSpec,
    build_model,
    freeze_backbone,
    get_head,
    get_spec,
    list_architectures,
    split_parameters,
    target_layer,
    unwrap,
)

__all__ = [
    "ARCHITECTURES",
    "CARD_FILE",
    "WEIGHTS_FILE",
    "ArchitectureSpec",
    "LoadReport",
    "ModelCard",
    "apply_pretrained",
    "build_model",
    "freeze_backbone",
    "get_head",
    "get_spec",
    "list_architectures",
    "load_model",
    "load_state_dict_file",
    "read_card",
    "save_model",
    "split_parameters",
    "target_layer",
    "unwrap",
]
