"""What every filtering defense shares: its inputs, detection metrics and retraining on the kept data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.train import TrainConfig, copy_model, fit_model, train_from_scratch


@dataclass(frozen=True, eq=False)
class DefenseData:
    """The data a defense stage works with.

    Attributes
    ----------
    x, y, is_poison : the training samples this stage sees (what earlier stages kept): uint8
        images (n, h, w, c), int labels (n,), bool ground truth (n,) for metrics and controls only
    x_tune, y_tune : the clean tuning set the defender holds (never poisoned)
    n_classes : int
    """

    x: np.ndarray
    y: np.ndarray
    is_poison: np.ndarray
    x_tune: np.ndarray
    y_tune: np.ndarray
    n_classes: int


def filter_and_retrain(mode: str, train: TrainConfig, model, data: DefenseData, flagged: np.ndarray):
    """Drop the ``flagged`` samples (bool (n,)), retrain per ``mode`` and measure the detection.

    Returns ``(model, kept, metrics)`` as every defense does, with ``retrained`` in the metrics.
    """
    kept = ~flagged
    new_model, retrained = retrain(mode, train, model, data.x[kept], data.y[kept], data.n_classes)
    return new_model, kept, {**filtering_metrics(data.is_poison, flagged), "retrained": retrained}


def filtering_metrics(is_poison: np.ndarray, removed: np.ndarray) -> dict[str, float | int]:
    """Detection metrics of one filtering stage, over the samples that stage saw.

    Parameters
    ----------
    is_poison : ndarray of bool, shape (n,)
        Ground truth for the samples the stage was given.
    removed : ndarray of bool, shape (n,)
        Which of them the stage removed.

    Returns
    -------
    dict with ``n_seen``, ``n_poisoned``, ``removed_total``, ``removed_poisoned``, ``removed_clean``,
    ``tpr`` (removed_poisoned / n_poisoned), ``fpr`` (removed_clean / n_clean), ``precision``
    (removed_poisoned / removed_total) and ``f1``; ratios are NaN where their denominator is 0.
    """
    is_poison = np.asarray(is_poison, dtype=bool)
    removed = np.asarray(removed, dtype=bool)
    n_poisoned = int(is_poison.sum())
    n_clean = len(is_poison) - n_poisoned
    removed_poisoned = int((removed & is_poison).sum())
    removed_total = int(removed.sum())
    removed_clean = removed_total - removed_poisoned
    tpr = removed_poisoned / n_poisoned if n_poisoned else float("nan")
    fpr = removed_clean / n_clean if n_clean else float("nan")
    precision = removed_poisoned / removed_total if removed_total else float("nan")
    f1 = 2 * removed_poisoned / (n_poisoned + removed_total) if n_poisoned + removed_total else float("nan")
    return {
        "n_seen": len(is_poison),
        "n_poisoned": n_poisoned,
        "removed_total": removed_total,
        "removed_poisoned": removed_poisoned,
        "removed_clean": removed_clean,
        "tpr": tpr,
        "fpr": fpr,
        "precision": precision,
        "f1": f1,
    }


def retrain(mode: str, train: TrainConfig, model, x: np.ndarray, y: np.ndarray, n_classes: int):
    """The model a filtering defense hands on after keeping ``x`` (uint8, (n, h, w, c)) and ``y``.

    ``full`` trains a fresh model from scratch, as the thesis did; ``finetune`` continues training
    the current model on the kept data for ``train.epochs``; ``none`` hands the model on unchanged
    (detection metrics only). When nothing was kept there is nothing to train on, so the model is
    handed on unchanged whatever the mode.

    Returns
    -------
    model : keras.Model
    retrained : bool, False when the model was handed on unchanged
    """
    if mode == "none" or len(x) == 0:
        return model, False
    if mode == "full":
        return train_from_scratch(train, x, y, n_classes), True
    if mode == "finetune":
        return fit_model(train, copy_model(model), x, y), True
    raise ValueError(f"unknown retrain mode {mode!r}")
