"""The dataset artifact: uint8 images and integer labels, split into train, tune and test."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_SPLITS = ("train", "tune", "test")


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Images as uint8 NHWC arrays with int64 labels.

    ``x_tune``/``y_tune`` is the clean held-out set defenders may use (Fine-Pruning, thresholds);
    it is never poisoned and never trained on.

    Attributes
    ----------
    x_train, x_tune, x_test : ndarray of uint8, shape (n, height, width, 3)
    y_train, y_tune, y_test : ndarray of int64, shape (n,), class indices in [0, n_classes)
    class_names : tuple of str, index i names class i
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_tune: np.ndarray
    y_tune: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self):
        for split in _SPLITS:
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
                raise ValueError(f"x_{split} must be uint8 of shape (n, h, w, 3), got {x.dtype} {x.shape}")
            if y.shape != (len(x),):
                raise ValueError(f"y_{split} has shape {y.shape}, expected ({len(x)},)")

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    @property
    def metrics(self) -> dict:
        """Sizes and the content fingerprint, recorded with every trial for provenance."""
        return {
            "fingerprint": self.fingerprint,
            "n_classes": self.n_classes,
            "n_train": len(self.x_train),
            "n_tune": len(self.x_tune),
            "n_test": len(self.x_test),
        }

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 (hex, first 16 chars) of every array's bytes and the class names."""
        digest = hashlib.sha256()
        for split in _SPLITS:
            for prefix in ("x", "y"):
                array = np.ascontiguousarray(getattr(self, f"{prefix}_{split}"))
                digest.update(f"{prefix}_{split}{array.shape}{array.dtype}".encode())
                digest.update(array.tobytes())
        digest.update(json.dumps(self.class_names).encode())
        return digest.hexdigest()[:16]

    def content(self) -> "ImageDataset":
        """What :attr:`fingerprint` covers, and so all a stage keyed by it may read: the whole dataset.

        The dataset stage's children are keyed by the fingerprint, not by the dataset's recipe
        (:class:`~tasks.stage.Stage` ``view``): images decoded to the same arrays from other files
        (re-encoded, copied, another root) feed the same poison, train and defense artifacts.
        """
        return self

    def save(self, directory: Path) -> None:
        for split in _SPLITS:
            np.save(directory / f"x_{split}.npy", getattr(self, f"x_{split}"))
            np.save(directory / f"y_{split}.npy", getattr(self, f"y_{split}"))
        meta = {"class_names": list(self.class_names), "fingerprint": self.fingerprint}
        (directory / "dataset.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: Path) -> "ImageDataset":
        # Memory-mapped: a trial reads only the images it touches, and trials on one node share pages.
        arrays = {
            f"{prefix}_{split}": np.load(directory / f"{prefix}_{split}.npy", mmap_mode="r")
            for split in _SPLITS
            for prefix in ("x", "y")
        }
        meta = json.loads((directory / "dataset.json").read_text())
        return cls(class_names=tuple(meta["class_names"]), **arrays)


def known_distinct_classes(classes, known: tuple[str, ...], noun: str) -> tuple[str, ...] | None:
    """A dataset config's ``classes`` option checked: each one of ``known``, none twice (``noun`` names
    one in the message: ``"sign class"``, ``"digit"``). None stays None (every class)."""
    if classes is None:
        return None
    unknown = [name for name in classes if name not in known]
    if unknown:
        raise ValueError(f"unknown {noun} {unknown[0]!r}; the classes are {', '.join(known)}")
    repeated = sorted({name for name in classes if classes.count(name) > 1}, key=known.index)
    if repeated:
        raise ValueError(f"{noun} {repeated[0]!r} is listed more than once")
    return tuple(classes)
