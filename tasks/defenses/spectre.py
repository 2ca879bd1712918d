"""``spectre``: robust whitening and QUantum Entropy scores per class, the successor of Spectral Signatures.

J. Hayase, W. Kong, R. Somani, S. Oh, "SPECTRE: Defending Against Backdoor Attacks Using Robust
Statistics", ICML 2021 (the authors' ``rcov_auto_quantum_filter``). Per class, on the shared
``activations`` of a layer:

1. PCA to k dimensions, k tried over 1, 4, 9, ..., 64 (squares, as the authors; capped by the
   layer's width and the class's size);
2. a robust estimate of the mean and covariance, whitening every sample with it;
3. QUE scores ``x^T M x`` with ``M = expm(alpha (S - I) / (||S||_2 - 1)) / tr(...)``, S the
   covariance of the whitened samples, alpha 4: a soft projection on the directions where the
   whitened data still spread more than a clean Gaussian would, where a poison cluster shows even
   when it is small beside the clean variance (Spectral Signatures' top singular vector misses it
   then);
4. the k whose ``tr(S M)`` is largest is kept, and the ``min(1, eps_multiplier *
   expected_pp_poison)`` highest-scoring share of the class is removed, Spectral Signatures' budget
   (the authors remove 1.5 eps).

Where this differs from the authors' code, and why: their robust covariance is the DKK17 filter
(it removes at most 2 eps n samples); here it is a trimmed estimate, concentration steps that keep
the ``n - 2 eps n`` samples of smallest Mahalanobis distance (at most half the class) until the set
stops changing, which needs no d^2 x d^2 eigenproblem. ``M`` is the matrix exponential (the
authors' Julia; a Python port's element-wise ``np.exp`` is not QUE), and the choice of k compares
``tr(S M)``, a matrix product.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field
from scipy.linalg import cholesky, eigh, solve_triangular
from scipy.stats import chi2

from tasks.defenses.spectral_signatures import ROC_METRICS, flag_share, roc_over_shares
from tasks.methods import Context, DefenseData, Detected, FilterParams, Metric, TrainingSetFilter

DIMENSIONS = (1, 4, 9, 16, 25, 36, 49, 64)  # the PCA sizes tried, as the authors' squares up to 64
CONCENTRATION_STEPS = 20  # at most; the kept set usually stops changing within a few


class Params(FilterParams):
    """Parameters of ``spectre`` (Spectral Signatures' vocabulary for the shared ones)."""

    expected_pp_poison: float = Field(0.33, gt=0, le=1, description="expected poisoned share of a class (eps)")
    eps_multiplier: float = Field(1.5, gt=0, description="removes min(1, eps_multiplier * eps) of each class")
    alpha: float = Field(4.0, gt=0, description="QUE's sharpness: larger weighs the most spread direction more")
    layer: str | None = Field(None, description="layer whose activations are scored; None = last hidden")


def robust_whiten(x: np.ndarray, trimmed: int) -> np.ndarray:
    """Whiten ``x`` (n, k) with the mean and covariance of its ``n - trimmed`` most central samples.

    Concentration steps: from all samples, estimate, keep the ``n - trimmed`` of smallest
    Mahalanobis distance, estimate again, until the kept set repeats; the covariance is then made
    consistent for a Gaussian (see below). Returns float64 (n, k).
    """
    n, k = x.shape
    kept = np.ones(n, dtype=bool)
    for _ in range(CONCENTRATION_STEPS):
        distance = _mahalanobis(x, x[kept])
        again = np.zeros(n, dtype=bool)
        again[np.argsort(distance, kind="stable")[: n - trimmed]] = True
        if (again == kept).all():
            break
        kept = again
    mean = x[kept].mean(axis=0)
    # The most central share q of a Gaussian spreads less than all of it: the covariance of the
    # kept samples is scaled back by the consistency factor of a trimmed (MCD) estimate,
    # q / P(chi2_{k+2} <= chi2_{k, q}), so clean samples come out of the whitening at unit
    # variance whatever k and the trimmed share are.
    share = kept.mean()
    consistency = share / chi2.cdf(chi2.ppf(share, k), k + 2) if share < 1 else 1.0
    values, vectors = np.linalg.eigh(consistency * np.atleast_2d(np.cov(x[kept], rowvar=False)))
    values = np.maximum(values, values.max() * 1e-9 + 1e-12)  # a flat direction is not divided by 0
    return (x - mean) @ (vectors / np.sqrt(values)) @ vectors.T


def _mahalanobis(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distances (n,) of ``x`` (n, k) from the mean and covariance of ``reference``."""
    covariance = np.atleast_2d(np.cov(reference, rowvar=False))
    covariance += np.eye(len(covariance)) * (np.trace(covariance) / len(covariance) * 1e-9 + 1e-12)
    lower = cholesky(covariance, lower=True)
    standardised = solve_triangular(lower, (x - reference.mean(axis=0)).T, lower=True)
    return (standardised ** 2).sum(axis=0)


def que_scores(whitened: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """QUE scores (n,) of whitened samples (n, k), and ``tr(S M)``, how far they spread beyond a
    unit covariance in the directions QUE weighs."""
    k = whitened.shape[1]
    spread = np.atleast_2d(np.cov(whitened, rowvar=False))
    if k == 1:
        return whitened[:, 0] ** 2, float(spread[0, 0])
    # S is symmetric: its matrix exponential is V exp(L) V^T, with ||S||_2 its largest eigenvalue.
    values, vectors = np.linalg.eigh(spread)
    exponent = alpha * (values - 1) / max(values[-1] - 1, 1e-6)
    weights = (vectors * np.exp(exponent - exponent.max())) @ vectors.T  # scaled: only M / tr(M) counts
    weights /= np.trace(weights)
    return ((whitened @ weights) * whitened).sum(axis=1), float(np.trace(spread @ weights))


def spectre_scores(activations: np.ndarray, eps: float, alpha: float) -> tuple[np.ndarray, int] | None:
    """One class's QUE scores (n,) at the best PCA size, and that size; None when the class is too
    small for one dimension (fewer than 2 samples kept after trimming).

    ``eps``: the expected poisoned share; ``min(2 eps, 0.5) n`` samples are trimmed from the robust
    estimate. A size k is tried only if the layer has k directions and the kept samples number at
    least 2k.
    """
    n = len(activations)
    trimmed = int(round(min(2 * eps, 0.5) * n))
    centred = activations - activations.mean(axis=0)
    # The top principal directions (rows), largest first: eigenvectors of the scatter matrix.
    width = centred.shape[1]
    top = min(DIMENSIONS[-1], width)
    _, vectors = eigh(centred.T @ centred, subset_by_index=[width - top, width - 1], driver="evx")
    directions = vectors[:, ::-1].T
    best = None
    for k in DIMENSIONS:
        if k > len(directions) or n - trimmed < 2 * k:
            break
        scores, spread = que_scores(robust_whiten(centred @ directions[:k].T, trimmed), alpha)
        if best is None or spread > best[0]:
            best = (spread, scores, k)
    return None if best is None else (best[1], best[2])


class Spectre(TrainingSetFilter):
    """SPECTRE (Hayase et al. 2021): remove each class's top share of QUE scores after robust whitening."""

    name = "spectre"
    Params = Params
    metrics = (
        Metric("flagged_share", float, "share of every scored class removed: min(1, eps_multiplier * expected_pp_poison)"),
        Metric("classes_skipped", int, "classes too small to score (fewer than 2 samples left after trimming)"),
        Metric("dimensions_mean", float, "PCA size chosen, averaged over the scored classes"),
        *ROC_METRICS,
    )

    def prepare(self, params: Params, graph, label: str) -> tuple:
        """The shared stage this defense reads: the activations of ``params.layer``."""
        return (graph.activations(label, params.layer),)

    def detect(self, params: Params, data: DefenseData, context: Context) -> Detected:
        (activations,) = context.prepared
        values = np.asarray(activations.values, dtype=np.float64)
        share = min(1.0, params.eps_multiplier * params.expected_pp_poison)
        scored, dimensions, skipped = [], [], 0
        scores = np.full(len(data.y), np.nan)
        for label in range(data.n_classes):
            members = np.flatnonzero(data.y == label)
            if not len(members):
                continue
            found = spectre_scores(values[members], params.expected_pp_poison, params.alpha)
            if found is None:
                skipped += 1
                continue
            scores[members], k = found
            scored.append((members, found[0]))
            dimensions.append(k)
        metrics = {"flagged_share": share, "classes_skipped": skipped,
                   "dimensions_mean": float(np.mean(dimensions)) if dimensions else float("nan"),
                   **roc_over_shares(scored, data.is_poison)}
        return Detected(flag_share(scored, share, len(data.y)), metrics, scores)
