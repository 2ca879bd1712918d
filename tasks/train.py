"""Training: the ``train`` stage and the :class:`TrainedModel` artifact every later stage passes on."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
from pydantic import Field, model_serializer, model_validator

import tasks.runtime  # noqa: F401  (selects the Keras backend before keras is imported)
from tasks.config import StageConfig
from tasks.datasets import ImageDataset
from tasks.errors import ModelError
from tasks.file_identity import file_sha256
from tasks.models import MODELS, build_model, weights_problem
from tasks.poison import PoisonedDataset

if TYPE_CHECKING:
    import keras

# Names of keras.optimizers classes. Keras is imported where it is used, so that configs (and a
# sweep's dry run) load without TensorFlow.
OPTIMIZERS = {"adam": "Adam", "sgd": "SGD", "adadelta": "Adadelta", "rmsprop": "RMSprop"}


class TrainConfig(StageConfig):
    """How a model is trained (thesis Table 3.4 gives the defaults of each thesis search space).

    ``weights`` (a local file of pretrained weights) and ``random_init`` apply to the models that
    fine-tune pretrained weights (``vgg16_face``), which need exactly one of them; the others train
    from scratch and take neither. Only the combination is checked here: the file is looked for
    when the search space is loaded and when the model is built.

    ``lr_schedule`` ``cosine`` decays the learning rate from ``learning_rate`` to 0 along a half
    cosine over all ``epochs`` (one step a batch); the last epochs then move the weights little, so
    the model a run ends with depends less on where its last batch fell. (BackdoorBench anneals
    along a cosine too, with PyTorch's ``CosineAnnealingLR(T_max=100)`` stepped once an epoch, so its
    50 epochs end at half the starting rate; ``utils/aggregate_block/train_settings_generate.py``.)
    Left out of the canonical JSON when ``constant`` (the schedule of every config written before
    the option existed), so those keep their keys.

    ``weights_sha256`` is the weights file's SHA-256, filled in when the search space is loaded
    (never written by hand), so that the stages reading the file are keyed by its content: editing
    it in place recomputes them. Left out of the canonical JSON when None (a config built without
    the loader, or with no weights file), so such configs keep the keys they had before it existed.
    """

    model: Literal[tuple(MODELS)]  # type: ignore[valid-type]
    epochs: int = Field(10, ge=1, le=1000)
    batch_size: int = Field(32, ge=1, le=65536)
    optimizer: Literal[tuple(OPTIMIZERS)] = "adam"  # type: ignore[valid-type]
    learning_rate: float = Field(0.001, gt=0, le=10)
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="constant: learning_rate throughout; cosine: decayed from learning_rate to 0 "
                                "along a half cosine over every batch of every epoch")
    weights: str | None = Field(None, min_length=1, description="local pretrained weights file (vgg16_face)")
    random_init: bool = Field(False, description="vgg16_face without pretrained weights, asked for explicitly")
    seed: int = Field(0, ge=0)
    weights_sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the weights file, computed when the space is loaded"
    )

    @model_validator(mode="after")
    def _weights_fit_model(self) -> "TrainConfig":
        problem = weights_problem(self.model, self.weights, self.random_init)
        if problem:
            raise ValueError(problem[1])
        if self.weights_sha256 is not None and self.weights is None:
            raise ValueError("weights_sha256 is the digest of train.weights, which is not set")
        return self

    @model_serializer(mode="wrap")
    def _omit_unset_options(self, handler):
        # Left out when unset, so that configs without a weights file (every model but vgg16_face)
        # or a schedule keep the canonical JSON, hence the artifact keys, they had before the
        # options existed.
        dumped = handler(self)
        if self.weights_sha256 is None:
            dumped.pop("weights_sha256", None)
        if self.lr_schedule == "constant":
            dumped.pop("lr_schedule", None)
        return dumped


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
        optimizer=optimizer(learning_rate=learning_rate(config, len(x))),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x, y, batch_size=config.batch_size, epochs=config.epochs, shuffle=True, verbose=0)
    return model


def learning_rate(config: TrainConfig, n_samples: int):
    """The learning rate (a float) or schedule (a Keras schedule, stepped once a batch) that
    ``config`` trains ``n_samples`` images with."""
    import keras

    if config.lr_schedule == "constant":
        return config.learning_rate
    batches = config.epochs * -(-n_samples // config.batch_size)
    return keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=batches, alpha=0.0)


def tuning_config(config: TrainConfig, epochs: int, learning_rate: float) -> TrainConfig:
    """The recipe of a repair's fine-tuning of a model trained with ``config``: ``epochs`` at a
    constant ``learning_rate`` (the repair's own parameters), with ``config``'s model, optimizer,
    batch size and seed. Constant whatever ``config.lr_schedule``: a repair's learning rate is the
    one its parameters state, not the start of a decay."""
    return config.model_copy(update={"epochs": epochs, "learning_rate": learning_rate, "lr_schedule": "constant"})


def copy_model(model: "keras.Model") -> "keras.Model":
    """An independent, uncompiled copy of ``model`` with the same weights."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def train_from_scratch(config: TrainConfig, x: np.ndarray, y: np.ndarray, n_classes: int,
                       pruned: Sequence[tuple[str, Sequence[int]]] = ()) -> "keras.Model":
    """A new ``config.model`` trained on ``x`` (uint8, (n, h, w, c)) and ``y`` (int, (n,)).

    The initial weights are drawn from ``config.seed`` as well; a pretrained model starts from
    ``config.weights`` again, with a freshly drawn last layer. ``pruned`` lists ``(layer, channel
    indices)`` removed in that order before training: the architecture of a Fine-Pruned model,
    re-initialised.
    """
    import keras

    from tasks.surgery import prune_channels

    keras.utils.set_random_seed(config.seed)
    model = build_model(config.model, x.shape[1:], n_classes, weights=config.weights, random_init=config.random_init)
    check_weights_unchanged(config)
    for layer, channels in pruned:
        if len(channels):  # a Fine-Pruning that pruned nothing left the architecture as it was
            model = prune_channels(model, layer, channels)
    return fit_model(config, model, x, y)


def check_weights_unchanged(config: TrainConfig) -> None:
    """ModelError if ``config.weights`` no longer holds the bytes whose SHA-256 the recipe carries.

    The artifact would otherwise be stored under the key of other weights (the file was edited
    after the search space was loaded, or a node holds another copy).
    """
    if config.weights is None or config.weights_sha256 is None:
        return
    used = file_sha256(config.weights)
    if used != config.weights_sha256:
        raise ModelError(config.weights, "train.weights", (
            f"the file changed since the search space was loaded (SHA-256 {used[:12]}... now, "
            f"{config.weights_sha256[:12]}... then); load the search space again"))


def train_model(config: TrainConfig, dataset: ImageDataset, poisoned: PoisonedDataset) -> TrainedModel:
    """Stage ``train``: the (backdoored) model trained on the whole poisoned training set."""
    x, y, _ = poisoned.training_set(dataset)
    model = train_from_scratch(config, x, y, dataset.n_classes)
    metrics = {"n_train": len(x)}
    if config.weights is not None:
        # Which weights were used: checked against the recipe's digest above when it has one.
        metrics["weights_sha256"] = config.weights_sha256 or file_sha256(config.weights)
    return TrainedModel(model=model, keep=np.arange(len(x), dtype=np.int64), metrics=metrics)
