"""Loading pretrained weights without downloading or unpickling arbitrary objects.

:func:`load_state_dict_file` reads a state dict from a ``.safetensors`` file, a ``.pt``/``.pth``
checkpoint (``weights_only=True``), a pomona model directory, or a torchvision weights enum
resolved against the local torch hub cache only. :func:`choose_head` decides whether the
checkpoint's classifier head is kept (only when its classes are the dataset's: continuing
training) or replaced by a fresh one (fine-tuning for other classes), and :func:`apply_pretrained`
loads the state dict into a freshly built model accordingly, adapting the first convolution
between grayscale and RGB.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlparse

import safetensors.torch
import torch
from torch import nn

from pomona.errors import CheckpointError, first_few
from pomona.models.artifact import load_model, read_card
from pomona.models.card import CARD_FILE, WEIGHTS_FILE
from pomona.models.zoo import ARCHITECTURES, build_model, get_spec, unwrap

if TYPE_CHECKING:
    from torchvision.models import WeightsEnum

logger = logging.getLogger(__name__)

TORCHVISION_PREFIX = "torchvision:"
_SOURCES_HINT = (
    "pass a .safetensors, .pt or .pth file, a pomona model directory, "
    "or torchvision:<Weights>.<member> (e.g. torchvision:ResNet18_Weights.IMAGENET1K_V1)"
)
_MAX_LISTED = 5

#: ``model.head``: ``auto`` keeps the checkpoint's head only when its classes are the dataset's.
HeadChoice = Literal["auto", "new", "keep"]


@dataclass
class LoadReport:
    """What :func:`apply_pretrained` did with each key of the state dict.

    Attributes:
        loaded: keys copied unchanged into the model.
        skipped_head: head keys left at their fresh initialisation (a new head was asked for,
            or the checkpoint has none).
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
    from torchvision.models import get_weight  # see pomona.models.zoo: slow to import

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
            ``model.safetensors`` (a pomona model or run directory, whose weights are checked
            against the sha256 of its ``model.json``); or ``torchvision:<Weights>.<member>``,
            read only from the torch hub cache.

    Returns:
        The state dict, with a ``DistributedDataParallel`` ``module.`` prefix removed.

    Raises:
        CheckpointError: the source is missing, has an unknown extension, fails to load, holds
            something other than tensors, differs from its model card's checksum, or is a
            torchvision file absent from the cache.
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
    if (model_dir := _model_dir(path)) is not None:
        model, _card = load_model(model_dir)
        return dict(model.state_dict())
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


def _architectures_named(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """The architectures whose tensor names ``state_dict`` has, head aside.

    Each network is built on the meta device: no memory, no initialisation.
    """
    found = []
    given = set(state_dict)
    for architecture, spec in ARCHITECTURES.items():
        with torch.device("meta"):
            names = build_model(architecture, num_classes=2, in_channels=3).state_dict().keys()
        head = f"{spec.head}."
        if {k for k in names if not k.startswith(head)} == {
            k for k in given if not k.startswith(head)
        }:
            found.append(architecture)
    return found


def source_classes(source: str | Path) -> list[str] | None:
    """The classes the weights at ``source`` were trained for, from its model card.

    Returns:
        The card's classes for a pomona model or run directory (or its ``model.safetensors``);
        None for a bare weights file or torchvision weights, which record none.

    Raises:
        CheckpointError: the model card is not valid.
    """
    if isinstance(source, str) and source.startswith(TORCHVISION_PREFIX):
        return None
    model_dir = _model_dir(Path(source))
    return None if model_dir is None else read_card(model_dir).classes


def _model_dir(path: Path) -> Path | None:
    """The pomona model directory ``path`` is or whose weights file it is; None otherwise."""
    if path.is_file() and path.name == WEIGHTS_FILE:
        path = path.parent
    return path if (path / CARD_FILE).is_file() else None


def choose_head(
    choice: HeadChoice, weights_classes: list[str] | None, classes: list[str]
) -> tuple[Literal["kept", "new"], str]:
    """Whether fine-tuning keeps the checkpoint's classifier head, and why.

    A head maps features to *its* classes by position, so it is worth keeping only when the
    dataset has exactly those classes in that order (continuing training). Any other set,
    even of the same size, gets a fresh head.

    Args:
        choice: ``auto`` decides from the classes; ``new`` and ``keep`` force either.
        weights_classes: classes recorded with the weights (None: the source records none, so
            ``auto`` starts a new head).
        classes: the dataset's classes.

    Returns:
        ``("kept" | "new", reason)``.

    Raises:
        CheckpointError: ``keep`` was forced but the weights have another number of classes.
    """
    forced = "forced by model.head=keep"
    if choice == "new":
        return "new", "forced by model.head=new"
    if weights_classes is None:
        return ("kept", forced) if choice == "keep" else ("new", "the weights record no classes")
    if weights_classes == classes:
        return "kept", forced if choice == "keep" else "the weights' classes are the dataset's"
    differ = _class_difference(weights_classes, classes)
    if choice == "auto":
        return "new", differ
    if len(weights_classes) != len(classes):
        raise CheckpointError(
            f"model.head=keep, but the weights have {len(weights_classes)} classes and the "
            f"dataset {len(classes)} ({differ}); use model.head=new or auto"
        )
    return "kept", f"{forced}; {differ}"


def _class_difference(weights: list[str], dataset: list[str]) -> str:
    if sorted(weights) == sorted(dataset):
        return "the classes differ: same names in another order"
    return (
        f"the classes differ: weights {first_few(weights, _MAX_LISTED)}; "
        f"dataset {first_few(dataset, _MAX_LISTED)}"
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
    model: nn.Module,
    architecture: str,
    state_dict: dict[str, torch.Tensor],
    *,
    keep_head: bool = False,
) -> LoadReport:
    """Load ``state_dict`` into ``model``, with a fresh or the checkpoint's head.

    Fine-tuning for new classes starts from a fresh head: unless ``keep_head``, the head keeps
    the model's initialisation whatever the checkpoint holds (see :func:`choose_head`). A first
    convolution trained on 3 channels is summed over them for a 1-channel model; one trained on
    1 channel is repeated and divided by 3 for a 3-channel model.

    Args:
        model: a model built by :func:`pomona.models.zoo.build_model` for ``architecture``.
        architecture: key of :data:`pomona.models.zoo.ARCHITECTURES`.
        state_dict: e.g. from :func:`load_state_dict_file`.
        keep_head: load the checkpoint's head too; it must then be there and fit.

    Returns:
        Which keys were loaded, skipped (head) and adapted (first convolution).

    Raises:
        CheckpointError: any other key is missing, unexpected or of the wrong shape, or a kept
            head is missing or does not fit; the message lists up to five of them.
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
        elif key.startswith(head_prefix) and not keep_head:
            report.skipped_head.append(key)
        elif value.shape == own[key].shape:
            merged[key] = value
            report.loaded.append(key)
        elif key == stem_weight and (adapted := _adapt_channels(value, own[key].shape)) is not None:
            merged[key] = adapted
            report.adapted.append(key)
        else:
            problems.append(
                f"shape {key}: checkpoint {tuple(value.shape)}, model {tuple(own[key].shape)}"
            )
    for key in own:
        if key not in state_dict:
            if key.startswith(head_prefix) and not keep_head:
                report.skipped_head.append(key)
            else:
                problems.append(f"missing {key}")
    if problems:
        named_as = _architectures_named(state_dict)
        if named_as and architecture not in named_as:
            raise CheckpointError(
                f"pretrained weights do not fit {architecture}: they are {named_as[0]} weights; "
                f"fine-tune them with --model {named_as[0]} (model.architecture)"
            )
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
