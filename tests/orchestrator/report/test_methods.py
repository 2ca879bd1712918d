"""The report's view of the registry: kinds, parameters and declared metrics, by declaration not by name."""

from __future__ import annotations

import duckdb

from orchestrator.report import methods
from tasks.methods import InputFilter, ModelInspection, ModelRepair, TrainingSetFilter


def test_the_kinds_named_in_the_report_are_the_protocols():
    assert (methods.TRAINING_SET_FILTER, methods.MODEL_INSPECTION, methods.MODEL_REPAIR, methods.INPUT_FILTER) == (
        TrainingSetFilter.kind, ModelInspection.kind, ModelRepair.kind, InputFilter.kind)


def test_defenses_list_own_parameters_first_and_declared_metrics():
    found = methods.defenses()
    ac = found["ac"]
    assert ac.kind == methods.TRAINING_SET_FILTER and ac.parameters[-1] == "retrain"
    assert "retrain" not in ac.own_parameters and ac.parameters[0] == "cluster_analysis"
    assert ("flagged_by_clustering", "int", "samples the clustering flagged before any reclassification") in ac.metrics
    assert found["fp"].kind == methods.MODEL_REPAIR


def test_a_recorded_kind_wins_and_older_rows_get_the_registrys():
    connection = duckdb.connect()
    connection.execute("CREATE TABLE stages AS SELECT * FROM (VALUES ('ac', NULL), ('mine', 'input_filter'), "
                       "('unknown', NULL)) AS t(defense, kind)")
    kinds = connection.execute(f"SELECT defense, {methods.kind_sql({'defense', 'kind'})} FROM stages").fetchall()
    assert dict(kinds) == {"ac": "training_set_filter", "mine": "input_filter", "unknown": None}
    without = connection.execute(f"SELECT {methods.kind_sql({'defense'})} FROM stages WHERE defense = 'ac'").fetchone()
    assert without == ("training_set_filter",)


def test_provenance_defines_the_metrics_each_defense_that_ran_declares():
    from orchestrator.report.model import ReportContext, SweepFacts
    from orchestrator.report.sections import provenance
    from tests.report_rows import connect_rows, synthetic_rows

    rows = synthetic_rows(["yellow_square"], [4], [0], ["none", "ac(cluster_analysis=smaller)"])
    context = ReportContext(connect_rows(rows), SweepFacts("demo", "name: demo\n", {"done": len(rows)}))
    definitions = dict(provenance.declared_metrics(context))
    assert definitions["flagged_by_clustering"].startswith("samples the clustering flagged")
    assert "(ac, training set filter; int)" in definitions["classes_skipped"]
    assert "auroc" not in definitions  # ss did not run
