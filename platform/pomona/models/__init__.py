"""Models: the architecture zoo, pretrained-weight loading and model directories.

This package stands alone (no training or Ray imports), so evaluation, prediction and serving can
load a model directory without pulling in the trainer.
"""

from pomona.models.artifact import load_model, read_card, save_model
from pomona.models.card import CARD_FILE, WEIGHTS_FILE, InitialWeights, ModelCard
from pomona.models.weights import (
    LoadReport,
    apply_pretrained,
    choose_head,
    load_state_dict_file,
    source_classes,
)
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
    "InitialWeights",
    "LoadReport",
    "ModelCard",
    "apply_pretrained",
    "build_model",
    "choose_head",
    "freeze_backbone",
    "get_head",
    "get_spec",
    "list_architectures",
    "load_model",
    "load_state_dict_file",
    "read_card",
    "save_model",
    "source_classes",
    "split_parameters",
    "target_layer",
    "unwrap",
]
