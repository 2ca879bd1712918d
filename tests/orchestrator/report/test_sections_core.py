"""Sections 1–5 of the report (sweep, attacks, master, trade-off, detection) on made-up rows."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from orchestrator.report import figures
from orchestrator.report.model import Code, Figure, Paragraph, ReportContext, SweepFacts, Table
from orchestrator.report.sections import attacks, detection, master, sweep, tradeoff
from orchestrator.report.sections.settings import DER_FORMULA, POOLED_INTERVAL, setting_columns
from orchestrator.report.sections.sweep import stage_kind
from tests.report_rows import PIPELINES, connect_rows, synthetic_rows

TRIGGERS = ["yellow_square", "big_yellow_square"]
POISON_PCTS = [2, 4, 10]
SEEDS = [0, 1, 2]
ESTIMATE_N3 = re.compile(r"-?\d+\.\d \[-?\d+\.\d, -?\d+\.\d\] n=3")


def context_of(rows: list[dict], states: dict[str, int] | None = None, **facts) -> ReportContext:
    states = states or {"done": len(rows)}
    return ReportContext(connect_rows(rows), SweepFacts("demo", "name: demo\n", states, **facts))


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return synthetic_rows(TRIGGERS, POISON_PCTS, SEEDS, PIPELINES)


@pytest.fixture(scope="module")
def context(rows) -> ReportContext:
    return context_of(rows)


def tables(section) -> dict[str, Table]:
    return {block.name: block for block in section.blocks if isinstance(block, Table)}


def estimate_columns(table: Table) -> list:
    return [c for c in table.shown.columns if any(unit in str(c) for unit in ("(%)", "(pp)"))]


def der_columns(table: Table) -> list:
    return [c for c in table.shown.columns if (c[-1] if isinstance(c, tuple) else c) == "DER"]


def test_every_aggregated_cell_over_three_seeds_has_n3_and_an_interval(context):
    checked = 0
    for section_function in (attacks.section, master.section):
        for table in tables(section_function(context)).values():
            for column in estimate_columns(table):
                for cell in table.shown[column]:
                    assert ESTIMATE_N3.fullmatch(cell), (table.name, cell)
                    checked += 1
    assert checked > 100


DER_N3 = re.compile(r"[01]\.\d{3} \[[01]\.\d{3}, [01]\.\d{3}\] n=3")


@pytest.mark.parametrize("seeds", [SEEDS, SEEDS[:1]])
def test_der_is_a_score_from_zero_to_one_with_its_formula_written_once(seeds):
    pipelines = ["none", "perfect_filter", "ac(cluster_analysis=smaller)", "fp(layer=last_conv,threshold=0.04)"]
    section = master.section(context_of(synthetic_rows(TRIGGERS, POISON_PCTS, seeds, pipelines)))
    cells = [cell for table in tables(section).values() for column in der_columns(table) for cell in table.shown[column]]
    assert len(cells) == len(pipelines) * len(TRIGGERS) * len(POISON_PCTS)
    one_seed = re.compile(r"[01]\.\d{3} \(n = 1\)")
    defended = [cell for cell in cells if cell != "–"]
    assert len(defended) == (len(pipelines) - 1) * len(TRIGGERS) * len(POISON_PCTS)
    assert all((DER_N3 if len(seeds) == 3 else one_seed).fullmatch(cell) for cell in defended), defended[:3]
    assert all(table.data["der_mean"].dropna().between(0, 1).all() for table in tables(section).values())
    assert DER_FORMULA in section.blocks[0].text


def test_attack_cell_is_the_mean_and_t_interval_of_the_three_seeds(context, rows):
    table = tables(attacks.section(context))["attacks"]
    asr = [r["asr_before"] for r in rows if r["pipeline"] == "none" and r["trigger"] == "yellow_square"
           and r["poison_pct"] == 4.0]
    assert len(asr) == 3
    mean = np.mean(asr)
    half = stats.t.ppf(0.975, 2) * np.std(asr, ddof=1) / math.sqrt(3)
    row = table.data[(table.data["trigger"] == "yellow_square") & (table.data["poison_pct"] == 4.0)].iloc[0]
    assert row["asr_mean"] == pytest.approx(mean)
    assert row["asr_lo"] == pytest.approx(mean - half)
    assert row["asr_hi"] == pytest.approx(mean + half)
    assert row["asr_n"] == 3
    shown = table.shown.loc[row.name, "ASR (%)"]
    lower, upper = max(mean - half, 0.0), min(mean + half, 1.0)
    assert shown == f"{100 * mean:.1f} [{100 * lower:.1f}, {100 * upper:.1f}] n=3"


def test_attacks_count_each_model_once_without_a_none_row():
    rows = synthetic_rows(["yellow_square"], [4], SEEDS, ["ac(cluster_analysis=smaller)", "fp(layer=last_conv,threshold=0.04)"])
    table = tables(attacks.section(context_of(rows)))["attacks"]
    assert table.data["asr_n"].tolist() == [3]  # three models, not six rows
    per_seed = {r["seed"]: r["asr_before"] for r in rows}
    assert table.data["asr_mean"].iloc[0] == pytest.approx(np.mean(list(per_seed.values())))


def test_master_cell_is_the_mean_over_seeds_of_one_configuration(context, rows):
    pipeline = "ac(cluster_analysis=smaller)>fp(layer=last_conv,threshold=0.04)"
    section = master.section(context)
    values = [r["clean_acc_after"] for r in rows if r["pipeline"] == pipeline and r["trigger"] == "big_yellow_square"
              and r["poison_pct"] == 10.0]
    found = [t for t in tables(section).values() if pipeline in set(t.data["pipeline"])
             and ((t.data["trigger"] == "big_yellow_square") & (t.data["poison_pct"] == 10.0)).any()]
    assert len(found) == 1
    data = found[0].data
    row = data[(data["pipeline"] == pipeline) & (data["trigger"] == "big_yellow_square") & (data["poison_pct"] == 10.0)]
    assert row["clean_acc_after_mean"].iloc[0] == pytest.approx(np.mean(values))
    assert row["clean_acc_after_n"].iloc[0] == 3


def test_master_table_splits_few_configurations_into_narrow_tables():
    chosen = PIPELINES[:7]
    section = master.section(context_of(synthetic_rows(TRIGGERS, POISON_PCTS, [0, 1], chosen)))
    found = list(tables(section).values())
    n_metrics = len({column[1] for column in found[0].shown.columns if column[1]})
    assert master.per_table(n_metrics) == (2 if n_metrics == 3 else 1)
    assert len(found) == math.ceil(len(chosen) / master.per_table(n_metrics))
    for table in found:
        groups = {column[0] for column in table.shown.columns if column[1]}
        assert 1 <= len(groups) <= master.per_table(n_metrics)
        assert len(table.shown) == len(TRIGGERS) * len(POISON_PCTS)  # a row per attack setting
    shown_groups = [column[0] for table in found for column in table.shown.columns if column[1]]
    assert set(shown_groups) == set(chosen)


def test_master_table_turns_with_many_configurations(context):
    found = list(tables(master.section(context)).values())
    assert len(PIPELINES) > master.MAX_WIDE
    assert len(found) == len(TRIGGERS) * len(POISON_PCTS)  # one table per attack setting
    assert all(len(table.shown) == len(PIPELINES) for table in found)
    assert all(table.shown.iloc[0, 0] == "none" for table in found)


def test_one_seed_cells_say_n_equals_one():
    context = context_of(synthetic_rows(["yellow_square"], [4], [0], ["none", "ac(cluster_analysis=smaller)"]))
    cells = [cell for section_function in (attacks.section, master.section)
             for table in tables(section_function(context)).values()
             for column in estimate_columns(table) for cell in table.shown[column] if cell != "–"]
    assert cells and all(cell.endswith("(n = 1)") and "[" not in cell for cell in cells)


def test_tradeoff_aggregates_seeds_and_poison_percentages_and_marks_a_pareto_front(context, rows):
    section = tradeoff.section(context)
    front = tables(section)["tradeoff_front"]
    assert {figure.name for figure in section.blocks if isinstance(figure, Figure)} == {"tradeoff"}
    assert (front.data["drop_n"] == len(SEEDS) * len(POISON_PCTS)).all()
    # An interval over poison percentages as well as seeds says so.
    figure = next(block for block in section.blocks if isinstance(block, Figure))
    assert POOLED_INTERVAL in front.note and POOLED_INTERVAL in figure.caption
    assert set(front.data["trigger"]) == set(TRIGGERS)
    one = front.data.iloc[0]
    drops = [r["clean_acc_before"] - r["clean_acc_after"] for r in rows
             if r["pipeline"] == one["pipeline"] and r["trigger"] == one["trigger"]]
    assert one["drop_mean"] == pytest.approx(np.mean(drops))


def test_tradeoff_front_holds_real_defenses_and_draws_the_oracle_apart(context, rows):
    section = tradeoff.section(context)
    front = tables(section)["tradeoff_front"].data
    # perfect_filter leaves the least backdoor, yet no defender can run it: it is never on the front ...
    assert "perfect_filter" not in set(front["pipeline"])
    for trigger in TRIGGERS:
        # ... which is the front of the other configurations, by hand.
        means = {}
        for row in rows:
            if row["trigger"] == trigger and row["n_defenses"] > 0 and "perfect_filter" not in row["pipeline"]:
                drop, asr = means.setdefault(row["pipeline"], ([], []))
                drop.append(row["clean_acc_before"] - row["clean_acc_after"])
                asr.append(row["asr_after"])
        names = sorted(means)
        on_front = figures.pareto_front([np.mean(means[n][0]) for n in names], [np.mean(means[n][1]) for n in names])
        assert set(front.loc[front["trigger"] == trigger, "pipeline"]) == {n for n, keep in zip(names, on_front) if keep}
    figure = next(block for block in section.blocks if isinstance(block, Figure))
    assert tradeoff.ORACLE_LABEL in figure.svg and "oracle" in figure.caption


def test_tradeoff_without_the_oracle_says_nothing_of_it():
    section = tradeoff.section(context_of(synthetic_rows(TRIGGERS, [4], SEEDS, PIPELINES[5:9])))
    figure = next(block for block in section.blocks if isinstance(block, Figure))
    assert tradeoff.ORACLE_LABEL not in figure.svg and "oracle" not in figure.caption


def test_tradeoff_is_absent_without_defended_trials():
    assert tradeoff.section(context_of(synthetic_rows(TRIGGERS, [4], SEEDS, ["none"]))) is None


def test_pareto_front_keeps_points_no_other_beats_on_both():
    x = [0.0, 1.0, 2.0, 1.5, 0.5, np.nan]
    y = [50.0, 10.0, 0.0, 20.0, 60.0, 0.0]
    assert figures.pareto_front(x, y).tolist() == [True, True, True, False, False, False]


def test_detection_rates_are_means_over_models_with_t_intervals_and_pooled_counts(context, rows):
    section = detection.section(context)
    found = tables(section)
    pipeline = "ac(cluster_analysis=distance)"
    mine = [r for r in rows if r["pipeline"] == pipeline]  # one row per model: trigger × poison % × seed
    tp = sum(r["d1_removed_poisoned"] for r in mine)
    fp = sum(r["d1_removed_clean"] for r in mine)
    fn = sum(r["d1_n_poisoned"] - r["d1_removed_poisoned"] for r in mine)
    tn = sum(r["d1_n_seen"] - r["d1_n_poisoned"] - r["d1_removed_clean"] for r in mine)
    counts = found["detection_counts"].data.set_index("pipeline").loc[pipeline]
    assert (counts["tp"], counts["fp"], counts["fn"], counts["tn"], counts["models"]) == (tp, fp, fn, tn, len(mine))
    rates = found["detection_rates"].data.set_index("pipeline").loc[pipeline]
    per_model = np.array([r["d1_removed_poisoned"] / r["d1_n_poisoned"] for r in mine])
    assert rates["tpr"] == pytest.approx(per_model.mean()) and rates["tpr_n"] == len(mine) == 18
    low, high = stats.t.interval(0.95, len(per_model) - 1, loc=per_model.mean(), scale=stats.sem(per_model))
    assert (rates["tpr_lo"], rates["tpr_hi"]) == pytest.approx((low, high))
    per_model_fpr = np.array([r["d1_removed_clean"] / (r["d1_n_seen"] - r["d1_n_poisoned"]) for r in mine])
    assert rates["fpr"] == pytest.approx(per_model_fpr.mean())
    # The pooled counts stay beside the rate, and their ratio is not the mean over models (models differ
    # in their number of poisons).
    assert rates["tpr_pooled"] == pytest.approx(tp / (tp + fn)) and rates["fpr_pooled"] == pytest.approx(fp / (fp + tn))
    assert rates["tpr"] != pytest.approx(rates["tpr_pooled"], rel=1e-9)
    shown = found["detection_rates"].shown.set_index("Defense configuration").loc[pipeline]
    assert shown["TPR (%)"] == f"{100 * per_model.mean():.1f} [{100 * low:.1f}, {100 * high:.1f}] n=18"
    assert shown["TP / poisoned, pooled"] == f"{tp:,}/{tp + fn:,}"
    assert shown["FP / clean, pooled"] == f"{fp:,}/{fp + tn:,}"
    assert shown["Models"] == "18"
    assert "n is the number of models (not of samples)" in " ".join(
        block.text for block in section.blocks if isinstance(block, Paragraph))


def test_detection_of_planted_models_differs_from_pooled_and_one_model_has_no_interval():
    # AC caught 9 of 10 poisons on one model, 10 of 100 and 50 of 100 on two others: the models' mean
    # TPR is 50 %, the pooled 69 / 210 = 32.9 %, and three models that disagree this much leave a wide interval.
    rows = synthetic_rows(["yellow_square"], [4], SEEDS, ["none", "ac(cluster_analysis=distance)"])
    planted = {0: (10, 9), 1: (100, 10), 2: (100, 50)}
    for row in rows:
        if row["pipeline"] != "none":
            row["d1_n_poisoned"], row["d1_removed_poisoned"] = planted[row["seed"]]
    shown = tables(detection.section(context_of(rows)))["detection_rates"].shown.iloc[0]
    low, high = stats.t.interval(0.95, 2, loc=0.5, scale=stats.sem([0.9, 0.1, 0.5]))
    assert shown["TPR (%)"] == f"50.0 [{max(100 * low, 0):.1f}, {min(100 * high, 100):.1f}] n=3"
    assert shown["TP / poisoned, pooled"] == "69/210"
    # One model: a rate and its counts, no interval.
    one = tables(detection.section(context_of([r for r in rows if r["seed"] == 2])))["detection_rates"].shown.iloc[0]
    assert one["TPR (%)"] == "50.0 (n = 1)" and one["TP / poisoned, pooled"] == "50/100" and one["Models"] == "1"
    assert "[" not in one["FPR (%)"] and one["FPR (%)"].endswith("(n = 1)")


def test_detection_has_a_row_per_filtering_step_of_a_chain(context):
    data = tables(detection.section(context))["detection_counts"].data
    chained = data[data["pipeline"] == "fp(layer=last_conv,threshold=0.04)>ac(cluster_analysis=smaller)"]
    assert chained[["position", "defense"]].values.tolist() == [[2, "ac"]]
    assert not (data["defense"] == "fp").any()


def test_detection_roc_figure_needs_spectral_signature_rows(context):
    with_ss = detection.section(context)
    assert "ss_roc" in {block.name for block in with_ss.blocks if isinstance(block, Figure)}
    roc = next(block for block in with_ss.blocks if isinstance(block, Figure))
    assert "AUROC" in roc.svg and roc.svg.startswith("<svg")
    no_ss = [p for p in PIPELINES if "ss" not in p.split("(")[0] and "'ss'" not in p]
    without = detection.section(context_of(synthetic_rows(TRIGGERS, [4], SEEDS, no_ss)))
    assert without is not None
    assert not [block for block in without.blocks if isinstance(block, Figure)]


def test_detection_is_absent_without_filtering_defenses():
    rows = synthetic_rows(TRIGGERS, [4], SEEDS, ["none", "fp(layer=last_conv,threshold=0.04)"])
    assert detection.section(context_of(rows)) is None


def test_sweep_section_lists_states_versions_compute_errors_and_damage(rows):
    errored = [("t1", "yellow_square 4 % ac(cluster_analysis=smaller)", "ValueError: no clusters")]
    context = context_of(rows, {"done": len(rows), "running": 1, "errored": 1, "pending": 2}, errored=errored,
                         damaged=["runs/demo/results/dataset=x/model=y/t9.parquet"])
    section = sweep.section(context)
    found = tables(section)
    assert {"trial_states", "coverage", "versions", "compute", "errored_trials", "damaged_rows"} <= set(found)
    assert [b for b in section.blocks if isinstance(b, Code)][0].text == "name: demo\n"
    assert found["trial_states"].data.set_index("state")["trials"].to_dict() == {
        "done": len(rows), "running": 1, "errored": 1, "pending": 2}
    assert found["errored_trials"].data.values.tolist() == [list(errored[0])]
    assert found["versions"].data.set_index("package").loc["tensorflow", "trials"] == len(rows)
    compute = found["compute"].data.set_index("kind")
    train_computed = sum(r["train_seconds"] for r in rows if r["train_computed"])
    train_reused = sum(r["train_seconds"] for r in rows if not r["train_computed"])
    assert compute.loc["train", "seconds_computed"] == pytest.approx(train_computed)
    assert compute.loc["train", "seconds_reused"] == pytest.approx(train_reused)
    # One model per (trigger, poison %, seed): computed once, reused by every other pipeline.
    assert compute.loc["train", "n_computed"] == len(TRIGGERS) * len(POISON_PCTS) * len(SEEDS)
    activation_labels = [k for r in rows for k in r if k.endswith("_activations_seconds")]
    assert compute.loc["activations", "n_computed"] + compute.loc["activations", "n_reused"] == len(activation_labels)
    assert compute.loc["total", "seconds_computed"] == pytest.approx(compute.drop("total")["seconds_computed"].sum())


def test_sweep_section_warns_of_mixed_versions(rows):
    mixed = [dict(r, code_version="0000000") if i % 2 else r for i, r in enumerate(rows)]
    note = tables(sweep.section(context_of(mixed)))["versions"].note
    assert note.startswith("Mixed versions: code")


def test_coverage_names_every_varying_axis_and_the_combinations_the_trials_hold(rows):
    complete = tables(sweep.section(context_of(rows)))["coverage"]
    combinations = len(TRIGGERS) * len(POISON_PCTS) * len(SEEDS) * len(PIPELINES)
    assert complete.note == (f"Over the {len(rows)} trials with readable rows, which hold {combinations} of the "
                             f"{combinations} combinations of these values.")
    # Epochs tied to the seed, and a partial sweep: far from every combination is a trial.
    varied = [dict(r, train_epochs=5 if r["seed"] == 0 else 10) for r in rows][:-5]
    coverage = tables(sweep.section(context_of(varied, {"done": len(varied), "pending": 5})))["coverage"]
    assert coverage.data.set_index("axis").loc["Train epochs", "count"] == 2
    assert f"which hold {len(varied)} of the {2 * combinations} combinations" in coverage.note
    assert "search space may pair" in coverage.note and "partial report" in coverage.note
    assert "every combination of these values is one trial" not in coverage.note


def test_versions_keep_a_package_name_as_its_column_spells_it(rows):
    named = [dict(r, **{"o'brien_version": "1.0" if r["seed"] else "1.1"}) for r in rows]
    versions = tables(sweep.section(context_of(named)))["versions"].data
    assert versions.loc[versions["package"] == "o'brien", ["version", "trials"]].values.tolist() == [
        ["1.0", len(rows) * 2 // 3], ["1.1", len(rows) // 3]]
    assert versions["package"].iloc[0] == "code"


def test_stage_kinds_of_result_labels():
    labels = ("dataset", "poison", "train", "evaluate_before", "evaluate_after", "d1_activations", "d1_detection",
              "d1_retrain", "d2_clustering_detection", "d2_judge_retrain", "d3_pruning_curve", "d3_pruning",
              "d3_fine_tune", "d1_same_as_detection", "d4_provenance_gains", "d1", "d2_defense")
    assert [stage_kind(label) for label in labels] == [
        "dataset", "poison", "train", "evaluate", "evaluate", "activations", "detection", "retrain", "detection",
        "retrain", "pruning_curve", "pruning", "fine_tune", "detection", "provenance_gains", "defense", "defense"]


def test_setting_columns_add_configuration_the_sweep_varies(rows):
    assert setting_columns(context_of(rows)) == ["dataset", "model", "trigger", "poison_pct"]
    varied = [dict(r, train_epochs=5 if r["seed"] == 0 else 10) for r in rows]
    assert setting_columns(context_of(varied)) == ["dataset", "model", "trigger", "poison_pct", "train_epochs"]


def test_generated_rows_are_consistent(rows):
    frame = pd.DataFrame(rows)
    for position in (1, 2):
        filtered = frame[frame[f"d{position}_removed_poisoned"].notna()]
        assert (filtered[f"d{position}_removed_poisoned"] <= filtered[f"d{position}_n_poisoned"]).all()
        assert (filtered[f"d{position}_removed_total"]
                == filtered[f"d{position}_removed_poisoned"] + filtered[f"d{position}_removed_clean"]).all()
    same_as = frame["d1_same_as"].dropna().map(json.loads)
    assert {next(iter(v)) for v in same_as} == {"ac", "ss"}
    assert frame.groupby(["trigger", "poison_pct", "seed"])["asr_before"].nunique().max() == 1
    by_pct = frame[frame["pipeline"] == "none"].groupby("poison_pct")["asr_before"].mean()
    assert by_pct.is_monotonic_increasing


def test_two_datasets_get_a_table_and_a_panel_each():
    rows = (synthetic_rows(["yellow_square"], [2, 4], SEEDS, PIPELINES[:6])
            + synthetic_rows(["green_sunglasses"], [4, 10], SEEDS, PIPELINES[:6], dataset="synthetic_faces", model="deepid"))
    context = context_of(rows)
    found = tables(attacks.section(context))
    assert set(found) == {"attacks_synthetic_signs_gtsrb_cnn", "attacks_synthetic_faces_deepid"}
    assert all((table.data["asr_n"] == 3).all() for table in found.values())
    dose = next(b for b in attacks.section(context).blocks if isinstance(b, Figure))
    assert dose.svg.count("synthetic_faces · deepid") == 1
    rates = tables(detection.section(context))["detection_rates"]
    assert "Dataset" in rates.shown.columns and set(rates.data["dataset"]) == {"synthetic_signs", "synthetic_faces"}
    front = tables(tradeoff.section(context))["tradeoff_front"]
    assert set(front.data["dataset"]) == {"synthetic_signs", "synthetic_faces"}


def epoch_rows(pipelines: list[str]) -> list[dict]:
    """One attack setting trained for 5 and for 10 epochs, three seeds each: six backdoored models."""
    rows = []
    for epochs, rng_seed in ((5, 1), (10, 2)):
        for row in synthetic_rows(["yellow_square"], [4], SEEDS, pipelines, rng_seed=rng_seed):
            rows.append(dict(row, train_epochs=epochs, trial_id=f"{row['trial_id']}-{epochs}"))
    return rows


AUROC_CELL = re.compile(r"AUROC \d\.\d\d \[\d\.\d\d, \d\.\d\d\] n=(\d+)")


def test_roc_keeps_models_of_different_training_apart(monkeypatch):
    rows = epoch_rows(["none", "ss(expected_pp_poison=0.05,eps_multiplier=1.5,score=centered)"])
    context = context_of(rows)
    # A panel per training configuration: three models each.
    roc = detection.roc_figure(context, detection.detection_counts(context))
    assert AUROC_CELL.findall(roc.svg) == ["3", "3"]
    assert "train epochs 5" in roc.svg and "train epochs 10" in roc.svg
    # One panel pooling both: six models, not three merged pairs.
    monkeypatch.setattr(detection, "MAX_PANELS", 1)
    pooled = detection.roc_figure(context, detection.detection_counts(context))
    assert AUROC_CELL.findall(pooled.svg) == ["6"]
    assert "differ only in train epochs" in pooled.caption
