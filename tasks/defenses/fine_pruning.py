"""Fine-Pruning (Liu et al. 2018; thesis §2.9, §4.2.4), which ART does not have.

1. Rank the chosen conv layer's channels by mean activation on the clean tuning set.
2. Prune them in increasing order while the tuning-set accuracy drop stays within ``threshold``.
3. Remove the chosen channels physically (:func:`tasks.surgery.prune_channels`).
4. Fine-tune the pruned model on the clean tuning set (``epochs``, ``learning_rate``).

Steps 1-2 are the ``pruning_curve`` stage, computed once per (model, layer) and shared by every
threshold. Each of its steps runs only the layers after the pruned one, on the layer's cached
tuning-set activations with the pruned channels set to zero — the same outputs as a zero-masked
(and so as a physically pruned) model. Choosing the channels by ``threshold`` is the ``pruning``
stage (no model, named by a digest of the layer and channels), and steps 3-4 the ``fine_tune``
stage, keyed by the channels actually pruned: thresholds that prune alike share one fine-tuning.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field

from tasks.config import StageConfig
from tasks.datasets import ImageDataset
from tasks.methods import Metric, ModelRepair
from tasks.stage import Stage
from tasks.surgery import conv_layer, prune_channels, tail_model
from tasks.train import TrainConfig, TrainedModel, copy_model, fit_model, tuning_config


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
    # A tuning set smaller than a batch leaves room for several prefixes in one call: each call of the
    # tail model costs far more than its few images (512 calls for a VGG layer otherwise).
    n = len(activations)
    per_call = max(1, batch_size // max(n, 1))
    if per_call == 1:  # a batch or more of images: one prefix a call, pruned in place (no copy a step)
        pruned = activations.copy()
        for k in range(len(order)):
            if k:
                pruned[..., order[k - 1]] = 0.0
            accuracy[k] = np.mean(_predict_labels(tail, [pruned, *rest], batch_size) == y_tune)
        return PruningCurve(layer, order, accuracy)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))  # channel -> its position in the ranking
    for first in range(0, len(order), per_call):
        prefixes = np.arange(first, min(first + per_call, len(order)))
        kept = rank[None, :] >= prefixes[:, None]  # (prefixes, channels): True = not yet pruned
        pruned = np.where(kept[:, None, None, None, :], activations[None], 0.0).astype(activations.dtype, copy=False)
        inputs = [pruned.reshape(-1, *activations.shape[1:]), *(np.concatenate([part] * len(prefixes)) for part in rest)]
        labels = _predict_labels(tail, inputs, batch_size).reshape(len(prefixes), n)
        accuracy[prefixes] = (labels == np.asarray(y_tune)[None, :]).mean(axis=1)
    return PruningCurve(layer, order, accuracy)


def _as_list(value) -> list:
    return value if isinstance(value, (list, tuple)) else [value]


def compute_pruning_curve(config: PruningCurveConfig, dataset: ImageDataset, model: TrainedModel) -> PruningCurve:
    """Stage ``pruning_curve`` of ``model.model`` on the dataset's clean tuning set."""
    layer = conv_layer(model.model, config.layer)
    return pruning_curve(model.model, layer, np.asarray(dataset.x_tune), np.asarray(dataset.y_tune), config.batch_size)


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


class PruningConfig(StageConfig):
    """Stage ``pruning``: the largest tuning-accuracy drop allowed (fraction)."""

    threshold: float = Field(ge=0, le=1)


@dataclass(frozen=True, eq=False)
class ChannelSelection:
    """Which channels of ``layer`` Fine-Pruning removes (``channels``: int64, in pruning order), no model.

    ``metrics`` holds what the row shows and ``selection_digest``, which the fine-tuning is keyed by:
    thresholds that prune the same channels share one fine-tuning.
    """

    layer: str | None
    channels: np.ndarray
    metrics: dict

    def selected(self) -> "ChannelSelection":
        """What ``selection_digest`` covers: the layer and the channels, without the curve's metrics;
        no layer when no channel is pruned (the model is unchanged whatever the layer)."""
        return ChannelSelection(self.layer if len(self.channels) else None, self.channels, {})

    def save(self, directory: Path) -> None:
        np.save(directory / "channels.npy", self.channels)
        (directory / "selection.json").write_text(json.dumps({"layer": self.layer, "metrics": self.metrics}))

    @classmethod
    def load(cls, directory: Path) -> "ChannelSelection":
        facts = json.loads((directory / "selection.json").read_text())
        return cls(facts["layer"], np.load(directory / "channels.npy"), facts["metrics"])


def selection_digest(layer: str | None, channels: np.ndarray) -> str:
    """The digest the fine-tuning is keyed by: the layer and the channels pruned, in order. Pruning
    nothing has one digest whatever the layer, so Fine-Pruning that prunes nothing and plain
    fine-tuning (``fine_tune``) share one fine-tuning."""
    channels = np.asarray(channels, dtype=np.int64)
    return hashlib.sha256(json.dumps([layer if len(channels) else None, channels.tolist()]).encode()).hexdigest()[:24]


def select_channels(config: PruningConfig, curve: PruningCurve) -> ChannelSelection:
    """Stage ``pruning``: the channels to prune by ``curve`` and ``config.threshold``."""
    n_pruned = channels_to_prune(curve.accuracy, config.threshold)
    channels = np.asarray(curve.order[:n_pruned], dtype=np.int64)
    digest = selection_digest(curve.layer, channels)
    return ChannelSelection(curve.layer, channels, {
        # Not "layer": that is the parameter's name (last_conv), and a row holds both.
        "pruned_layer": curve.layer,
        "layer_width": len(curve.order),
        "pruned_channels": n_pruned,
        "tune_acc_before": float(curve.accuracy[0]),
        "tune_acc_pruned": float(curve.accuracy[n_pruned]),
        "tune_acc_curve": [float(a) for a in curve.accuracy],
        "selection_digest": digest,
    })


class NothingPrunedConfig(StageConfig):
    """Stage ``pruning`` of a repair that prunes nothing (plain fine-tuning): no parameters."""


def nothing_pruned(config: NothingPrunedConfig) -> ChannelSelection:
    """Stage ``pruning`` that selects no channel: the parent of plain fine-tuning's ``fine_tune``."""
    channels = np.zeros(0, dtype=np.int64)
    return ChannelSelection(None, channels, {"pruned_channels": 0, "selection_digest": selection_digest(None, channels)})


class FineTuneConfig(StageConfig):
    """Stage ``fine_tune``: ``epochs`` at ``learning_rate`` on the clean tuning set, otherwise as ``train``."""

    train: TrainConfig
    epochs: int = Field(ge=0)
    learning_rate: float = Field(gt=0)


def fine_tune(config: FineTuneConfig, dataset: ImageDataset, model: TrainedModel, selection: ChannelSelection) -> TrainedModel:
    """Stage ``fine_tune``: remove ``selection``'s channels from ``model`` physically, then fine-tune
    on the clean tuning set. Always a new model (pruning nothing copies it): the parent stays as it was."""
    pruned = (prune_channels(model.model, selection.layer, selection.channels) if len(selection.channels)
              else copy_model(model.model))
    if config.epochs:
        tuning = tuning_config(config.train, config.epochs, config.learning_rate)
        pruned = fit_model(tuning, pruned, np.asarray(dataset.x_tune), np.asarray(dataset.y_tune))
    return TrainedModel(model=pruned, keep=model.keep, metrics={"pruned_layer": selection.layer,
                                                                 "pruned_channels": len(selection.channels)})


PRUNING_CURVE = Stage("pruning_curve", 2, compute_pruning_curve, PruningCurve)
# Version 2: a selection of no channel has one digest whatever the layer (selection_digest).
PRUNING = Stage("pruning", 2, select_channels, ChannelSelection, identity="selection_digest",
                view=ChannelSelection.selected)
NOTHING_PRUNED = Stage("pruning", 2, nothing_pruned, ChannelSelection, identity="selection_digest",
                       view=ChannelSelection.selected)
FINE_TUNE = Stage("fine_tune", 1, fine_tune, TrainedModel)
STAGES = (PRUNING_CURVE, PRUNING, FINE_TUNE)


class FinePruning(ModelRepair):
    """Fine-Pruning (Liu et al. 2018): prune the channels clean data leaves dormant, then fine-tune."""

    name = "fp"
    Params = Params
    stages = STAGES
    metrics = (
        Metric("pruned_layer", str, "the pruned conv layer's name"),
        Metric("layer_width", int, "its channels before pruning"),
        Metric("pruned_channels", int, "channels removed"),
        Metric("tune_acc_before", float, "tuning-set accuracy before pruning"),
        Metric("tune_acc_pruned", float, "tuning-set accuracy after pruning, before fine-tuning"),
        Metric("tune_acc_curve", list[float], "tuning-set accuracy with the k least active channels pruned"),
        Metric("fine_tune_key", str, "key of the fine-tuned model handed on"),
    )

    def repaired(self, params: Params, graph, label: str):
        """The shared pruning curve of the current model, the channel selection, and the fine-tuning
        keyed by the channels actually pruned.

        The training data is passed on whole: Fine-Pruning repairs the model. The pruned
        architecture is handed on, so a later full retraining re-initialises the pruned network.
        """
        curve, _ = graph.run(f"{label}_pruning_curve", PRUNING_CURVE, PruningCurveConfig(layer=params.layer),
                             graph.dataset, graph.model)
        selection, record = graph.run(f"{label}_pruning", PRUNING, PruningConfig(threshold=params.threshold), curve)
        config = FineTuneConfig(train=graph.train_config, epochs=params.epochs, learning_rate=params.learning_rate)
        tuned, _ = graph.run(f"{label}_fine_tune", FINE_TUNE, config, graph.dataset, graph.model, selection)
        graph.architecture = (*graph.architecture, selection)
        shown = {k: v for k, v in record.metrics.items() if k != "selection_digest"}
        return tuned, {**shown, "fine_tune_key": tuned.key}
