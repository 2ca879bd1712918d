"""Fine-Pruning (Liu et al. 2018; thesis §2.9, §4.2.4), which ART does not have.

1. Rank the chosen conv layer's channels by mean activation on the clean tuning set.
2. Prune them in increasing order while the tuning-set accuracy drop stays within ``threshold``.
3. Remove the chosen channels physically (:func:`tasks.surgery.prune_channels`).
4. Fine-tune the pruned model on the clean tuning set (``epochs``, ``learning_rate``).

Steps 1-2 are the ``pruning_curve`` stage, computed once per (model, layer) and shared by every
threshold. Each of its steps runs only the layers after the pruned one, on the layer's cached
tuning-set activations with the pruned channels set to zero — the same outputs as a zero-masked
(and so as a physically pruned) model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field

from tasks.config import StageConfig
from tasks.datasets import ImageDataset
from tasks.defenses.filtering import DefenseData
from tasks.poison import PoisonedDataset
from tasks.surgery import conv_layer, prune_channels, tail_model
from tasks.train import TrainConfig, TrainedModel, fit_model


class PruningCurveConfig(StageConfig):
    """Stage ``pruning_curve``: which conv layer (``last_conv``, ``second_to_last_conv`` or a name)."""

    layer: str = "last_conv"
    batch_size: int = Field(256, ge=1)


@dataclass(frozen=True, eq=False)
class PruningCurve:
    """Tuning-set accuracy as channels are pruned.

    Attributes
    ----------
    layer : str, the pruned layer's name
    order : ndarray of int64, shape (width,), channels by increasing mean tuning-set activation
    accuracy : ndarray of float64, shape (width,), ``accuracy[k]`` with ``order[:k]`` pruned
        (k = 0 .. width-1; pruning every channel is not allowed)
    """

    layer: str
    order: np.ndarray
    accuracy: np.ndarray

    @property
    def metrics(self) -> dict:
        return {"layer": self.layer, "width": len(self.order), "base_accuracy": float(self.accuracy[0])}

    def save(self, directory: Path) -> None:
        np.save(directory / "order.npy", self.order)
        np.save(directory / "accuracy.npy", self.accuracy)
        (directory / "curve.json").write_text(json.dumps({"layer": self.layer}))

    @classmethod
    def load(cls, directory: Path) -> "PruningCurve":
        layer = json.loads((directory / "curve.json").read_text())["layer"]
        return cls(layer, np.load(directory / "order.npy"), np.load(directory / "accuracy.npy"))


def _predict_labels(model, inputs: list[np.ndarray], batch_size: int) -> np.ndarray:
    n = len(inputs[0])
    return np.concatenate([
        np.argmax(model.predict_on_batch([part[start : start + batch_size] for part in inputs]), axis=1)
        for start in range(0, n, batch_size)
    ])  # fmt: skip


def pruning_curve(model, layer: str, x_tune: np.ndarray, y_tune: np.ndarray, batch_size: int = 256) -> PruningCurve:
    """Rank ``layer``'s channels and measure the tuning accuracy after pruning each prefix of the ranking.

    Parameters
    ----------
    model : keras.Model
    layer : str, a Conv2D layer of ``model``
    x_tune : ndarray of uint8, shape (n, h, w, c); y_tune : ndarray of int, shape (n,)
    """
    import keras

    tail, extra = tail_model(model, layer)
    head = keras.Model(model.input, [model.get_layer(name).output for name in (layer, *extra)])
    cached = [np.concatenate(parts) for parts in zip(*(
        [np.asarray(out) for out in _as_list(head.predict_on_batch(np.asarray(x_tune[start : start + batch_size])))]
        for start in range(0, len(x_tune), batch_size)
    ))]  # fmt: skip
    activations, rest = cached[0], cached[1:]
    order = np.argsort(activations.mean(axis=(0, 1, 2)), kind="stable").astype(np.int64)
    accuracy = np.empty(len(order))
    pruned = activations.copy()
    for k in range(len(order)):
        if k:
            pruned[..., order[k - 1]] = 0.0
        accuracy[k] = np.mean(_predict_labels(tail, [pruned, *rest], batch_size) == y_tune)
    return PruningCurve(layer, order, accuracy)


def _as_list(value) -> list:
    return value if isinstance(value, (list, tuple)) else [value]


def compute_pruning_curve(
    config: PruningCurveConfig, dataset: ImageDataset, poisoned: PoisonedDataset, current: TrainedModel
) -> PruningCurve:
    """Stage ``pruning_curve`` of ``current.model`` on the dataset's clean tuning set."""
    layer = conv_layer(current.model, config.layer)
    return pruning_curve(current.model, layer, np.asarray(dataset.x_tune), np.asarray(dataset.y_tune), config.batch_size)


def channels_to_prune(accuracy: np.ndarray, threshold: float) -> int:
    """How many channels to prune: stop before the first step whose drop from ``accuracy[0]`` exceeds ``threshold``.

    ``threshold`` is a fraction (0.04 = four percentage points). Larger thresholds never prune fewer.
    """
    drop = accuracy[0] - accuracy
    exceeded = np.flatnonzero(drop > threshold + 1e-12)
    return int(exceeded[0] - 1) if len(exceeded) else len(accuracy) - 1


class Params(StageConfig):
    """Parameters of ``fp``: the thesis grid is layer x threshold (0.02, 0.04, 0.06)."""

    layer: str = Field("last_conv", description="last_conv, second_to_last_conv, or a Conv2D layer name")
    threshold: float = Field(0.04, ge=0, le=1, description="largest tuning-accuracy drop allowed (fraction)")
    epochs: int = Field(2, ge=0, le=1000, description="fine-tuning epochs on the clean tuning set")
    learning_rate: float = Field(1e-4, gt=0, le=10)


def preparation(params: Params) -> tuple[str, PruningCurveConfig]:
    return "pruning_curve", PruningCurveConfig(layer=params.layer)


def defend(params: Params, model, data: DefenseData, train: TrainConfig, prepared: PruningCurve):
    """Prune ``prepared.layer`` by the curve and ``threshold``, then fine-tune on the tuning set.

    The training data is passed on whole (``kept`` is all True): Fine-Pruning repairs the model.
    """
    curve = prepared
    n_pruned = channels_to_prune(curve.accuracy, params.threshold)
    # Always a new model (pruning nothing copies it): the parent stage's model stays as it was.
    model = prune_channels(model, curve.layer, curve.order[:n_pruned])
    if params.epochs:
        tuning = train.model_copy(update={"epochs": params.epochs, "learning_rate": params.learning_rate})
        model = fit_model(tuning, model, data.x_tune, data.y_tune)
    metrics = {
        # Not "layer": that is the parameter's name (last_conv), and a row holds both.
        "pruned_layer": curve.layer,
        "layer_width": len(curve.order),
        "pruned_channels": n_pruned,
        "tune_acc_before": float(curve.accuracy[0]),
        "tune_acc_pruned": float(curve.accuracy[n_pruned]),
        "tune_acc_curve": [float(a) for a in curve.accuracy],
    }
    return model, np.ones(len(data.y), dtype=bool), metrics
