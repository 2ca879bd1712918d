"""Claims judged on a sweep's rows, the parts every study's Answers section shares.

A claim is one statistic oriented so that the claim predicts a value above 0: paired differences
(two runs on the same backdoored model; Student-t interval of their mean) or two groups of models
(Welch's interval of the difference of the group means). Its verdict follows from the interval
(:func:`decide`): AGREES above 0, DISAGREES below 0, INCONCLUSIVE when it holds 0 or rests on too few
values. Holm's step-down adjustment over a family of claims (:func:`after_holm`) keeps a verdict
only where the family-wise test rejects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestrator.report.stats import CONFIDENCE, mean_interval, t_pvalue, welch_interval, welch_pvalue

AGREES, DISAGREES, INCONCLUSIVE, NOT_IN_SWEEP = "agrees", "disagrees", "inconclusive", "not in this sweep"
FAMILY_ALPHA = 1 - CONFIDENCE  # Holm's family-wise error rate over the claims with a test


@dataclass(frozen=True)
class Evidence:
    """What one source says about a claim, in fractions (differences of ASRs).

    Attributes
    ----------
    first : a paired claim's differences, one per pair; a two-group claim's values of the first group
        (face models), one per model
    second : a two-group claim's values of the second group (traffic-sign models); None when paired
    basis : the datasets and models the values come from, with counts, for a reader to check
    """

    first: np.ndarray
    second: np.ndarray | None = None
    basis: str = ""

    @property
    def paired(self) -> bool:
        return self.second is None


@dataclass(frozen=True)
class Judgement:
    """A claim's statistic over one source with its interval and verdict (percentage points).

    ``n_first`` counts pairs, or the first group's models; ``n_second`` the second group's models
    (None for a paired claim). Bounds are NaN without an interval; the mean is NaN without data.
    ``p_value`` is the two-sided p that the statistic is 0, from the interval's t statistic (NaN
    without an interval: fewer than 2 pairs, or 2 models in a group).
    """

    mean: float
    lower: float
    upper: float
    n_first: int
    n_second: int | None
    verdict: str
    reason: str
    p_value: float = math.nan


def decide(lower: float, upper: float, count: int, enough: bool, too_few: str) -> tuple[str, str]:
    """The verdict of :data:`VERDICT_RULE` and its reason, from an interval (percentage points).

    Parameters
    ----------
    lower, upper : the 95 % interval's bounds (NaN without one)
    count : pairs, or the smaller group's models; 0 means the sweep cannot form the statistic
    enough : at least 2 pairs (2 models in each group)
    too_few : the reason given when not ``enough``
    """
    if count == 0:
        return NOT_IN_SWEEP, "no pair in this sweep"
    if not enough:
        return INCONCLUSIVE, too_few
    if lower > 0:
        return AGREES, "interval above 0"
    if upper < 0:
        return DISAGREES, "interval below 0"
    return INCONCLUSIVE, "interval contains 0"


def judge(evidence: Evidence, scale: float = 100.0) -> Judgement:
    """The statistic of ``evidence`` times ``scale`` (100: fractions to percentage points) with its
    95 % interval and verdict."""
    if evidence.paired:
        values = np.asarray(evidence.first, dtype=float) * scale
        mean, lower, upper, n = mean_interval(values)
        verdict, reason = decide(lower, upper, n, n >= 2, "fewer than 2 pairs")
        return Judgement(mean, lower, upper, n, None, verdict, reason, t_pvalue(values))
    first, second = (np.asarray(group, dtype=float) * scale for group in (evidence.first, evidence.second))
    first, second = first[~np.isnan(first)], second[~np.isnan(second)]
    mean, lower, upper, _ = welch_interval(first, second)
    smaller = min(len(first), len(second))
    verdict, reason = decide(lower, upper, smaller, smaller >= 2, "fewer than 2 models in a group")
    return Judgement(mean, lower, upper, len(first), len(second), verdict, reason, welch_pvalue(first, second))


def after_holm(verdict: str, rejected: bool) -> str:
    """A claim's verdict once Holm's procedure has judged the family: AGREES and DISAGREES stand only
    where Holm rejects the claim's null hypothesis (statistic = 0), else they become INCONCLUSIVE; an
    INCONCLUSIVE or 'not in this sweep' verdict stays as it is (Holm never rejects what the claim's
    own 95 % interval does not)."""
    if verdict in (AGREES, DISAGREES):
        return verdict if rejected else INCONCLUSIVE
    return verdict


def paired_differences(frame: pd.DataFrame, unit: list[str], match: list[str], arm: str, first: object,
                       second: object, value: str) -> pd.DataFrame:
    """One difference per unit: ``value`` where ``arm`` is ``first`` minus where it is ``second``.

    Rows of one (``unit``, ``match``, ``arm``) are averaged (several trials of one configuration), a
    difference is taken where both arms ran with equal ``match`` values (None equals None), and the
    differences of one unit are averaged, so that n counts units (backdoored models), never one twice.

    Returns
    -------
    DataFrame with the ``unit`` columns and ``difference`` (the units where both arms ran)
    """
    empty = pd.DataFrame(columns=[*unit, "difference"])
    if frame.empty or arm not in frame or value not in frame:
        return empty
    matched = [f"_match{index}" for index in range(len(match))]
    frame = frame.assign(_arm=comparable(frame[arm]), _value=pd.to_numeric(frame[value], errors="coerce"),
                         **{name: comparable(frame[column]).astype(str) for name, column in zip(matched, match)})
    first, second = comparable(pd.Series([first, second])).tolist()
    frame = frame[frame["_arm"].isin([first, second]) & frame["_value"].notna()]
    if frame.empty:
        return empty
    means = frame.groupby([*unit, *matched, "_arm"], dropna=False)["_value"].mean().unstack("_arm")
    if first not in means.columns or second not in means.columns:
        return empty
    differences = (means[first] - means[second]).dropna()
    if differences.empty:
        return empty
    return differences.groupby(level=unit, dropna=False).mean().rename("difference").reset_index()


def comparable(values: pd.Series) -> pd.Series:
    """Values as match keys: floats rounded (a threshold read back from Parquet equals the YAML's), NA as None."""
    def normal(value: object) -> object:
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
            return None
        if isinstance(value, (float, np.floating)):
            return round(float(value), 9)
        if isinstance(value, np.integer):
            return int(value)
        return value

    return values.astype(object).map(normal)
