"""scikit-learn's handwritten digits (``load_digits``, shipped inside the wheel), as 32x32 RGB images.

The 1,797 images are 8x8 grey levels 0..16 (UCI "Optical Recognition of Handwritten Digits":
32x32 bitmaps of 43 writers, counted in 4x4 blocks). They are scaled to 0..255 and upsampled
with bilinear interpolation, which gives smooth strokes where nearest-neighbour would give 4x4
blocks that no real image has; grey is copied into three channels so the RGB models and the
coloured GTSRB triggers apply unchanged. Ink is bright on a black background, as in the source.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image
from pydantic import Field, field_validator, model_serializer

from tasks.config import StageConfig
from tasks.datasets.identity_folders import Fractions
from tasks.datasets.image_dataset import ImageDataset, known_distinct_classes
from tasks.datasets.splits import split_by_fractions

DIGIT_NAMES: tuple[str, ...] = tuple(str(digit) for digit in range(10))


def upscale_digits(images: np.ndarray, image_size: int) -> np.ndarray:
    """Turn 8x8 grey levels into square RGB images.

    Parameters
    ----------
    images : ndarray of float or int, shape (n, 8, 8)
        Grey levels in [0, 16], as ``sklearn.datasets.load_digits().images``.
    image_size : int
        Output height and width in pixels.

    Returns
    -------
    ndarray of uint8, shape (n, image_size, image_size, 3)
        Bilinear upsampling of ``images * 255 / 16``, the same value in all three channels.
    """
    grey = np.clip(np.rint(np.asarray(images, dtype=np.float64) * (255 / 16)), 0, 255).astype(np.uint8)
    size = (image_size, image_size)
    upscaled = np.stack([np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)) for image in grey])
    return np.repeat(upscaled[..., None], 3, axis=-1)


class Config(StageConfig):
    """The bundled ``digits`` dataset: 10 classes, split per class into train, tune and test by ``fractions``.

    ``classes`` keeps only the named digits, in that order (class ``i`` is the digit ``classes[i]``):
    fewer classes make a smaller dataset whose per-class difficulty is the full one's.
    """

    name: Literal["digits"] = "digits"
    image_size: int = Field(32, ge=8, le=256)
    fractions: Fractions = (0.70, 0.10, 0.20)
    seed: int = Field(0, ge=0)
    classes: tuple[str, ...] | None = Field(None, min_length=2)

    @field_validator("classes", mode="before")
    @classmethod
    def _digits_as_names(cls, classes):
        # A digit may be written 3 or "3"; the column holds names, as synthetic_signs' ``classes`` does.
        if isinstance(classes, (list, tuple)):
            return tuple(str(digit) if isinstance(digit, int) and not isinstance(digit, bool) else digit
                         for digit in classes)
        return classes

    @field_validator("classes")
    @classmethod
    def _known_distinct_digits(cls, classes):
        return known_distinct_classes(classes, DIGIT_NAMES, "digit")

    @model_serializer(mode="wrap")
    def _omit_unused_classes(self, handler):
        # Left out when unused, so that configs written before the option keep their artifact keys.
        dumped = handler(self)
        if self.classes is None:
            dumped.pop("classes", None)
        return dumped


def class_names(config: Config) -> tuple[str, ...]:
    """``"0"`` … ``"9"``, or the digits of ``config.classes``: class i is named by its digit."""
    return config.classes or DIGIT_NAMES


def load_dataset(config: Config) -> ImageDataset:
    """Stage ``dataset`` for ``digits``: read the bundled digits, upscale, split stratified by ``fractions``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    kept = [int(name) for name in class_names(config)]
    keep = np.isin(digits.target, kept)
    x = upscale_digits(digits.images[keep], config.image_size)
    # Relabel so that class i is the digit kept[i].
    relabel = np.full(10, -1, dtype=np.int64)
    relabel[kept] = np.arange(len(kept))
    y = relabel[digits.target[keep]]
    train, tune, test = split_by_fractions(y, config.fractions, seed=config.seed)
    return ImageDataset(
        x_train=x[train], y_train=y[train], x_tune=x[tune], y_tune=y[tune],
        x_test=x[test], y_test=y[test], class_names=class_names(config),
    )  # fmt: skip
