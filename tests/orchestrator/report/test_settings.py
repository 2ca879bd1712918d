"""What the sections share: attack-setting columns, one row per backdoored model, display helpers."""

from __future__ import annotations

import pytest

from orchestrator.report.sections.settings import backdoored_models_sql, panel_title
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
