"""What the sections share: attack-setting columns, one row per backdoored model, display helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchestrator.report.sections.settings import backdoored_models_sql, panel_title, spread
from tests.report_rows import connect_rows, synthetic_rows

SEEDS = [0, 1, 2]


def test_one_row_per_backdoored_model_from_its_none_row():
    rows = synthetic_rows(["yellow_square"], [4, 10], SEEDS, ["none", "ac(cluster_analysis=smaller)", "perfect_filter"])
    for row in rows:
        if row["pipeline"] != "none":
            row["asr_before"] += 0.001  # a value the none row does not share: never counted beside it
    connection = connect_rows(rows)
    models = connection.execute(
        f"SELECT * FROM {backdoored_models_sql(['trigger', 'poison_pct'], {'asr': 'asr_before'})} "
        "ORDER BY poison_pct, seed").df()
    assert len(models) == 2 * len(SEEDS)
    expected = [r["asr_before"] for r in rows if r["pipeline"] == "none"]
    assert models["asr"].tolist() == pytest.approx(expected)
    assert list(models.columns) == ["trigger", "poison_pct", "seed", "asr"]


def test_one_row_per_backdoored_model_without_a_none_row_and_with_a_condition():
    rows = synthetic_rows(["yellow_square"], [4, 10], SEEDS, ["ac(cluster_analysis=smaller)", "perfect_filter"])
    connection = connect_rows(rows)
    models = connection.execute(
        f"SELECT * FROM {backdoored_models_sql(['poison_pct'], ['asr_before', 'clean_acc_before'], 'poison_pct = 4')}"
    ).df()
    assert len(models) == len(SEEDS) and set(models["poison_pct"]) == {4.0}
    assert {"asr_before", "clean_acc_before"} <= set(models.columns)


def test_panel_titles_name_values_that_do_not_name_themselves():
    row = {"dataset": "gtsrb", "trigger": "yellow_square", "poison_pct": 4.0, "train_epochs": 10, "source": 3}
    assert panel_title(row, ["dataset", "trigger", "poison_pct", "train_epochs", "source"]) == (
        "gtsrb · yellow_square · 4 % poison · train epochs 10 · source class 3")


def test_spread_keeps_only_the_keys_some_level_has():
    long = pd.DataFrame({"trigger": ["a", "a", "b"], "pct": [2.0, 2.0, 4.0], "role": ["defense", "random", "defense"],
                         "asr_mean": [0.1, 0.5, 0.2], "asr_n": [3, 2, 3]})
    wide = spread(long, ["trigger", "pct"], "role", ["defense", "random", "perfect"], ["asr_mean", "asr_n"])
    assert list(wide.columns) == ["trigger", "pct", "defense_asr_mean", "defense_asr_n", "random_asr_mean",
                                  "random_asr_n", "perfect_asr_mean", "perfect_asr_n"]
    assert wide[["trigger", "pct"]].values.tolist() == [["a", 2.0], ["b", 4.0]]  # never (a, 4) or (b, 2)
    assert wide["random_asr_n"].tolist() == [2, 0] and wide["perfect_asr_n"].tolist() == [0, 0]
    assert wide["random_asr_n"].dtype == "int64" and np.isnan(wide["random_asr_mean"].iloc[1])
