"""``neural_cleanse``: reverse-engineer the smallest trigger for every class; flag a class whose
trigger is abnormally small, and optionally unlearn it.

B. Wang, Y. Yao, S. Shan, H. Li, B. Viswanath, H. Zheng, B. Y. Zhao, "Neural Cleanse: Identifying
and Mitigating Backdoor Attacks in Neural Networks", IEEE S&P 2019. For every class c, a mask m
(h x w, shared over channels) and a pattern p minimise ``CE(f((1 - m) x + m p), c) + lambda |m|_1``
on clean tuning images, with the authors' schedule as issue 19 states it: lambda starts at
``init_cost`` and is doubled (halved) after ``patience`` steps whose attack success is above
(below) ``attack_succ_threshold`` (the authors' code multiplies by 1.5 and divides by 1.5^1.5);
Adam at ``learning_rate`` 0.1 (betas 0.5, 0.9, as their code). All
classes are optimised together, one compiled step over a batch stamped with every class's
candidate. A class's result is its smallest mask that reached the threshold.

The paper runs up to 1,000 steps (its "epochs" of mini-batches) on all clean data. The defaults
here keep one ``gtsrb_cnn`` with 10 classes within about 2 minutes on 2 CPU cores: ``steps`` 500,
``samples_per_class`` 20 tuning images of each class as the pool the batches (8, each stamped with
all 10 candidates: 80 images a step) are drawn from, and, as the authors, a class is done once its
lambda has gone both up and down and its best mask has not shrunk by 0.1 % for
``early_stop_patience`` 50 steps (the loop ends when every class is).

Anomaly index of class c: ``(median - L1_c) / (1.4826 * MAD)`` over the classes' mask L1 norms; a
class is flagged when it exceeds ``anomaly_threshold`` (2.0): small triggers only. ``repair:
unlearn`` fine-tunes on the clean tuning set where an ``unlearning_ratio`` share of the images of
*other* classes carry a flagged class's reversed trigger and keep their true labels (ART 1.20.1
stamps the flagged class's own images, a no-op; SPEC §2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from tasks.config import StageConfig
from tasks.datasets import ImageDataset
from tasks.methods import CleanData, Context, Inspected, Metric, ModelInspection
from tasks.stage import Stage
from tasks.train import TrainedModel, copy_model, fit_model, tuning_config


class ReverseSettings(StageConfig):
    """The reverse engineering's optimisation settings."""

    steps: int = Field(500, ge=1, le=100_000, description="optimisation steps at most (the paper: 1,000)")
    samples_per_class: int = Field(20, ge=1, description="clean tuning images of each class in the pool")
    batch_size: int = Field(8, ge=1, description="pool images per step, each stamped with every class's candidate")
    init_cost: float = Field(1e-3, gt=0, description="lambda, the weight of the mask's L1 norm, at the start")
    attack_succ_threshold: float = Field(0.99, gt=0, le=1, description="attack success a candidate must reach")
    patience: int = Field(5, ge=1, description="steps above (below) the threshold before lambda doubles (halves)")
    learning_rate: float = Field(0.1, gt=0)
    early_stop_patience: int = Field(50, ge=1, description="steps without a smaller successful mask, once lambda "
                                                               "has gone both up and down, before a class stops")


class ReverseConfig(ReverseSettings):
    """Stage ``reverse_triggers``: the settings and the trial's seed; not how the result is flagged
    or repaired, so configurations that differ only there share it."""

    seed: int = 0


class Params(ReverseSettings):
    """Parameters of ``neural_cleanse``: the reverse engineering's, then the flagging's and repair's."""

    anomaly_threshold: float = Field(2.0, gt=0, description="anomaly index above which a class is flagged")
    repair: Literal["unlearn", "none"] = Field("unlearn", description="unlearn the flagged classes' triggers, or only inspect")
    unlearning_ratio: float = Field(0.2, gt=0, le=1, description="share of tuning images stamped with a flagged trigger")
    unlearning_epochs: int = Field(2, ge=1, le=1000)
    unlearning_learning_rate: float = Field(1e-3, gt=0, le=10)


@dataclass(frozen=True, eq=False)
class ReversedTriggers:
    """The ``reverse_triggers`` stage's artifact, per class: ``masks`` float32 (k, h, w) in [0, 1],
    ``patterns`` float32 (k, h, w, c) in [0, 255], ``l1`` (k,) the masks' L1 norms, ``reached``
    bool (k,) whether the mask reached the attack-success threshold; ``steps_run``."""

    masks: np.ndarray
    patterns: np.ndarray
    l1: np.ndarray
    reached: np.ndarray
    steps_run: int

    @property
    def metrics(self) -> dict:
        return {"steps_run": self.steps_run, "classes_reached": int(self.reached.sum())}

    def save(self, directory: Path) -> None:
        np.savez(directory / "reversed.npz", masks=self.masks, patterns=self.patterns, l1=self.l1,
                 reached=self.reached, steps_run=np.array(self.steps_run))

    @classmethod
    def load(cls, directory: Path) -> "ReversedTriggers":
        with np.load(directory / "reversed.npz") as stored:
            return cls(stored["masks"], stored["patterns"], stored["l1"], stored["reached"], int(stored["steps_run"]))


def reverse_triggers(model, x: np.ndarray, y: np.ndarray, n_classes: int, config: ReverseConfig) -> ReversedTriggers:
    """Every class's smallest trigger for ``model`` on clean images ``x`` (uint8 (n, h, w, c)) with
    labels ``y`` (n,): the optimisation of the module's docstring."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(config.seed)
    pool = np.concatenate([rng.permutation(np.flatnonzero(y == c))[: config.samples_per_class] for c in range(n_classes)])
    if not len(pool):
        raise ValueError("neural_cleanse needs clean tuning images; the tuning set is empty")
    images = np.asarray(x)[pool].astype(np.float32)
    height, width, channels = images.shape[1:]
    k, batch = n_classes, min(config.batch_size, len(pool))
    # tanh parametrisation, as the authors: masks in [0, 1], patterns in [0, 255], unconstrained variables.
    mask_var = tf.Variable(rng.uniform(-1, 1, (k, height, width, 1)).astype(np.float32) * 0.1 - 2.0)
    pattern_var = tf.Variable(rng.uniform(-1, 1, (k, height, width, channels)).astype(np.float32))
    cost = tf.Variable(np.full(k, config.init_cost, dtype=np.float32))
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate, beta_1=0.5, beta_2=0.9)
    labels = tf.repeat(tf.range(k), batch)

    @tf.function(reduce_retracing=True)
    def step(batch_images):
        with tf.GradientTape() as tape:
            mask = tf.tanh(mask_var) / 2 + 0.5
            pattern = (tf.tanh(pattern_var) / 2 + 0.5) * 255.0
            stamped = (1 - mask)[:, None] * batch_images[None] + (mask * pattern)[:, None]
            probabilities = model(tf.reshape(stamped, (k * batch, height, width, channels)), training=False)
            entropy = tf.reshape(keras.losses.sparse_categorical_crossentropy(labels, probabilities), (k, batch))
            l1 = tf.reduce_sum(mask, axis=[1, 2, 3])
            loss = tf.reduce_sum(tf.reduce_mean(entropy, axis=1) + cost * l1)
        optimizer.apply_gradients(zip(tape.gradient(loss, [mask_var, pattern_var]), [mask_var, pattern_var]))
        hits = tf.cast(tf.equal(tf.argmax(probabilities, axis=1, output_type=tf.int32), labels), tf.float32)
        # The candidates that were measured, from before the update, so a kept best mask is one
        # whose success and L1 norm were seen.
        return tf.reduce_mean(tf.reshape(hits, (k, batch)), axis=1), l1, mask[..., 0], pattern

    best_l1 = np.full(k, np.inf)
    best_masks = np.zeros((k, height, width), np.float32)
    best_patterns = np.zeros((k, height, width, channels), np.float32)
    above, below, stale = np.zeros(k, int), np.zeros(k, int), np.zeros(k, int)
    reached, raised, lowered = np.zeros(k, bool), np.zeros(k, bool), np.zeros(k, bool)
    steps_run = 0
    for steps_run in range(1, config.steps + 1):
        success, l1, masks, patterns = (value.numpy() for value in step(
            tf.constant(images[rng.choice(len(pool), batch, replace=False)])))
        succeeded = success >= config.attack_succ_threshold
        improved = succeeded & (l1 < best_l1)
        shrunk = succeeded & (l1 < best_l1 * (1 - 1e-3))  # by more than 0.1 %: the authors' early-stop threshold
        best_masks[improved], best_patterns[improved], best_l1[improved] = masks[improved], patterns[improved], l1[improved]
        reached |= succeeded
        stale = np.where(shrunk, 0, stale + reached)
        above, below = np.where(succeeded, above + 1, 0), np.where(succeeded, 0, below + 1)
        raised |= above >= config.patience
        lowered |= below >= config.patience
        factor = np.where(above >= config.patience, 2.0, np.where(below >= config.patience, 0.5, 1.0))
        cost.assign((cost.numpy() * factor).astype(np.float32))
        above[above >= config.patience], below[below >= config.patience] = 0, 0
        # As the authors: a class is done once lambda has gone both up and down (it found the
        # balance) and its best mask has not shrunk for early_stop_patience steps.
        if (raised & lowered & (stale >= config.early_stop_patience)).all():
            break
    # A class that never reached the threshold keeps its last measured candidate.
    missing = ~reached
    best_masks[missing], best_patterns[missing], best_l1[missing] = masks[missing], patterns[missing], l1[missing]
    return ReversedTriggers(best_masks, best_patterns.astype(np.float32), best_l1, reached, steps_run)


def reverse_stage(config: ReverseConfig, dataset: ImageDataset, model: TrainedModel) -> ReversedTriggers:
    """Stage ``reverse_triggers``: every class's smallest trigger for the model, on the clean tuning set."""
    return reverse_triggers(model.model, dataset.x_tune, dataset.y_tune, dataset.n_classes, config)


REVERSE_TRIGGERS = Stage("reverse_triggers", 1, reverse_stage, ReversedTriggers)


def anomaly_index(l1: np.ndarray) -> np.ndarray:
    """``(median - l1) / (1.4826 * MAD)`` per class (positive for a mask smaller than the median)."""
    l1 = np.asarray(l1, dtype=np.float64)
    median = np.median(l1)
    spread = 1.4826 * np.median(np.abs(l1 - median))
    return (median - l1) / max(spread, 1e-12)


def stamp_reversed(x: np.ndarray, mask: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """``(1 - mask) x + mask pattern`` rounded to uint8; x (n, h, w, c), mask (h, w), pattern (h, w, c)."""
    mixed = (1 - mask[..., None]) * np.asarray(x, dtype=np.float32) + mask[..., None] * pattern
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


class NeuralCleanse(ModelInspection):
    """Neural Cleanse (Wang et al. 2019): flag classes with an abnormally small reversed trigger; unlearn them."""

    name = "neural_cleanse"
    Params = Params
    stages = (REVERSE_TRIGGERS,)
    metrics = (
        Metric("anomaly_index", float, "anomaly index of the class with the smallest mask"),
        Metric("mask_l1", list[float], "L1 norm of each class's reversed mask (pixels)"),
        Metric("unlearned_images", int, "tuning images stamped with a flagged class's trigger in the unlearning"),
    )

    def prepare(self, params: Params, graph, label: str) -> tuple:
        config = ReverseConfig(**params.model_dump(include=set(ReverseSettings.model_fields)),
                               seed=graph.train_config.seed)
        ref, _ = graph.run(f"{label}_reverse_triggers", REVERSE_TRIGGERS, config, graph.dataset, graph.model)
        return (ref,)

    def inspect(self, params: Params, model, data: CleanData, context: Context) -> Inspected:
        (reversed_triggers,) = context.prepared
        index = anomaly_index(reversed_triggers.l1)
        metrics = {"anomaly_index": float(index[np.argmin(reversed_triggers.l1)]),
                   "mask_l1": [float(v) for v in reversed_triggers.l1]}
        return Inspected(index, index > params.anomaly_threshold, metrics,
                         {"masks": reversed_triggers.masks, "patterns": reversed_triggers.patterns})

    def repairs(self, params: Params) -> bool:
        return params.repair == "unlearn"

    def repair(self, params: Params, inspected: Inspected, model, data: CleanData, context: Context):
        flagged = np.flatnonzero(inspected.flagged)
        x, y = np.array(data.x_tune), np.asarray(data.y_tune)
        rng = np.random.default_rng(context.seed)
        chosen = rng.permutation(len(y))[: int(round(params.unlearning_ratio * len(y)))]
        stamped = 0
        for index in chosen:
            others = flagged[flagged != y[index]]  # a trigger on an image of *another* class
            if len(others):
                c = rng.choice(others)
                x[index] = stamp_reversed(x[index:index + 1], inspected.arrays["masks"][c], inspected.arrays["patterns"][c])[0]
                stamped += 1
        repaired = copy_model(model)
        if stamped:
            tuning = tuning_config(context.train, params.unlearning_epochs, params.unlearning_learning_rate)
            repaired = fit_model(tuning, repaired, x, y)
        return repaired, {"unlearned_images": stamped}
