"""Estimates the report shows: t intervals of means and rates pooled from detection counts."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from orchestrator.report.stats import format_estimate, pooled_rates, t_interval, wilson_interval


def runs() -> duckdb.DuckDBPyConnection:
    """Two configurations' filtering runs: ``a`` twice with counts, once without (a step that did not
    filter); ``b`` once, removing nothing."""
    frame = pd.DataFrame({
        "config": ["a", "a", "a", "b"],
        "removed_poisoned": [8, 2, None, 0], "removed_clean": [10, 0, None, 0],
        "n_poisoned": [10, 10, None, 0], "n_seen": [110, 90, None, 50],
    })
    connection = duckdb.connect()
    connection.register("runs", frame)
    return connection


def test_pooled_rates_come_from_summed_counts():
    pooled = pooled_rates(runs(), "runs", ["config"]).set_index("config")
    a = pooled.loc["a"]
    assert (a["tp"], a["fp"], a["fn"], a["tn"], a["seen"], a["runs"]) == (10, 10, 10, 170, 200, 2)
    assert a["tpr"] == pytest.approx(0.5)  # the per-run rates 0.8 and 0.2 average to 0.5 too ...
    assert a["fpr"] == pytest.approx(10 / 180)  # ... but 0.1 and 0.0 do not average to 10 / 180
    assert a["removed_share"] == pytest.approx(20 / 200)
    assert a["precision"] == pytest.approx(0.5) and a["f1"] == pytest.approx(0.5)
    z = stats.norm.ppf(0.975)
    centre, half = (0.5 + z**2 / 40) / (1 + z**2 / 20), z * math.sqrt(0.25 / 20 + z**2 / 1600) / (1 + z**2 / 20)
    assert (a["tpr_lo"], a["tpr_hi"]) == pytest.approx((centre - half, centre + half))


def test_pooled_rates_without_a_denominator_are_nan():
    b = pooled_rates(runs(), "runs", ["config"], where="config = 'b'").set_index("config").loc["b"]
    assert b["runs"] == 1 and b["tn"] == 50
    assert np.isnan(b["tpr"]) and np.isnan(b["tpr_lo"]) and np.isnan(b["precision"])
    assert b["fpr"] == 0.0


def test_t_and_wilson_intervals_have_none_without_data():
    lower, upper = t_interval([0.5, 0.5], [0.1, 0.1], [1, 3])
    assert np.isnan(lower[0]) and np.isnan(upper[0])
    assert upper[1] - lower[1] == pytest.approx(2 * stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3))
    assert np.isnan(wilson_interval([0], [0])[0]).all()


def test_estimates_read_as_cells_and_never_show_minus_zero():
    assert format_estimate(0.964, 0.951, 0.977, 3) == "96.4 [95.1, 97.7] n=3"
    assert format_estimate(0.7341, float("nan"), float("nan"), 1, scale=1.0, digits=3) == "0.734 (n = 1)"
    assert format_estimate(-0.002, -0.003, -0.0002, 9) == "-0.2 [-0.3, 0.0] n=9"
    assert format_estimate(float("nan"), 0.0, 0.0, 0) == "–"
