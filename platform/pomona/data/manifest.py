"""The dataset manifest and the preprocessing spec it records.

``Preprocessing`` is the single description of how raw images become network input. Ingest applies
its geometric part once (resize, channels) and stores uint8 pixels; the loader, evaluation,
``pomona predict`` and serving apply its normalisation (mean/std) on the fly, so a model is always
fed exactly as it was trained.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from pomona.config import StrictModel

#: 2: shards store images as fixed-size binary (1: Arrow fixed-shape tensors, read 7x slower).
SCHEMA_VERSION = 2
SPLITS: tuple[str, ...] = ("train", "val", "test")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Preprocessing(StrictModel):
    """How a decoded image is turned into a network input.

    Attributes:
        height: output height in pixels.
        width: output width in pixels.
        channels: 1 (grayscale) or 3 (RGB).
        resize: ``crop`` scales the shorter side to fit and centre-crops (keeps aspect ratio);
            ``stretch`` scales both sides independently.
        mean: per-channel mean subtracted after scaling pixels to [0, 1].
        std: per-channel standard deviation divided after subtracting the mean.
    """

    height: PositiveInt = 64
    width: PositiveInt = 64
    channels: Literal[1, 3] = 3
    resize: Literal["crop", "stretch"] = "crop"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @model_validator(mode="after")
    def _default_and_check_stats(self) -> Preprocessing:
        if self.mean is None:
            self.mean = IMAGENET_MEAN if self.channels == 3 else (0.5,)
        if self.std is None:
            self.std = IMAGENET_STD if self.channels == 3 else (0.5,)
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != self.channels:
                raise ValueError(
                    f"{name} needs {self.channels} value(s), one per channel, got {len(values)}"
                )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std values must be positive, got {self.std}")
        return self

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Stored pixel shape, height x width x channels."""
        return (self.height, self.width, self.channels)


class ShardInfo(StrictModel):
    """One Parquet file of a split, relative to the dataset directory."""

    path: str
    rows: PositiveInt
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class SplitInfo(StrictModel):
    """Rows of one split: count per class and the shards that hold them."""

    rows: int = Field(ge=0)
    counts: dict[str, int]
    shards: list[ShardInfo]


class SplitFractions(StrictModel):
    """Fractions of each class that go to train, validation and test; they sum to 1."""

    train: float = Field(0.7, gt=0, le=1)
    val: float = Field(0.15, ge=0, lt=1)
    test: float = Field(0.15, ge=0, lt=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitFractions:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1, got {total:g}")
        return self


class Manifest(StrictModel):
    """``manifest.json`` of an ingested dataset."""

    schema_version: Literal[2] = SCHEMA_VERSION
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    source: str
    label_from: Literal["folder", "prefix"]
    classes: list[str]
    image_shape: tuple[int, int, int]
    preprocessing: Preprocessing
    seed: int
    split: SplitFractions
    found: int = Field(ge=0)
    ingested: int = Field(ge=0)
    rejected: int = Field(ge=0)
    ignored: int = Field(0, ge=0, description="OS or tool litter skipped unread (.DS_Store, ...)")
    duplicates: int = Field(0, ge=0, description="ingested files whose bytes equal another's")
    splits: dict[str, SplitInfo]

    @field_validator("classes")
    @classmethod
    def _at_least_two(cls, classes: list[str]) -> list[str]:
        if len(classes) < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {classes}")
        return classes

    @model_validator(mode="after")
    def _counts_reconcile(self) -> Manifest:
        if self.found != self.ingested + self.rejected + self.ignored:
            raise ValueError(
                f"found ({self.found}) != ingested ({self.ingested}) + rejected "
                f"({self.rejected}) + ignored ({self.ignored})"
            )
        if sum(s.rows for s in self.splits.values()) != self.ingested:
            raise ValueError("split rows do not add up to the ingested count")
        return self

    @property
    def num_classes(self) -> int:
        """Number of classes; class index i is ``classes[i]``."""
        return len(self.classes)
