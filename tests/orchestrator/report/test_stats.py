"""Estimates and tests the report shows: t intervals of means, detection rates per model with a t interval
over models and their counts pooled beside them, t p-values and Holm's adjustment."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from orchestrator.report.stats import (
    detection_rates,
    format_estimate,
    holm,
    mean_interval,
    t_interval,
    t_pvalue,
    welch_interval,
    welch_pvalue,
)


def runs() -> duckdb.DuckDBPyConnection:
    """Filtering runs of three configurations on backdoored models (``seed`` tells them apart).

    ``a`` ran on three models that differ a lot: 9 of 10 poisons caught, 10 of 100, 50 of 100, so the
    mean of the models' TPRs (0.5) is not the pooled 69 / 210; model 0 ran twice (its counts are summed)
    and model 3 has no counts (a step that did not filter). ``b`` ran on one model. ``c`` ran on two
    models without poisons (no TPR) that removed 5 of 100 and 15 of 100 clean samples.
    """
    frame = pd.DataFrame({
        "config": ["a", "a", "a", "a", "a", "b", "c", "c"],
        "seed": [0, 0, 1, 2, 3, 0, 0, 1],
        "removed_poisoned": [4, 5, 10, 50, None, 8, 0, 0],
        "removed_clean": [0, 10, 0, 30, None, 10, 5, 15],
        "n_poisoned": [5, 5, 100, 100, None, 10, 0, 0],
        "n_seen": [55, 55, 200, 400, None, 110, 100, 100],
    })
    connection = duckdb.connect()
    connection.register("runs", frame)
    return connection


def rates(where: str = "TRUE") -> pd.DataFrame:
    return detection_rates(runs(), "runs", ["config"], ["seed"], where=where).set_index("config")


def test_detection_rates_are_per_model_with_a_t_interval_over_models():
    a = rates().loc["a"]
    per_model_tpr = np.array([9 / 10, 10 / 100, 50 / 100])
    per_model_fpr = np.array([10 / 100, 0 / 100, 30 / 300])
    assert (a["models"], a["runs"]) == (3, 4)
    assert a["tpr"] == pytest.approx(per_model_tpr.mean()) and a["tpr_n"] == 3
    # The interval is Student's over the three models' rates, taken here from SciPy directly.
    low, high = stats.t.interval(0.95, 2, loc=per_model_tpr.mean(), scale=stats.sem(per_model_tpr))
    assert (a["tpr_lo"], a["tpr_hi"]) == pytest.approx((max(low, 0.0), min(high, 1.0)))
    low, high = stats.t.interval(0.95, 2, loc=per_model_fpr.mean(), scale=stats.sem(per_model_fpr))
    assert (a["fpr_lo"], a["fpr_hi"]) == pytest.approx((max(low, 0.0), high))
    assert a["fpr"] == pytest.approx(per_model_fpr.mean())
    precision = np.array([9 / 19, 1.0, 50 / 80])
    assert a["precision"] == pytest.approx(precision.mean()) and a["precision_n"] == 3


def test_pooled_counts_stay_beside_the_per_model_rates_and_differ_from_them():
    a = rates().loc["a"]
    assert (a["tp"], a["fp"], a["fn"], a["tn"], a["seen"]) == (69, 40, 141, 460, 710)
    assert a["tpr_pooled"] == pytest.approx(69 / 210)  # the big models outweigh the small one ...
    assert a["tpr"] == pytest.approx(0.5)  # ... which counts as one model of three in the mean
    assert a["fpr_pooled"] == pytest.approx(40 / 500)
    assert a["removed_share_pooled"] == pytest.approx(109 / 710)
    assert a["f1_pooled"] == pytest.approx(2 * 69 / (2 * 69 + 40 + 141))


def test_the_interval_over_models_is_wider_than_a_binomial_one_over_pooled_samples():
    # 210 poisons as independent samples give a Wilson half-width of ~6 pp; three models that
    # disagree give one of tens of pp: the samples of one model are not independent draws.
    a = rates().loc["a"]
    assert a["tpr_hi"] - a["tpr_lo"] > 0.5


def test_one_model_has_a_rate_and_counts_but_no_interval():
    b = rates().loc["b"]
    assert (b["models"], b["tpr_n"], b["tp"], b["fn"]) == (1, 1, 8, 2)
    assert b["tpr"] == pytest.approx(0.8) and b["tpr_pooled"] == pytest.approx(0.8)
    assert np.isnan(b["tpr_lo"]) and np.isnan(b["tpr_hi"]) and np.isnan(b["fpr_lo"])
    assert format_estimate(b["tpr"], b["tpr_lo"], b["tpr_hi"], b["tpr_n"]) == "80.0 (n = 1)"


def test_a_model_without_poisons_has_no_tpr_and_counts_only_where_its_rate_exists():
    c = rates().loc["c"]
    assert c["models"] == 2 and c["tpr_n"] == 0 and np.isnan(c["tpr"]) and np.isnan(c["tpr_pooled"])
    assert c["fpr_n"] == 2 and c["fpr"] == pytest.approx(0.10)
    low, high = stats.t.interval(0.95, 1, loc=0.10, scale=stats.sem([0.05, 0.15]))
    assert (c["fpr_lo"], c["fpr_hi"]) == pytest.approx((max(low, 0.0), high))
    assert c["fpr_lo"] == 0.0  # cut at 0: a rate cannot be negative


def test_detection_rates_of_no_run_are_an_empty_frame():
    assert detection_rates(runs(), "runs", ["config"], ["seed"], where="config = 'z'").empty
    assert detection_rates(runs(), "runs", [], ["seed"], where="config = 'z'").empty


def test_t_interval_is_scipys_and_has_none_without_data():
    lower, upper = t_interval([0.5, 0.5], [0.1, 0.1], [1, 3])
    assert np.isnan(lower[0]) and np.isnan(upper[0])
    assert (lower[1], upper[1]) == pytest.approx(stats.t.interval(0.95, 2, loc=0.5, scale=0.1 / math.sqrt(3)))


def test_t_pvalue_is_scipys_one_sample_test_and_agrees_with_the_interval():
    rng = np.random.default_rng(7)
    for size, shift in [(2, 3.0), (3, 0.5), (5, 1.0), (8, 0.0), (12, -0.7)] * 4:
        values = rng.normal(shift, 1.0, size)
        p = t_pvalue(values)
        assert p == pytest.approx(stats.ttest_1samp(values, 0.0).pvalue)
        _, lower, upper, _ = mean_interval(values)
        assert (p < 0.05) == (lower > 0 or upper < 0)
    assert t_pvalue([1.0, 3.0], null=2.0) == pytest.approx(1.0)
    assert math.isnan(t_pvalue([0.4])) and math.isnan(t_pvalue([np.nan, 0.4]))
    assert t_pvalue([2.0, 2.0, 2.0]) == 0.0 and t_pvalue([0.0, 0.0]) == 1.0


def test_welch_pvalue_is_scipys_and_agrees_with_welchs_interval():
    rng = np.random.default_rng(8)
    for _ in range(20):
        first, second = rng.normal(1.0, 2.0, 4), rng.normal(0.0, 0.5, 6)
        p = welch_pvalue(first, second)
        assert p == pytest.approx(stats.ttest_ind(first, second, equal_var=False).pvalue)
        _, lower, upper, _ = welch_interval(first, second)
        assert (p < 0.05) == (lower > 0 or upper < 0)
    assert math.isnan(welch_pvalue([1.0], [1.0, 2.0]))
    assert welch_pvalue([1.0, 1.0], [0.0, 0.0]) == 0.0


def test_holm_keeps_a_claim_significant_alone_from_a_verdict_in_the_family():
    # Sorted: 0.005 · 4 = 0.02, 0.01 · 3 = 0.03, 0.03 · 2 = 0.06, max(0.04 · 1, 0.06) = 0.06.
    adjusted, rejected = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert rejected.tolist() == [True, False, False, True]
    # Step-down: once the smallest p-values pass, the next face a laxer bound than Bonferroni's 0.05 / m
    # (0.0167 here, which would keep only 0.001):
    adjusted, rejected = holm([0.001, 0.02, 0.04])
    assert adjusted == pytest.approx([0.003, 0.04, 0.04]) and rejected.all()


def test_holm_leaves_claims_without_a_test_out_of_the_family():
    adjusted, rejected = holm([0.01, np.nan, 0.04])
    assert adjusted[0] == pytest.approx(0.02) and adjusted[2] == pytest.approx(0.04) and np.isnan(adjusted[1])
    assert rejected.tolist() == [True, False, True]
    adjusted, rejected = holm([np.nan, np.nan])
    assert np.isnan(adjusted).all() and not rejected.any()
    adjusted, rejected = holm([0.03])  # a family of one is the test alone
    assert adjusted[0] == pytest.approx(0.03) and rejected[0]


def test_holm_is_the_step_down_rule_and_caps_at_one():
    rng = np.random.default_rng(9)
    for _ in range(50):
        p = rng.uniform(0, 0.2, rng.integers(1, 12))
        adjusted, rejected = holm(p, alpha=0.05)
        order = np.argsort(p)
        m = len(p)
        expected = np.zeros(m, dtype=bool)
        for rank, index in enumerate(order):  # reject while p_(j) <= alpha / (m - j + 1)
            if p[index] > 0.05 / (m - rank):
                break
            expected[index] = True
        assert rejected.tolist() == expected.tolist()
        assert (adjusted >= p - 1e-15).all() and (adjusted <= 1).all()
        assert (np.diff(adjusted[order]) >= 0).all()
    assert holm([0.6, 0.7])[0] == pytest.approx([1.0, 1.0])


def test_estimates_read_as_cells_and_never_show_minus_zero():
    assert format_estimate(0.964, 0.951, 0.977, 3) == "96.4 [95.1, 97.7] n=3"
    assert format_estimate(0.7341, float("nan"), float("nan"), 1, scale=1.0, digits=3) == "0.734 (n = 1)"
    assert format_estimate(-0.002, -0.003, -0.0002, 9) == "-0.2 [-0.3, 0.0] n=9"
    assert format_estimate(float("nan"), 0.0, 0.0, 0) == "–"


# Ranks with intervals (the leaderboard's) --------------------------------------------------------

def ranked(means: dict[str, list[float]], cell: str = "blend") -> pd.DataFrame:
    return pd.DataFrame([{"attack": cell, "defense": name, "seed": seed, "der": value}
                         for name, values in means.items() for seed, value in enumerate(values)])


def test_rank_intervals_separate_clear_winners_and_overlap_for_indistinguishable_defenses():
    from orchestrator.report.stats import bootstrap_ranks

    values = pd.concat([
        ranked({"a": [0.90, 0.91, 0.92], "b": [0.60, 0.61, 0.62], "c": [0.30, 0.31, 0.29]}, "blend"),
        # d and e have the same three values: neither can be told first.
        ranked({"d": [0.70, 0.80, 0.60], "e": [0.70, 0.80, 0.60], "f": [0.10, 0.12, 0.11]}, "wanet"),
    ])
    ranks = bootstrap_ranks(values, ["attack"], "defense", "der", n_boot=500, seed=1).set_index("defense")
    assert ranks.loc[["a", "b", "c"], ["rank", "rank_lo", "rank_hi"]].to_numpy().tolist() == [[1, 1, 1], [2, 2, 2], [3, 3, 3]]
    assert ranks.loc["a", "p_first"] == 1.0 and ranks.loc["a", "mean"] == pytest.approx(0.91)
    # Tied observed means share rank 1; the bootstrap puts each first about half of the time.
    assert ranks.loc["d", "rank"] == ranks.loc["e", "rank"] == 1
    assert (ranks.loc["d", "rank_lo"], ranks.loc["d", "rank_hi"]) == (1, 2) == (ranks.loc["e", "rank_lo"], ranks.loc["e", "rank_hi"])
    assert 0.3 < ranks.loc["d", "p_first"] < 0.9 and ranks.loc["f", "rank_lo"] == 3
    again = bootstrap_ranks(values, ["attack"], "defense", "der", n_boot=500, seed=1)
    assert again.equals(bootstrap_ranks(values, ["attack"], "defense", "der", n_boot=500, seed=1))


def test_spearman_interval_of_an_agreeing_and_a_reversed_order():
    from orchestrator.report.stats import spearman_interval

    ours = ranked({"a": [0.90, 0.91, 0.92], "b": [0.60, 0.61, 0.62], "c": [0.30, 0.31, 0.29], "x": [0.5, 0.5, 0.5]})
    theirs = pd.Series({"a": 0.8, "b": 0.7, "c": 0.2, "not_ours": 0.9})
    rho, lower, upper, n = spearman_interval(ours[ours["defense"] != "x"], theirs, "defense", "der", n_boot=300)
    assert (rho, lower, upper, n) == (1.0, 1.0, 1.0, 3)
    rho, lower, upper, n = spearman_interval(ours[ours["defense"] != "x"], -theirs, "defense", "der", n_boot=300)
    assert (rho, lower, upper) == (-1.0, -1.0, -1.0)
    # Fewer than three shared defenses: no correlation.
    assert math.isnan(spearman_interval(ours, theirs.loc[["a", "not_ours"]], "defense", "der")[0])
