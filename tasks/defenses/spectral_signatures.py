"""Spectral Signatures (Tran et al. 2018), with ART 1.20's score or the centred score of Algorithm 1.

Per class, each sample gets an outlier score from the top singular vector of the class's
activations, and the ``min(1, eps_multiplier * expected_pp_poison)`` highest-scoring share of
*every* class is removed, exactly as ART's ``SpectralSignatureDefense.detect_poison`` does.
``score="art"`` is ART's ``spectral_signature_scores``: it takes the top singular vector of the
centred activations but scores ``|<r, v>|`` of the *uncentred* ones, so the highest scores go to
the samples farthest from the origin along ``v``, not from the class mean; when the poisons lie on
the origin's side of the clean mean, the flagged tail is the clean one (the sign of ``v`` does not
matter: ``|<r, -v>| = |<r, v>|``). ``score="centered"`` projects centred activations and squares,
as in the paper.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
from pydantic import Field

from tasks.methods import Context, DefenseData, Detected, FilterParams, Metric, TrainingSetFilter


class Params(FilterParams):
    """Parameters of ``ss`` (ART's names; the thesis grid is in SPEC §1)."""

    expected_pp_poison: float = Field(0.33, gt=0, le=1, description="expected poisoned share of a class")
    eps_multiplier: float = Field(1.5, gt=0)
    score: Literal["art", "centered"] = "centered"
    layer: str | None = Field(None, description="layer whose activations are scored; None = last hidden")


def centered_scores(activations: np.ndarray) -> np.ndarray:
    """Tran et al. Algorithm 1: squared projection of centred activations (n, d) on the top singular vector."""
    centred = activations - activations.mean(axis=0)
    _, _, right = np.linalg.svd(centred, full_matrices=False)
    return (centred @ right[0]) ** 2


def art_scores(activations: np.ndarray) -> np.ndarray:
    """ART 1.20's ``spectral_signature_scores`` (uncentred projection), as a flat array (n,)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PyTorch not found")
        from art.defences.detector.poison import SpectralSignatureDefense

    return SpectralSignatureDefense.spectral_signature_scores(activations).ravel()


SCORES = {"art": art_scores, "centered": centered_scores}


def class_scores(params: Params, y: np.ndarray, activations: np.ndarray, n_classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each class's members (int indices) and their outlier scores (float, higher = more suspicious).

    Classes with fewer than two samples are left out: one sample has no direction of variance to
    score against, so it is never flagged.
    """
    scored = []
    for label in range(n_classes):
        members = np.flatnonzero(y == label)
        if len(members) >= 2:
            scored.append((members, SCORES[params.score](activations[members])))
    return scored


def flag_share(scored: list[tuple[np.ndarray, np.ndarray]], share: float, n: int) -> np.ndarray:
    """Flag the highest-scoring ``share`` (0..1) of each scored class; a bool mask of shape (n,)."""
    flagged = np.zeros(n, dtype=bool)
    for members, scores in scored:
        # ART keeps score < quantile(1 - share); at share 1 the cut is the minimum and all go.
        cutoff = np.quantile(scores, max(1.0 - share, 0.0))
        flagged[members] = scores >= cutoff if share < 1 else True
    return flagged


def detect_poison(params: Params, y: np.ndarray, activations: np.ndarray, n_classes: int) -> np.ndarray:
    """Flag the highest-scoring ``min(1, eps * pp)`` share of each class.

    Parameters
    ----------
    y : ndarray of int, shape (n,)
    activations : ndarray of float, shape (n, features)
    n_classes : int

    Returns
    -------
    flagged : ndarray of bool, shape (n,)
    """
    share = min(1.0, params.eps_multiplier * params.expected_pp_poison)
    return flag_share(class_scores(params, y, activations, n_classes), share, len(y))


ROC_SHARES = np.linspace(0.0, 1.0, 101)


def roc_over_shares(scored: list[tuple[np.ndarray, np.ndarray]], is_poison: np.ndarray) -> dict:
    """The detection's ROC as the share removed from every class goes from 0 to 1.

    Spectral Signatures thresholds each class at a quantile of its own scores, so its operating
    points are shares, not score values: point ``k`` is what :func:`flag_share` removes at share
    ``ROC_SHARES[k]`` (every configuration with ``min(1, eps * pp)`` equal to that share lies on it).

    Returns
    -------
    dict with ``roc_fpr``, ``roc_tpr`` (lists of 101 floats in [0, 1]) and ``auroc`` (trapezoids
    from (0, 0) to (1, 1)); all NaN when there are no poisoned or no clean samples.
    """
    is_poison = np.asarray(is_poison, dtype=bool)
    n_poisoned, n_clean = int(is_poison.sum()), int((~is_poison).sum())
    if not n_poisoned or not n_clean:
        nan = [float("nan")] * len(ROC_SHARES)
        return {"roc_fpr": nan, "roc_tpr": nan, "auroc": float("nan")}
    flagged = np.stack([flag_share(scored, share, len(is_poison)) for share in ROC_SHARES])
    tpr = (flagged & is_poison).sum(axis=1) / n_poisoned
    fpr = (flagged & ~is_poison).sum(axis=1) / n_clean
    curve_fpr, curve_tpr = np.r_[0.0, fpr, 1.0], np.r_[0.0, tpr, 1.0]
    auroc = float(np.sum(np.diff(curve_fpr) * (curve_tpr[1:] + curve_tpr[:-1]) / 2))
    return {"roc_fpr": fpr.tolist(), "roc_tpr": tpr.tolist(), "auroc": auroc}


# The ROC of a filter that removes a share of each class, as roc_over_shares computes it.
ROC_METRICS = (
    Metric("roc_fpr", list[float], "false-positive rates as the share removed goes 0..1 (101 points)"),
    Metric("roc_tpr", list[float], "true-positive rates at the same shares"),
    Metric("auroc", float, "area under that ROC"),
)


class SpectralSignatures(TrainingSetFilter):
    """Spectral Signatures (Tran et al. 2018): remove each class's top share of outlier scores."""

    name = "ss"
    Params = Params
    metrics = (
        Metric("flagged_share", float, "share of every class removed: min(1, eps_multiplier * expected_pp_poison)"),
        *ROC_METRICS,
    )

    def prepare(self, params: Params, graph, label: str) -> tuple:
        """The shared stage this defense reads: the activations of ``params.layer``."""
        return (graph.activations(label, params.layer),)

    def detect(self, params: Params, data: DefenseData, context: Context) -> Detected:
        """Flag the top ``min(1, eps * pp)`` share of each class; the scores are the outlier scores
        (NaN in classes too small to score), and the metrics carry the ROC over shares."""
        (activations,) = context.prepared
        share = min(1.0, params.eps_multiplier * params.expected_pp_poison)
        scored = class_scores(params, data.y, activations.values, data.n_classes)
        scores = np.full(len(data.y), np.nan)
        for members, values in scored:
            scores[members] = values
        metrics = {"flagged_share": share, **roc_over_shares(scored, data.is_poison)}
        return Detected(flag_share(scored, share, len(data.y)), metrics, scores)
