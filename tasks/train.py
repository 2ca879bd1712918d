"""Training: the ``train`` stage and the :class:`TrainedModel` artifact every later stage passes on."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

import tasks.runtime  # noqa: F401  (selects the Keras backend before keras is imported)
from tasks.config import StageConfig
from tasks.datasets import ImageDataset
from tasks.models import MODELS, build_model
from tasks.poison import PoisonedDataset

if TYPE_CHECKING:
    import keras

# Names of keras.optimizers classes. Keras is imported where it is used, so that configs (and a
# sweep's dry run) load without TensorFlow.
OPTIMIZERS = {"adam": "Adam", "sgd": "SGD", "adadelta": "Adadelta", "rmsprop": "RMSprop"}


class TrainConfig(StageConfig):
    """How a model is trained (thesis Table 3.4 gives the defaults of each thesis search space)."""

    model: Literal[tuple(MODELS)]  # type: ignore[valid-type]
    epochs: int = Field(10, ge=1, le=1000)
    batch_size: int = Field(32, ge=1, le=65536)
    optimizer: Literal[tuple(OPTIMIZERS)] = "adam"  # type: ignore[valid-type]
    learning_rate: float = Field(0.001, gt=0, le=10)
    seed: int = Field(0, ge=0)


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """A model and the part of the poisoned training set it was trained on.

    Attributes
    ----------
    model : keras.Model
    keep : ndarray of int64, shape (n_kept,)
        Sorted indices into the poisoned training set (:meth:`PoisonedDataset.training_set`) that
        this model saw; defenses that filter data shrink it and pass it on.
    metrics : dict of str to JSON scalars
        What the stage that produced the model measured (defense detection counts, epochs...).
    """

    model: "keras.Model"
    keep: np.ndarray
    metrics: dict = field(default_factory=dict)

    def save(self, directory: Path) -> None:
        self.model.save(directory / "model.keras")
        np.save(directory / "keep.npy", self.keep)
        (directory / "metrics.json").write_text(json.dumps(self.metrics, indent=1, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> "TrainedModel":
        import keras

        return cls(
            model=keras.models.load_model(directory / "model.keras", compile=False),
            keep=np.load(directory / "keep.npy"),
            metrics=json.loads((directory / "metrics.json").read_text()),
        )


def fit_model(config: TrainConfig, model: "keras.Model", x: np.ndarray, y: np.ndarray) -> "keras.Model":
    """Train ``model`` in place on uint8 images ``x`` (n, h, w, c) and int labels ``y`` (n,).

    Seeds Keras (Python, NumPy and TensorFlow generators) with ``config.seed`` first: Keras draws
    the batch order from that global state and offers no per-call generator.
    """
    import keras

    keras.utils.set_random_seed(config.seed)
    optimizer = getattr(keras.optimizers, OPTIMIZERS[config.optimizer])
    model.compile(
        optimizer=optimizer(learning_rate=config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x, y, batch_size=config.batch_size, epochs=config.epochs, shuffle=True, verbose=0)
    return model


def train_from_scratch(config: TrainConfig, x: np.ndarray, y: np.ndarray, n_classes: int) -> "keras.Model":
    """A new ``config.model`` trained on ``x`` (uint8, (n, h, w, c)) and ``y`` (int, (n,)).

    The initial weights are drawn from ``config.seed`` as well.
    """
    import keras

    keras.utils.set_random_seed(config.seed)
    model = build_model(config.model, x.shape[1:], n_classes)
    return fit_model(config, model, x, y)


def train_model(config: TrainConfig, dataset: ImageDataset, poisoned: PoisonedDataset) -> TrainedModel:
    """Stage ``train``: the (backdoored) model trained on the whole poisoned training set."""
    x, y, _ = poisoned.training_set(dataset)
    model = train_from_scratch(config, x, y, dataset.n_classes)
    return TrainedModel(model=model, keep=np.arange(len(x), dtype=np.int64), metrics={"n_train": len(x)})
