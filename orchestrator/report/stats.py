"""Means with 95 % confidence intervals, aggregated in DuckDB, intervals from SciPy.

Every number a report shows that aggregates seeds is a mean with a two-sided 95 % Student-t
interval and its n: ``mean ± t(0.975, n - 1) · s / √n`` with ``s`` the sample standard deviation.
With n = 1 there is no interval (the bounds are NaN) and the cell says ``n = 1``. Detection rates
are aggregated from counts (micro), with Wilson score intervals. A difference between two independent
groups (section Answers: face models against sign models) gets Welch's interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd
from scipy import stats

from orchestrator.results import quote_identifier

CONFIDENCE = 0.95


def t_interval(mean: np.ndarray, sd: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper 95 % bounds of the mean, elementwise; NaN where n < 2.

    Parameters
    ----------
    mean, sd, n : array-likes of one shape: sample means, sample standard deviations (ddof 1), counts
    """
    mean, sd, n = (np.asarray(a, dtype=float) for a in (mean, sd, n))
    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * sd / np.sqrt(n)
    half = np.where(n >= 2, half, np.nan)
    return mean - half, mean + half


def mean_interval(values: Sequence[float] | np.ndarray) -> tuple[float, float, float, int]:
    """Mean of ``values`` with its two-sided 95 % Student-t interval (:func:`t_interval`), NaN left out.

    Returns
    -------
    ``(mean, lower, upper, n)``: the bounds are NaN when n < 2, the mean too when n = 0
    """
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    sd = float(np.std(values, ddof=1)) if n > 1 else math.nan
    lower, upper = t_interval(values.mean(), sd, n)
    return float(values.mean()), float(lower), float(upper), n


def welch_interval(first: Sequence[float] | np.ndarray,
                   second: Sequence[float] | np.ndarray) -> tuple[float, float, float, float]:
    """Difference of two independent groups' means, ``mean(first) − mean(second)``, with Welch's
    two-sided 95 % interval (unequal variances), NaN left out.

    The half-width is ``t(0.975, df) · √(s₁²/n₁ + s₂²/n₂)`` with the Welch–Satterthwaite
    ``df = (s₁²/n₁ + s₂²/n₂)² / [(s₁²/n₁)²/(n₁ − 1) + (s₂²/n₂)²/(n₂ − 1)]``.

    Returns
    -------
    ``(difference, lower, upper, df)``: NaN bounds and df when either group has fewer than 2
    values; the interval is the point itself when both groups are constant
    """
    first, second = (np.asarray(group, dtype=float) for group in (first, second))
    first, second = first[~np.isnan(first)], second[~np.isnan(second)]
    if not len(first) or not len(second):
        return math.nan, math.nan, math.nan, math.nan
    difference = float(first.mean() - second.mean())
    if len(first) < 2 or len(second) < 2:
        return difference, math.nan, math.nan, math.nan
    shares = np.var(first, ddof=1) / len(first), np.var(second, ddof=1) / len(second)
    standard_error = math.sqrt(sum(shares))
    if standard_error == 0:
        return difference, difference, difference, math.inf
    df = sum(shares) ** 2 / (shares[0] ** 2 / (len(first) - 1) + shares[1] ** 2 / (len(second) - 1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * standard_error
    return difference, difference - half, difference + half, float(df)


def wilson_interval(successes: np.ndarray, trials: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """95 % Wilson score interval of a proportion ``successes / trials``, elementwise; NaN where trials = 0."""
    k, n = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    z = stats.norm.ppf(0.5 + CONFIDENCE / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    lower, upper = np.where(n > 0, centre - half, np.nan), np.where(n > 0, centre + half, np.nan)
    return lower, upper


def aggregate(connection: duckdb.DuckDBPyConnection, source: str, by: Sequence[str], metrics: Sequence[str],
              where: str = "TRUE") -> pd.DataFrame:
    """Mean, 95 % interval and n of each metric per group, one row per group.

    Parameters
    ----------
    source : a view or a parenthesised query (``results``, ``stages``, ``(SELECT ...)``)
    by : grouping columns (the attack setting, the pipeline, ...)
    metrics : names of numeric columns of ``source``; NULL and NaN values are left out of a metric's n
    where : SQL condition on ``source``'s rows

    Returns
    -------
    DataFrame with ``by`` and, per metric ``m``, ``m_mean``, ``m_lo``, ``m_hi``, ``m_n``, sorted by ``by``
    """
    keys = ", ".join(quote_identifier(c) for c in by)
    parts = []
    for metric in metrics:
        value = f"CASE WHEN isnan({quote_identifier(metric)}::DOUBLE) THEN NULL ELSE {quote_identifier(metric)}::DOUBLE END"
        parts += [f"avg({value}) AS {quote_identifier(metric + '_mean')}", f"stddev_samp({value}) AS {quote_identifier(metric + '_sd')}",
                  f"count({value}) AS {quote_identifier(metric + '_n')}"]
    group = f"GROUP BY {keys} ORDER BY {keys}" if by else ""
    select = ", ".join(([keys] if by else []) + parts)
    frame = connection.execute(f"SELECT {select} FROM {source} WHERE {where} {group}").df()
    for metric in metrics:
        lower, upper = t_interval(frame[f"{metric}_mean"], frame[f"{metric}_sd"].fillna(0.0), frame[f"{metric}_n"])
        frame[f"{metric}_lo"], frame[f"{metric}_hi"] = lower, upper
        frame = frame.drop(columns=f"{metric}_sd")
        frame[f"{metric}_n"] = frame[f"{metric}_n"].astype("int64")
    ordered = list(by) + [f"{m}_{part}" for m in metrics for part in ("mean", "lo", "hi", "n")]
    return frame[ordered]


def pooled_rates(connection: duckdb.DuckDBPyConnection, source: str, by: Sequence[str],
                 where: str = "TRUE") -> pd.DataFrame:
    """A filtering defense's confusion counts summed per group, and the rates of the sums (micro-aggregation).

    Parameters
    ----------
    source : a view or a parenthesised query with a row per run of a filtering step and its counts
        ``removed_poisoned``, ``removed_clean``, ``n_poisoned`` and ``n_seen`` (samples); rows
        without counts are left out
    by : grouping columns
    where : SQL condition on ``source``'s rows

    Returns
    -------
    DataFrame sorted by ``by``, one row per group: ``tp`` (poisoned removed), ``fp`` (clean removed),
    ``fn`` (poisoned kept), ``tn`` (clean kept), ``seen`` and ``runs`` (int64); the fractions
    ``tpr`` = TP / (TP + FN), ``fpr`` = FP / (FP + TN) and ``removed_share`` = (TP + FP) / seen, each
    with 95 % Wilson bounds ``<rate>_lo``, ``<rate>_hi``; ``precision`` = TP / (TP + FP) and
    ``f1`` = 2 TP / (2 TP + FP + FN). A rate whose denominator is 0 is NaN.
    """
    keys = ", ".join(quote_identifier(c) for c in by)
    sums = ("sum(removed_poisoned)::BIGINT AS tp, sum(removed_clean)::BIGINT AS fp, "
            "sum(n_poisoned - removed_poisoned)::BIGINT AS fn, sum(n_seen - n_poisoned - removed_clean)::BIGINT AS tn, "
            "sum(n_seen)::BIGINT AS seen, count(*) AS runs")
    group = f"GROUP BY {keys} ORDER BY {keys}" if by else ""
    frame = connection.execute(f"SELECT {keys + ', ' if by else ''}{sums} FROM {source} "
                               f"WHERE ({where}) AND removed_poisoned IS NOT NULL {group}").df()
    counts = ["tp", "fp", "fn", "tn", "seen", "runs"]
    frame[counts] = frame[counts].astype("int64")
    tp, fp, fn, tn, seen = (frame[c].to_numpy(dtype=float) for c in counts[:5])
    for rate, hits, total in (("tpr", tp, tp + fn), ("fpr", fp, fp + tn), ("removed_share", tp + fp, seen)):
        with np.errstate(invalid="ignore", divide="ignore"):
            frame[rate] = hits / total
        frame[f"{rate}_lo"], frame[f"{rate}_hi"] = wilson_interval(hits, total)
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["precision"] = tp / (tp + fp)
        frame["f1"] = 2 * tp / (2 * tp + fp + fn)
    return frame


def format_estimate(mean: float, lower: float, upper: float, n: int, scale: float = 100.0, digits: int = 1) -> str:
    """A cell such as ``96.4 [95.1, 97.7] n=3``, ``96.4 (n = 1)``, or ``–`` when there is no value.

    ``scale`` turns fractions into percentages (100) or leaves them (1).
    """
    if n == 0 or mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    def number(x: float) -> str:
        text = f"{x * scale:.{digits}f}"
        # A value that rounds to zero reads 0.0, whichever side of zero it lies.
        return text.removeprefix("-") if float(text) == 0 else text

    if n < 2 or math.isnan(lower):
        return f"{number(mean)} (n = 1)"
    return f"{number(mean)} [{number(lower)}, {number(upper)}] n={n}"
