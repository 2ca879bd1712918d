"""SPECTRE on planted activations: a small shifted poison cluster hidden beside a large clean variance."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tasks.defenses.spectral_signatures import centered_scores
from tasks.defenses.spectre import Params, Spectre, que_scores, robust_whiten, spectre_scores
from tasks.evaluate import score_auroc
from tasks.methods import Context, DefenseData
from tasks.train import TrainConfig


def planted_class(n: int = 400, poison_share: float = 0.15, width: int = 20, seed: int = 0):
    """Clean samples spread 5 units along e1 and 1 elsewhere; poisons the same, shifted 4 units along e2.

    The clean variance along e1 (25) is far larger than what the poison cluster adds along e2
    (about 0.15 * 0.85 * 16 + 1 = 3), so the top singular vector is e1, blind to the poisons.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, size=(n, width))
    x[:, 0] *= 5
    is_poison = np.zeros(n, dtype=bool)
    is_poison[: int(poison_share * n)] = True
    x[is_poison, 1] += 4
    return x, is_poison


def test_spectre_separates_a_shifted_cluster_that_the_top_singular_vector_misses():
    x, is_poison = planted_class()
    ss = centered_scores(x)
    assert score_auroc(ss[is_poison], ss[~is_poison]) < 0.65  # SS: near chance
    scores, k = spectre_scores(x, eps=0.15, alpha=4)
    assert score_auroc(scores[is_poison], scores[~is_poison]) > 0.95 and k > 1


def test_robust_whitening_makes_the_central_samples_unit_and_ignores_far_outliers():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, size=(500, 3)) * [4.0, 1.0, 0.5] + [10, -2, 1]
    x[:25] = [200, 200, 200]  # 5 % far away: a plain covariance would be dominated by them
    whitened = robust_whiten(x, trimmed=50)
    clean = whitened[25:]
    assert np.abs(np.cov(clean, rowvar=False) - np.eye(3)).max() < 0.35
    assert np.abs(clean.mean(axis=0)).max() < 0.2 and np.linalg.norm(whitened[:25], axis=1).min() > 40


def test_que_on_a_unit_gaussian_spreads_no_more_than_one_and_weighs_the_spread_direction():
    rng = np.random.default_rng(2)
    unit = rng.normal(0, 1, size=(4000, 4))
    _, spread = que_scores(unit, alpha=4)
    assert spread == pytest.approx(1, abs=0.1)
    stretched = unit * [3, 1, 1, 1]
    scores, spread = que_scores(stretched, alpha=4)
    assert spread > 5  # QUE's weight sits on the stretched direction
    np.testing.assert_allclose(np.corrcoef(scores, stretched[:, 0] ** 2)[0, 1], 1, atol=0.05)


def test_detect_removes_the_budget_per_class_and_counts_classes_too_small_to_score():
    x, is_poison = planted_class(n=300)
    y = np.zeros(301, dtype=np.int64)
    y[300] = 1  # class 1 has one sample: nothing to estimate from
    activations = np.vstack([x, np.zeros((1, x.shape[1]))])
    data = DefenseData(np.zeros((301, 2, 2, 3), np.uint8), y, np.r_[is_poison, False],
                       np.zeros((0, 2, 2, 3), np.uint8), np.zeros(0, np.int64), n_classes=3)
    context = Context(seed=0, train=TrainConfig(model="gtsrb_cnn"), prepared=(SimpleNamespace(values=activations),))
    detected = Spectre().detect(Params(expected_pp_poison=0.15, eps_multiplier=1.5), data, context)
    assert detected.metrics["classes_skipped"] == 1 and detected.metrics["flagged_share"] == pytest.approx(0.225)
    assert detected.flagged[:300].sum() == pytest.approx(0.225 * 300, abs=1) and not detected.flagged[300]
    assert detected.flagged[:300][is_poison].mean() > 0.9  # the poisons are in the removed share
    assert detected.metrics["auroc"] > 0.95 and np.isnan(detected.scores[300])
