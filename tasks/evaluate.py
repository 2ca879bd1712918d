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


SERVED = ("served_clean_acc", "served_asr", "served_ra")  # what an input filter serves, on the row


def evaluate_model(
    model: "keras.Model", dataset: ImageDataset, poisoned: PoisonedDataset, batch_size: int = 256,
    screen: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]] | None = None,
) -> dict[str, float]:
    """Measure a model on the clean and the poisoned test set, and what an input filter serves of them.

    ``screen(x) -> (accepted, suspicion)`` is an input filter's decision for uint8 inputs ``x``:
    bool (n,), and float (n,) higher for inputs more likely triggered, or None without a score
    (:meth:`~tasks.methods.InputFilter.screen`).

    Returns
    -------
    dict with
        ``clean_acc``: fraction of the clean test set classified correctly, in [0, 1];
        ``asr``: fraction of the poisoned test set (every source-class test image with the trigger)
        classified as the target class, in [0, 1] (NaN when the source class has no test images);
        ``ra``: robust accuracy (BackdoorBench), the fraction of the poisoned test set classified as
        its true class, in [0, 1] (NaN likewise);
        with ``screen``: ``served_clean_acc``, ``served_asr``, ``served_ra``, the same fractions of
        all inputs where a rejected input counts as neither correct nor a class; ``input_frr`` and
        ``input_tpr``, the shares of clean and of triggered inputs rejected; ``input_auroc``, the AUROC
        of the suspicion, triggered against clean inputs (NaN without a score or without both sets).
    """
    correct = predict_labels(model, dataset.x_test, batch_size) == dataset.y_test
    triggered = predict_labels(model, poisoned.x_test_triggered, batch_size)
    hit, recovered = triggered == poisoned.target, triggered == poisoned.y_test_triggered
    share = lambda flags: float(np.mean(flags)) if len(flags) else float("nan")  # noqa: E731
    metrics = {"clean_acc": share(correct), "asr": share(hit), "ra": share(recovered)}
    if screen is None:
        return metrics
    clean_served, clean_suspicion = _screened(screen, dataset.x_test, batch_size)
    triggered_served, triggered_suspicion = _screened(screen, poisoned.x_test_triggered, batch_size)
    return {
        **metrics,
        "served_clean_acc": share(correct & clean_served),
        "served_asr": share(hit & triggered_served),
        "served_ra": share(recovered & triggered_served),
        "input_frr": share(~clean_served),
        "input_tpr": share(~triggered_served),
        "input_auroc": score_auroc(triggered_suspicion, clean_suspicion)
        if clean_suspicion is not None and triggered_suspicion is not None else float("nan"),
    }


def _screened(screen, x: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``screen`` batch by batch: bool (n,) accepted and float (n,) suspicion (None without a score)."""
    accepted, suspicion = [np.ones(0, dtype=bool)], [np.zeros(0)]
    has_score = True
    for start in range(0, len(x), batch_size):
        batch = np.asarray(x[start : start + batch_size])
        served, score = screen(batch)
        served = np.asarray(served, dtype=bool)
        if served.shape != (len(batch),):
            raise ValueError(f"an input filter accepted {served.shape} for {len(batch)} inputs")
        accepted.append(served)
        if score is None:
            has_score = False
        else:
            suspicion.append(np.asarray(score, dtype=np.float64).reshape(len(batch)))
    return np.concatenate(accepted), np.concatenate(suspicion) if has_score else None


def score_auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC of a score that should be higher on ``positive`` than on ``negative``
    samples: the probability that a random positive outscores a random negative, ties counting a
    half (the Mann-Whitney U statistic over n_pos · n_neg). NaN when either set is empty."""
    from scipy.stats import rankdata

    positive, negative = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    if not len(positive) or not len(negative):
        return float("nan")
    ranks = rankdata(np.concatenate([positive, negative]))
    u = ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2
    return float(u / (len(positive) * len(negative)))


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
        # A filtered evaluation says which metrics it holds: since version 2 the model's own and the
        # served ones apart (before, clean_acc and asr were the served ones).
        dumped = handler(self)
        if self.input_filter is None:
            dumped.pop("input_filter", None)
        else:
            dumped["filtered_metrics_version"] = 2
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
    and what the input filter ``config.input_filter`` (calibrated as ``calibration``) serves, if
    there is one."""
    screen = None
    if config.input_filter is not None:
        method, params = config.input_filter.method()
        context = config.input_filter.context(trained.model)

        def screen(x: np.ndarray):
            return method.screen(params, calibration.calibration, trained.model, x, context)

    return Evaluation(metrics=evaluate_model(trained.model, dataset, poisoned, config.batch_size, screen))


EVALUATE = Stage("evaluate", 2, evaluate_stage, Evaluation)
