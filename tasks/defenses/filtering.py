"""What every filtering defense shares: its inputs, the :class:`Detection` it makes, and retraining.

A filtering defense is two stages. Its *detection* decides which samples to keep and stores no
model (the kept indices, per-sample scores where the defense has them, its metrics). Its
*retraining* is keyed by what it trains on: the train config, the retrain mode, the base model
(``finetune``) or the architecture (``full``), and the digest of the kept indices, never by which
defense chose them. So every configuration that keeps the same samples shares one retraining, and
a full retraining that would keep every sample of the original training is the ``train`` artifact.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tasks.config import StageConfig
from tasks.datasets import ImageDataset
from tasks.defenses.kinds import MethodConfig
from tasks.methods import Context, DefenseData
from tasks.poison import PoisonedDataset
from tasks.stage import Stage
from tasks.train import TrainConfig, TrainedModel, copy_model, fit_model, train_from_scratch

# Detection metrics that steer the stage graph and tell a reader nothing the row does not.
GRAPH_METRICS = ("kept_everything",)


def defense_data(dataset: ImageDataset, poisoned: PoisonedDataset, seen: np.ndarray) -> DefenseData:
    """The :class:`DefenseData` of the poisoned training samples ``seen`` (sorted int indices)."""
    x, y, is_poison, is_cover = poisoned.training_roles(dataset, keep=seen)
    return DefenseData(x, y, is_poison, np.asarray(dataset.x_tune), np.asarray(dataset.y_tune), dataset.n_classes, is_cover)


def kept_digest(keep: np.ndarray) -> str:
    """A digest naming a kept set: SHA-256 (24 hex digits) of the sorted int64 indices."""
    return hashlib.sha256(np.ascontiguousarray(keep, dtype="<i8").tobytes()).hexdigest()[:24]


@dataclass(frozen=True, eq=False)
class Detection:
    """What a filtering defense decided, without a model.

    Attributes
    ----------
    keep : ndarray of int64, shape (n_kept,)
        Sorted indices into the poisoned training set that are kept.
    scores : ndarray, shape (n_seen,), or None
        A per-sample score over the samples the detection saw (Spectral Signatures' outlier score,
        Activation Clustering's cluster id), where the defense has one.
    metrics : dict
        :func:`filtering_metrics`, the defense's own metrics, ``n_kept``, ``kept_digest`` (what
        retraining is keyed by) and ``kept_everything`` (every sample of the training set kept).
    """

    keep: np.ndarray
    scores: np.ndarray | None = None
    metrics: dict = field(default_factory=dict)

    @classmethod
    def of(cls, seen: np.ndarray, flagged: np.ndarray, is_poison: np.ndarray, n_train: int,
           metrics: dict | None = None, scores: np.ndarray | None = None,
           is_cover: np.ndarray | None = None) -> "Detection":
        """The detection that removes ``flagged`` (bool (n_seen,)) of the samples ``seen`` out of
        ``n_train``; ``is_poison`` and ``is_cover`` (bool (n_seen,)) are the ground truth."""
        keep = np.asarray(seen, dtype=np.int64)[~np.asarray(flagged, dtype=bool)]
        return cls(keep, scores, {
            **filtering_metrics(is_poison, flagged, is_cover), **(metrics or {}),
            "n_kept": len(keep), "kept_digest": kept_digest(keep), "kept_everything": len(keep) == n_train,
        })

    def kept(self) -> "KeptSet":
        """What this detection's ``kept_digest`` covers: the kept indices alone."""
        return KeptSet(self.keep)

    def save(self, directory: Path) -> None:
        np.save(directory / "keep.npy", self.keep)
        if self.scores is not None:
            np.save(directory / "scores.npy", self.scores)
        (directory / "metrics.json").write_text(json.dumps(self.metrics, indent=1, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> "Detection":
        scores = directory / "scores.npy"
        return cls(np.load(directory / "keep.npy"), np.load(scores) if scores.exists() else None,
                   json.loads((directory / "metrics.json").read_text()))


@dataclass(frozen=True, eq=False)
class KeptSet:
    """A kept set, and nothing else: what a child keyed by a detection's ``kept_digest`` is handed.

    ``keep``: sorted int64 indices into the poisoned training set.
    """

    keep: np.ndarray


def filtering_metrics(is_poison: np.ndarray, removed: np.ndarray, is_cover: np.ndarray | None = None) -> dict[str, float | int]:
    """Detection metrics of one filtering stage, over the samples that stage saw.

    Parameters
    ----------
    is_poison : ndarray of bool, shape (n,)
        Ground truth for the samples the stage was given.
    removed : ndarray of bool, shape (n,)
        Which of them the stage removed.
    is_cover : ndarray of bool, shape (n,), optional
        The attacker's cover samples among them: not poison (they count as clean in ``fpr``), and
        counted apart in ``removed_cover``.

    Returns
    -------
    dict with ``n_seen``, ``n_poisoned``, ``removed_total``, ``removed_poisoned``, ``removed_clean``, ``removed_cover``,
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
        "removed_cover": int((removed & np.asarray(is_cover, dtype=bool)).sum()) if is_cover is not None else 0,
        "tpr": tpr,
        "fpr": fpr,
        "precision": precision,
        "f1": f1,
    }


class RetrainConfig(StageConfig):
    """Stage ``retrain``: train ``train``'s model on the kept samples.

    ``full`` trains a fresh model from ``train.seed``, as the thesis did, with the architecture the
    current model has (a Fine-Pruned model stays pruned: the channel selections are parents);
    ``finetune`` continues training the current model (a parent) for ``train.epochs``.
    """

    train: TrainConfig
    mode: Literal["full", "finetune"]


def retrain_stage(config: RetrainConfig, dataset: ImageDataset, poisoned: PoisonedDataset, kept, *rest) -> TrainedModel:
    """Stage ``retrain`` on the samples ``kept.keep`` of the poisoned training set.

    ``rest`` is the base :class:`TrainedModel` for ``finetune``, and for ``full`` the channel
    selections (``.layer``, ``.channels``) that shape the architecture, applied in order.
    """
    x, y, _ = poisoned.training_set(dataset, keep=kept.keep)
    if config.mode == "full":
        pruned = [(selection.layer, selection.channels) for selection in rest]
        model = train_from_scratch(config.train, x, y, dataset.n_classes, pruned=pruned)
    else:
        (base,) = rest
        model = fit_model(config.train, copy_model(base.model), x, y)
    return TrainedModel(model=model, keep=np.asarray(kept.keep, dtype=np.int64), metrics={"n_train": len(x)})


RETRAIN = Stage("retrain", 1, retrain_stage, TrainedModel)



class DetectionConfig(MethodConfig):
    """Stage ``detection``: a training-set filter's name, its parameters without ``retrain`` (which
    only the retraining reads), the train config its seed and judging models come from, and a
    plugin's ``origin``."""


def detection_stage(config: DetectionConfig, dataset: ImageDataset, poisoned: PoisonedDataset, kept,
                    *rest) -> Detection:
    """Stage ``detection``: which of the samples ``kept.keep`` the filter ``config.name`` keeps.

    ``rest`` is the current model (for a filter that ``reads_model``), then its prepared artifacts.
    """
    from tasks.registry import defense

    method = defense(config.name, config.origin)
    data = defense_data(dataset, poisoned, kept.keep)
    model, prepared = (rest[0].model, rest[1:]) if method.reads_model else (None, rest)
    params = method.Params(**config.params)
    context = Context(seed=config.train.seed, train=config.train, model=model, prepared=tuple(prepared))
    detected = method.detect(params, data, context)
    flagged = np.asarray(detected.flagged, dtype=bool)
    if flagged.shape != (len(data.y),):
        raise ValueError(f"{config.name}.detect flagged {flagged.shape}, expected ({len(data.y)},): one per sample seen")
    return Detection.of(kept.keep, flagged, data.is_poison, len(dataset.y_train), detected.metrics, detected.scores,
                        data.is_cover)


DETECTION = Stage("detection", 1, detection_stage, Detection, identity="kept_digest", view=Detection.kept)
