"""Evaluation: ``clean_acc``, ``asr`` and ``ra`` exactly as SPEC §1 defines them, and BackdoorBench's ``der``."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from tasks.config import StageConfig
from tasks.datasets import ImageDataset
from tasks.poison import PoisonedDataset
from tasks.train import TrainedModel

if TYPE_CHECKING:
    import keras


def predict_labels(model: "keras.Model", x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Predicted class indices (int64, shape (n,)) for uint8 images ``x`` (n, h, w, c), batch by batch."""
    labels = [
        np.argmax(model.predict_on_batch(np.asarray(x[start : start + batch_size])), axis=1)
        for start in range(0, len(x), batch_size)
    ]
    return np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, dtype=np.int64)


def evaluate_model(
    model: "keras.Model", dataset: ImageDataset, poisoned: PoisonedDataset, batch_size: int = 256
) -> dict[str, float]:
    """Measure a model on the clean and the poisoned test set.

    Returns
    -------
    dict with
        ``clean_acc``: fraction of the clean test set classified correctly, in [0, 1];
        ``asr``: fraction of the poisoned test set (every source-class test image with the trigger)
        classified as the target class, in [0, 1] (NaN when the source class has no test images);
        ``ra``: robust accuracy (BackdoorBench), the fraction of the poisoned test set classified as
        its true class, the source, in [0, 1] (NaN likewise).
    """
    clean_acc = float(np.mean(predict_labels(model, dataset.x_test, batch_size) == dataset.y_test))
    triggered = predict_labels(model, poisoned.x_test_triggered, batch_size)
    if not len(triggered):
        return {"clean_acc": clean_acc, "asr": float("nan"), "ra": float("nan")}
    asr = float(np.mean(triggered == poisoned.target))
    ra = float(np.mean(triggered == poisoned.source))
    return {"clean_acc": clean_acc, "asr": asr, "ra": ra}


def defense_effectiveness_rating(asr_before: float, asr_after: float, clean_acc_before: float,
                                 clean_acc_after: float) -> float:
    """BackdoorBench's DER, in [0, 1]: 0.5 is no effect, 1 removes the backdoor at no accuracy cost.

    ``[max(0, asr_before - asr_after) - max(0, clean_acc_before - clean_acc_after) + 1] / 2``: a
    defense earns what it lowers the attack success and pays what it lowers clean accuracy; a rise in
    accuracy earns nothing and a rise in attack success costs nothing (both are clipped at 0).
    Arguments are fractions in [0, 1]; NaN in, NaN out.
    """
    values = (asr_before, asr_after, clean_acc_before, clean_acc_after)
    if any(math.isnan(value) for value in values):
        return float("nan")  # max(0, nan) would be 0 and hide a missing measurement
    return (max(0.0, asr_before - asr_after) - max(0.0, clean_acc_before - clean_acc_after) + 1.0) / 2.0


class EvaluateConfig(StageConfig):
    """Stage ``evaluate``: how predictions are batched (results do not depend on it)."""

    batch_size: int = Field(256, ge=1)


@dataclass(frozen=True)
class Evaluation:
    """The ``evaluate`` stage's artifact: ``metrics`` = {"clean_acc": float, "asr": float, "ra": float}."""

    metrics: dict

    def save(self, directory: Path) -> None:
        (directory / "evaluation.json").write_text(json.dumps(self.metrics, indent=1, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> "Evaluation":
        return cls(metrics=json.loads((directory / "evaluation.json").read_text()))


def evaluate_stage(
    config: EvaluateConfig, dataset: ImageDataset, poisoned: PoisonedDataset, trained: TrainedModel
) -> Evaluation:
    """Stage ``evaluate``: :func:`evaluate_model` on the model a training or defense stage produced."""
    return Evaluation(metrics=evaluate_model(trained.model, dataset, poisoned, config.batch_size))
