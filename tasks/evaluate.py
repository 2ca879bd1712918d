"""Evaluation: ``clean_acc``, ``asr`` and ``ra`` exactly as SPEC §1 defines them, and BackdoorBench's ``der``."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from pydantic import Field, model_serializer

from tasks.config import StageConfig
from tasks.datasets import ImageDataset
from tasks.defenses.kinds import MethodConfig, StoredCalibration
from tasks.poison import PoisonedDataset
from tasks.stage import Stage
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
    model: "keras.Model", dataset: ImageDataset, poisoned: PoisonedDataset, batch_size: int = 256,
    served: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, float]:
    """Measure a model on the clean and the poisoned test set.

    ``served(x) -> bool (n,)`` is an input filter's decision for uint8 inputs ``x``; a rejected input
    counts as neither correct nor a backdoor success, and the shares rejected are returned too.

    Returns
    -------
    dict with
        ``clean_acc``: fraction of the clean test set classified correctly, in [0, 1];
        ``asr``: fraction of the poisoned test set (every source-class test image with the trigger)
        classified as the target class, in [0, 1] (NaN when the source class has no test images);
        ``ra``: robust accuracy (BackdoorBench), the fraction of the poisoned test set classified as
        its true class, in [0, 1] (NaN likewise);
        with ``served``: ``rejected_clean`` and ``rejected_triggered``, the shares of each test set rejected.
    """
    clean_served = _served(served, dataset.x_test, batch_size)
    triggered_served = _served(served, poisoned.x_test_triggered, batch_size)
    correct = predict_labels(model, dataset.x_test, batch_size) == dataset.y_test
    clean_acc = float(np.mean(correct & clean_served))
    rejected = {} if served is None else {
        "rejected_clean": float(np.mean(~clean_served)),
        "rejected_triggered": float(np.mean(~triggered_served)) if len(triggered_served) else float("nan"),
    }
    triggered = predict_labels(model, poisoned.x_test_triggered, batch_size)
    if not len(triggered):
        return {"clean_acc": clean_acc, "asr": float("nan"), "ra": float("nan"), **rejected}
    asr = float(np.mean((triggered == poisoned.target) & triggered_served))
    ra = float(np.mean((triggered == poisoned.y_test_triggered) & triggered_served))
    return {"clean_acc": clean_acc, "asr": asr, "ra": ra, **rejected}


def _served(served, x: np.ndarray, batch_size: int) -> np.ndarray:
    if served is None:
        return np.ones(len(x), dtype=bool)
    decided = [np.asarray(served(np.asarray(x[start : start + batch_size])), dtype=bool)
               for start in range(0, len(x), batch_size)]
    result = np.concatenate(decided) if decided else np.zeros(0, dtype=bool)
    if result.shape != (len(x),):
        raise ValueError(f"an input filter's accept returned {result.shape} for {len(x)} inputs")
    return result


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
    """Stage ``evaluate``: how predictions are batched (results do not depend on it) and the input
    filter standing last in the pipeline, if one does (its calibration is then a parent)."""

    batch_size: int = Field(256, ge=1)
    input_filter: MethodConfig | None = None

    @model_serializer(mode="wrap")
    def _omit_unused_filter(self, handler):
        # Left out when unused: evaluations written before input filters existed keep their keys.
        dumped = handler(self)
        if self.input_filter is None:
            dumped.pop("input_filter", None)
        return dumped


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
    config: EvaluateConfig, dataset: ImageDataset, poisoned: PoisonedDataset, trained: TrainedModel,
    calibration: StoredCalibration | None = None,
) -> Evaluation:
    """Stage ``evaluate``: :func:`evaluate_model` on the model a training or defense stage produced,
    through the input filter ``config.input_filter`` (calibrated as ``calibration``) if there is one."""
    served = None
    if config.input_filter is not None:
        method, params = config.input_filter.method()
        context = config.input_filter.context(trained.model)

        def served(x: np.ndarray) -> np.ndarray:
            return method.accept(params, calibration.calibration, trained.model, x, context)

    return Evaluation(metrics=evaluate_model(trained.model, dataset, poisoned, config.batch_size, served))


EVALUATE = Stage("evaluate", 2, evaluate_stage, Evaluation)
