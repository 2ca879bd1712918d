"""Means with 95 % confidence intervals, aggregated in DuckDB, intervals and tests from SciPy.

Every number a report shows that aggregates seeds is a mean with a two-sided 95 % Student-t
interval and its n: ``mean ± t(0.975, n - 1) · s / √n`` with ``s`` the sample standard deviation.
With n = 1 there is no interval (the bounds are NaN) and the cell says ``n = 1``. Detection rates
are computed per model (the samples of one backdoored model share its training run, its features
and its clusters, so they are not independent draws) and averaged over models with the same
t interval, n = models; the counts summed over every model stay beside them as counts. A
difference between two independent groups (section Answers: face models against sign models) gets
Welch's interval. The p-values of section Answers come from the same t statistics as its intervals,
and Holm's step-down procedure adjusts them for the number of claims judged.
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


def t_pvalue(values: Sequence[float] | np.ndarray, null: float = 0.0) -> float:
    """Two-sided p-value of the one-sample Student-t test that the mean of ``values`` equals ``null``.

    The statistic is the one :func:`mean_interval` builds its interval from,
    ``t = (mean − null) / (s / √n)`` with n − 1 degrees of freedom, so p < 0.05 exactly when the 95 %
    interval leaves out ``null``.

    Parameters
    ----------
    values : the sample (one value per pair or model); NaN left out
    null : the mean under the null hypothesis, in the values' unit

    Returns
    -------
    p in [0, 1]; NaN when fewer than 2 values (no test). When every value is equal (s = 0) the
    interval is that value, and p is 0 unless it equals ``null`` (then 1).
    """
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    n = len(values)
    if n < 2:
        return math.nan
    standard_error = float(np.std(values, ddof=1)) / math.sqrt(n)
    return _two_sided(float(values.mean()) - null, standard_error, n - 1)


def welch_pvalue(first: Sequence[float] | np.ndarray, second: Sequence[float] | np.ndarray) -> float:
    """Two-sided p-value of Welch's test that two independent groups have equal means.

    The statistic and degrees of freedom are those of :func:`welch_interval`:
    ``t = (mean₁ − mean₂) / √(s₁²/n₁ + s₂²/n₂)`` with the Welch–Satterthwaite df.

    Returns
    -------
    p in [0, 1]; NaN when either group has fewer than 2 values (NaN left out); 0 or 1 as in
    :func:`t_pvalue` when both groups are constant
    """
    first, second = (np.asarray(group, dtype=float) for group in (first, second))
    first, second = first[~np.isnan(first)], second[~np.isnan(second)]
    if len(first) < 2 or len(second) < 2:
        return math.nan
    difference, _, _, df = welch_interval(first, second)
    standard_error = math.sqrt(np.var(first, ddof=1) / len(first) + np.var(second, ddof=1) / len(second))
    return _two_sided(difference, standard_error, df)


def _two_sided(effect: float, standard_error: float, df: float) -> float:
    if standard_error == 0:
        return 1.0 if effect == 0 else 0.0
    return float(2 * stats.t.sf(abs(effect) / standard_error, df))


def holm(pvalues: Sequence[float] | np.ndarray, alpha: float = 1 - CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down adjustment of ``pvalues`` for a family-wise error rate of ``alpha``.

    Sort the m p-values, p₍₁₎ ≤ … ≤ p₍ₘ₎; hypothesis (i) is rejected when p₍ⱼ₎ ≤ alpha / (m − j + 1)
    for every j ≤ i, which keeps the probability of rejecting any true hypothesis of the family at
    most ``alpha``, whatever their dependence. The adjusted p-value of (i) is
    ``max over j ≤ i of min(1, (m − j + 1) · p₍ⱼ₎)``; (i) is rejected exactly when it is ≤ ``alpha``.
    Reference: S. Holm, "A simple sequentially rejective multiple test procedure", Scandinavian
    Journal of Statistics 6 (1979), 65–70.

    Parameters
    ----------
    pvalues : shape (k,), in [0, 1]; NaN (a claim without a test) is left out of the family, so m
        counts the finite ones
    alpha : the family-wise error rate, 0.05 by default

    Returns
    -------
    ``(adjusted, rejected)``: float array of shape (k,) (NaN where the p-value is NaN) and bool
    array of shape (k,) (False there), in the order of ``pvalues``
    """
    pvalues = np.asarray(pvalues, dtype=float)
    adjusted = np.full(pvalues.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(pvalues))
    order = tested[np.argsort(pvalues[tested], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):  # rank j - 1
        running = max(running, min(1.0, (m - rank) * pvalues[index]))
        adjusted[index] = running
    rejected = np.zeros(pvalues.shape, dtype=bool)
    rejected[tested] = adjusted[tested] <= alpha
    return adjusted, rejected


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


RATES = ("tpr", "fpr", "removed_share", "precision", "f1")


def detection_rates(connection: duckdb.DuckDBPyConnection, source: str, by: Sequence[str], model: Sequence[str],
                    where: str = "TRUE") -> pd.DataFrame:
    """A filtering step's detection rates per group: computed per model, averaged over models with a
    Student-t interval (n = models), and the confusion counts summed over the group's models beside them.

    The samples one model saw are not independent draws: they share the model's training run, its
    features and its clusters, so a filter catches them together or misses them together. A
    binomial interval over the pooled samples (Wilson's, say) treats them as independent and is too
    narrow. Here the unit is the model: each model's rate is one value, and the interval is
    :func:`t_interval` over those values. Each model weighs the same, however many poisons it had.

    Parameters
    ----------
    source : a view or a parenthesised query with a row per run of a filtering step and its counts
        ``removed_poisoned``, ``removed_clean``, ``n_poisoned`` and ``n_seen`` (samples); rows
        without counts are left out
    by : grouping columns
    model : columns that, within a group, tell one backdoored model from another (the attack
        setting's columns and ``seed``); those already in ``by`` are skipped. Runs of one model in a
        group have their counts summed before the model's rate is taken.
    where : SQL condition on ``source``'s rows

    Returns
    -------
    DataFrame sorted by ``by``, one row per group, with the counts summed over its models (int64):
    ``tp`` (poisoned removed), ``fp`` (clean removed), ``fn`` (poisoned kept), ``tn`` (clean kept),
    ``seen``, ``runs`` and ``models``; and per rate — ``tpr`` = TP / (TP + FN), ``fpr`` = FP / (FP + TN),
    ``removed_share`` = (TP + FP) / seen, ``precision`` = TP / (TP + FP), ``f1`` = 2 TP / (2 TP + FP + FN) —
    the mean of the models' rates ``<rate>``, its 95 % t bounds ``<rate>_lo`` and ``<rate>_hi`` (cut
    at 0 and 1; NaN when n < 2), ``<rate>_n`` (models whose rate is defined: a model without poisons
    has no TPR) and ``<rate>_pooled``, the same ratio of the summed counts. A rate whose denominator
    is 0 is NaN.
    """
    group_columns = list(by)
    model_columns = [column for column in dict.fromkeys(model) if column not in group_columns]
    group = ", ".join(quote_identifier(c) for c in group_columns)
    per_model_keys = ", ".join(quote_identifier(c) for c in [*group_columns, *model_columns])
    sums = ("sum(removed_poisoned)::DOUBLE AS tp, sum(removed_clean)::DOUBLE AS fp, "
            "sum(n_poisoned - removed_poisoned)::DOUBLE AS fn, sum(n_seen - n_poisoned - removed_clean)::DOUBLE AS tn, "
            "sum(n_seen)::DOUBLE AS seen, count(*) AS runs")
    fractions = {"tpr": ("tp", "tp + fn"), "fpr": ("fp", "fp + tn"), "removed_share": ("tp + fp", "seen"),
                 "precision": ("tp", "tp + fp"), "f1": ("2 * tp", "2 * tp + fp + fn")}
    ratio = {rate: f"({hits}) / nullif({total}, 0)" for rate, (hits, total) in fractions.items()}
    per_model = (f"(SELECT {per_model_keys}, {sums} FROM {source} "
                 f"WHERE ({where}) AND removed_poisoned IS NOT NULL GROUP BY {per_model_keys})")
    per_model = f"(SELECT *, {', '.join(f'{ratio[rate]} AS {rate}' for rate in RATES)} FROM {per_model})"
    totals = ("sum(tp) AS tp, sum(fp) AS fp, sum(fn) AS fn, sum(tn) AS tn, sum(seen) AS seen, "
              "sum(runs) AS runs, count(*) AS models")
    means = ", ".join(f"avg({rate}) AS {rate}, stddev_samp({rate}) AS {rate}_sd, count({rate}) AS {rate}_n"
                      for rate in RATES)
    grouping = f"GROUP BY {group} ORDER BY {group}" if group_columns else ""
    frame = connection.execute(f"SELECT {group + ', ' if group_columns else ''}{totals}, {means} "
                               f"FROM {per_model} {grouping}").df()
    if not group_columns and int(frame["models"].iloc[0]) == 0:
        frame = frame.iloc[:0]
    counts = ["tp", "fp", "fn", "tn", "seen", "runs", "models"]
    # Counts averaged over repeated runs (the benign arm averages triggers) can be fractional.
    frame[counts] = frame[counts].round().astype("int64")
    tp, fp, fn, tn, seen = (frame[c].to_numpy(dtype=float) for c in counts[:5])
    pooled = {"tpr": (tp, tp + fn), "fpr": (fp, fp + tn), "removed_share": (tp + fp, seen),
              "precision": (tp, tp + fp), "f1": (2 * tp, 2 * tp + fp + fn)}
    for rate in RATES:
        frame[f"{rate}_n"] = frame[f"{rate}_n"].astype("int64")
        lower, upper = t_interval(frame[rate], frame[f"{rate}_sd"].fillna(0.0), frame[f"{rate}_n"])
        # A rate lies in [0, 1]; a t interval over few models near 0 or 1 reaches past it.
        frame[f"{rate}_lo"], frame[f"{rate}_hi"] = np.clip(lower, 0.0, 1.0), np.clip(upper, 0.0, 1.0)
        hits, total = pooled[rate]
        with np.errstate(invalid="ignore", divide="ignore"):
            frame[f"{rate}_pooled"] = np.where(total > 0, hits / np.where(total > 0, total, 1), np.nan)
    ordered = [*group_columns, *counts] + [f"{rate}{part}" for rate in RATES
                                           for part in ("", "_lo", "_hi", "_n", "_pooled")]
    return frame[ordered].reset_index(drop=True)


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


def bootstrap_ranks(values: pd.DataFrame, cell: Sequence[str], item: str, value: str, n_boot: int = 2000,
                    seed: int = 0) -> pd.DataFrame:
    """Each item's rank within its cell by mean ``value`` (1 = highest), with a 95 % percentile
    interval from a bootstrap that resamples each (cell, item)'s observations (seeds) with
    replacement, so that items whose means the seeds cannot tell apart get overlapping ranks.

    Parameters
    ----------
    values : one row per observation: ``cell`` columns, ``item`` (a defense), ``value`` (its DER)
    n_boot : bootstrap replicates; ``seed`` seeds the generator (the answer is reproducible)

    Returns
    -------
    DataFrame with ``cell``, ``item``, ``mean``, ``n``, ``rank`` (of the observed means; ties share
    the best rank), ``rank_lo``, ``rank_hi`` (the 2.5 and 97.5 percentiles of the replicates' ranks)
    and ``p_first`` (share of replicates ranking it first, ties included).
    """
    rng = np.random.default_rng(seed)
    answers = []
    for key, group in values.dropna(subset=[value]).groupby(list(cell), sort=True):
        items = sorted(group[item].unique(), key=str)
        samples = [group.loc[group[item] == name, value].to_numpy(dtype=float) for name in items]
        means = np.array([s.mean() for s in samples])
        # (n_boot, n_items): each item's mean over a resample of its own observations.
        replicates = np.stack([s[rng.integers(0, len(s), size=(n_boot, len(s)))].mean(axis=1) for s in samples], axis=1)
        ranks = stats.rankdata(-replicates, method="min", axis=1)
        lower, upper = np.percentile(ranks, [2.5, 97.5], axis=0, method="inverted_cdf")
        frame = pd.DataFrame({item: items, "mean": means, "n": [len(s) for s in samples],
                              "rank": stats.rankdata(-means, method="min").astype(int),
                              "rank_lo": lower.astype(int), "rank_hi": upper.astype(int),
                              "p_first": (ranks == 1).mean(axis=0)})
        for column, part in zip(cell, key if isinstance(key, tuple) else (key,)):
            frame[column] = part
        answers.append(frame)
    if not answers:
        return pd.DataFrame(columns=[*cell, item, "mean", "n", "rank", "rank_lo", "rank_hi", "p_first"])
    return pd.concat(answers, ignore_index=True)[[*cell, item, "mean", "n", "rank", "rank_lo", "rank_hi", "p_first"]]


def spearman_interval(ours: pd.DataFrame, theirs: pd.Series, item: str, value: str, n_boot: int = 2000,
                      seed: int = 0) -> tuple[float, float, float, int]:
    """Spearman's correlation of our mean ``value`` per ``item`` with ``theirs`` (a value per item,
    indexed by item), over the items both have, with a 95 % percentile interval from a bootstrap
    that resamples each item's observations (seeds) with replacement.

    Returns ``(rho, lower, upper, n_items)``; NaNs where fewer than three items are shared or an
    order is constant.
    """
    ours = ours.dropna(subset=[value])
    shared = sorted(set(ours[item]) & set(theirs.dropna().index), key=str)
    if len(shared) < 3:
        return math.nan, math.nan, math.nan, len(shared)
    reference = theirs.loc[shared].to_numpy(dtype=float)
    samples = [ours.loc[ours[item] == name, value].to_numpy(dtype=float) for name in shared]
    rho = _spearman(np.array([s.mean() for s in samples]), reference)
    rng = np.random.default_rng(seed)
    replicates = np.stack([s[rng.integers(0, len(s), size=(n_boot, len(s)))].mean(axis=1) for s in samples], axis=1)
    rhos = np.array([_spearman(row, reference) for row in replicates])
    rhos = rhos[~np.isnan(rhos)]
    lower, upper = (np.percentile(rhos, [2.5, 97.5]) if len(rhos) else (math.nan, math.nan))
    return rho, float(lower), float(upper), len(shared)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(stats.spearmanr(a, b).statistic)
