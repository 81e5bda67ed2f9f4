"""Loading pretrained weights without downloading or unpickling arbitrary objects.

:func:`load_state_dict_file` reads a state dict from a ``.safetensors`` file, a ``.pt``/``.pth``
checkpoint (``weights_only=True``), a pomona model directory, or a torchvision weights enum
resolved against the local torch hub cache only. :func:`apply_pretrained` then loads it into a
freshly built model, keeping the new head when the class count differs and adapting the first
convolution between grayscale and RGB.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import safetensors.torch
import torch
from torch import nn
from torchvision.models import WeightsEnum, get_weight

from pomona.errors import CheckpointError
from pomona.models.card import WEIGHTS_FILE
from pomona.models.zoo import get_spec, unwrap

logger = logging.getLogger(__name__)

TORCHVISION_PREFIX = "torchvision:"
_SOURCES_HINT = (
    "pass a .safetensors, .pt or .pth file, a pomona model directory, "
    "or torchvision:<Weights>.<member> (e.g. torchvision:ResNet18_Weights.IMAGENET1K_V1)"
)
_MAX_LISTED = 5


@dataclass
class LoadReport:
    """What :func:`apply_pretrained` did with each key of the state dict.

    Attributes:
        loaded: keys copied unchanged into the model.
        skipped_head: head keys left at their fresh initialisation (class count differs, or the
            checkpoint has no head).
        adapted: first-convolution keys converted between 1 and 3 input channels.
    """

    loaded: list[str] = field(default_factory=list)
    skipped_head: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)


def resolve_torchvision_weights(spec: str) -> WeightsEnum:
    """Resolve ``torchvision:<Weights>.<member>`` (prefix optional) to its weights enum member.

    Raises:
        CheckpointError: the name is malformed or names no torchvision weights.
    """
    name = spec.removeprefix(TORCHVISION_PREFIX)
    try:
        return get_weight(name)
    except (ValueError, KeyError):
        raise CheckpointError(
            f"unknown torchvision weights {name!r}; expected <Weights>.<member> as listed in "
            "torchvision.models, e.g. ResNet18_Weights.IMAGENET1K_V1"
        ) from None


def torchvision_cache_path(weights: WeightsEnum) -> Path:
    """Where torch hub keeps the file of ``weights``: ``<torch hub dir>/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def load_state_dict_file(source: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict onto the CPU from a file, a model directory or a torchvision cache entry.

    Args:
        source: a ``.safetensors`` file; a ``.pt``/``.pth`` file holding a state dict or a
            checkpoint dict with it under ``"model"`` or ``"state_dict"``; a directory holding
            ``model.safetensors`` (a pomona model or run directory); or
            ``torchvision:<Weights>.<member>``, read only from the torch hub cache.

    Returns:
        The state dict, with a ``DistributedDataParallel`` ``module.`` prefix removed.

    Raises:
        CheckpointError: the source is missing, has an unknown extension, fails to load, holds
            something other than tensors, or is a torchvision file absent from the cache.
    """
    if isinstance(source, str) and source.startswith(TORCHVISION_PREFIX):
        weights = resolve_torchvision_weights(source)
        path = torchvision_cache_path(weights)
        if not path.is_file():
            raise CheckpointError(
                f"{source} is not in the local torch hub cache and pomona never downloads; "
                f"download {weights.url} and place it at {path}"
            )
        return _load_pickle_free(path)
    path = Path(source)
    if path.is_dir():
        path = path / WEIGHTS_FILE
        if not path.is_file():
            raise CheckpointError(
                f"{source} is a directory without {WEIGHTS_FILE}; {_SOURCES_HINT}"
            )
    if not path.exists():
        raise CheckpointError(f"weights {source} do not exist; {_SOURCES_HINT}")
    if path.suffix == ".safetensors":
        try:
            state = safetensors.torch.load_file(path, device="cpu")
        except Exception as error:
            raise CheckpointError(
                f"{path} is not a readable safetensors file ({error}); re-export it"
            ) from None
        return _strip_ddp_prefix(state)
    if path.suffix in (".pt", ".pth"):
        return _load_pickle_free(path)
    raise CheckpointError(
        f"weights {path} have an unknown extension {path.suffix!r}; {_SOURCES_HINT}"
    )


def _load_pickle_free(path: Path) -> dict[str, torch.Tensor]:
    # weights_only refuses arbitrary classes, so a malicious checkpoint cannot run code.
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"{path} could not be loaded with torch.load(weights_only=True): "
            f"{_short_reason(error)}. Save a plain state dict "
            "(torch.save(model.state_dict(), ...)) or a safetensors file"
        ) from None
    if isinstance(loaded, dict):
        for key in ("model", "state_dict"):
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise CheckpointError(
            f"{path} holds no state dict (a mapping of names to tensors, at the top or under "
            "'model' or 'state_dict')"
        )
    return _strip_ddp_prefix(loaded)


def _short_reason(error: Exception) -> str:
    # torch's message spans paragraphs and suggests weights_only=False, which pomona never
    # does; keep the sentence that names the problem (e.g. the class that was refused).
    text = str(error)
    marker = "WeightsUnpickler error: "
    if marker in text:
        text = text.split(marker, 1)[1]
    return text.strip().split(". ", 1)[0].splitlines()[0].rstrip(".")


def _strip_ddp_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # DDP prefixes every key; a partial prefix would mean a model with a submodule named "module".
    if state and all(key.startswith("module.") for key in state):
        return {key.removeprefix("module."): value for key, value in state.items()}
    return dict(state)


def _adapt_channels(weight: torch.Tensor, target: torch.Size) -> torch.Tensor | None:
    # Both conversions keep the response to a gray image: RGB filters summed see the same signal
    # as a gray image replicated to three channels, and vice versa.
    if weight.ndim != 4 or weight.shape[0] != target[0] or weight.shape[2:] != target[2:]:
        return None
    if weight.shape[1] == 3 and target[1] == 1:
        return weight.sum(dim=1, keepdim=True)
    if weight.shape[1] == 1 and target[1] == 3:
        return weight.repeat(1, 3, 1, 1) / 3
    return None


def apply_pretrained(
    model: nn.Module, architecture: str, state_dict: dict[str, torch.Tensor]
) -> LoadReport:
    """Load ``state_dict`` into ``model``, replacing the head and adapting the first convolution.

    Head keys whose shape differs (another class count) or that the checkpoint lacks keep the
    model's fresh initialisation: this is the "replace the head" step of fine-tuning. A first
    convolution trained on 3 channels is summed over them for a 1-channel model; one trained on
    1 channel is repeated and divided by 3 for a 3-channel model.

    Args:
        model: a model built by :func:`pomona.models.zoo.build_model` for ``architecture``.
        architecture: key of :data:`pomona.models.zoo.ARCHITECTURES`.
        state_dict: e.g. from :func:`load_state_dict_file`.

    Returns:
        Which keys were loaded, skipped (head) and adapted (first convolution).

    Raises:
        CheckpointError: any other key is missing, unexpected or of the wrong shape; the message
            lists up to five of them.
    """
    spec = get_spec(architecture)
    model = unwrap(model)
    own = model.state_dict()
    head_prefix = f"{spec.head}."
    stem_weight = f"{spec.stem}.weight"
    report = LoadReport()
    merged = dict(own)
    problems: list[str] = []
    for key, value in state_dict.items():
        if key not in own:
            problems.append(f"unexpected {key}")
        elif value.shape == own[key].shape:
            merged[key] = value
            report.loaded.append(key)
        elif key.startswith(head_prefix):
            report.skipped_head.append(key)
        elif key == stem_weight and (adapted := _adapt_channels(value, own[key].shape)) is not None:
            merged[key] = adapted
            report.adapted.append(key)
        else:
            problems.append(
                f"shape {key}: checkpoint {tuple(value.shape)}, model {tuple(own[key].shape)}"
            )
    for key in own:
        if key not in state_dict:
            if key.startswith(head_prefix):
                report.skipped_head.append(key)
            else:
                problems.append(f"missing {key}")
    if problems:
        more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
        raise CheckpointError(
            f"pretrained weights do not fit {architecture}: "
            f"{'; '.join(problems[:_MAX_LISTED])}{more}"
        )
    model.load_state_dict(merged, strict=True)
    logger.info(
        "loaded %d pretrained tensors into %s; fresh head: %s; adapted: %s",
        len(report.loaded),
        architecture,
        report.skipped_head or "none",
        report.adapted or "none",
    )
    return report
