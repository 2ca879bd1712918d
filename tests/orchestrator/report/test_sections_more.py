"""Sections parameters, combinations, controls, guidelines, thesis and provenance on planted rows.

Rows come from :func:`tests.report_rows.synthetic_rows` (the full schema); the metrics a test is
about are then overwritten with planted values, so each assertion can be computed by hand.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from orchestrator.report.model import Code, Figure, ReportContext, SweepFacts, Table
from orchestrator.report.sections import combinations, controls, guidelines, parameters, provenance
from orchestrator.studies.thesis import beside as thesis
from orchestrator.report.sections.settings import DER_FORMULA, POOLED_INTERVAL
from tests.report_rows import connect_rows, synthetic_rows

SEEDS = [0, 1, 2]
AC = "ac(cluster_analysis=smaller)"
FP = "fp(layer=last_conv,threshold=0.04)"
AC_THEN_FP, FP_THEN_AC = f"{AC}>{FP}", f"{FP}>{AC}"
RANDOM_AS_AC = "random_filter(same_as={'ac': {'cluster_analysis': 'smaller'}})"


def context_of(rows: list[dict], **facts) -> ReportContext:
    return ReportContext(connect_rows(rows), SweepFacts("demo", "name: demo\n", {"done": len(rows)}, **facts))


def plant(rows: list[dict], pipeline: str, **values) -> None:
    """Set metrics of every row of ``pipeline``; a callable value gets the row and returns the value."""
    for row in rows:
        if row["pipeline"] == pipeline:
            row.update({key: value(row) if callable(value) else value for key, value in values.items()})


def tables(section) -> dict[str, Table]:
    return {block.name: block for block in section.blocks if isinstance(block, Table)}


def texts(section) -> str:
    return " ".join(block.text for block in section.blocks if hasattr(block, "text"))


# Combinations ------------------------------------------------------------------------------------

def combination_rows(ab: float, ba: float, seeds=SEEDS) -> list[dict]:
    """AC alone 0.5, FP alone 0.4, AC→FP ``ab`` and FP→AC ``ba`` mean ASR after, in 4 settings.

    AC alone is labelled with a parameter written out (reduce=PCA, its default): it must still match
    the AC inside the chains."""
    ac_alone = "ac(cluster_analysis=smaller,reduce=PCA)"
    rows = synthetic_rows(["yellow_square", "white_square"], [2, 6], seeds, [ac_alone, FP, AC_THEN_FP, FP_THEN_AC])
    spread = {0: -0.01, 1: 0.0, 2: 0.01}
    for pipeline, asr in ((ac_alone, 0.5), (FP, 0.4), (AC_THEN_FP, ab), (FP_THEN_AC, ba)):
        plant(rows, pipeline, asr_after=lambda row, asr=asr: asr + spread[row["seed"]], clean_acc_after=0.9)
    return rows


def test_combination_counts_follow_which_order_has_lower_asr():
    first = combinations.section(context_of(combination_rows(ab=0.2, ba=0.3)))
    assert "AC→FP beats FP→AC for 4 of 4 settings." in texts(first)
    assert "AC→FP beats AC alone for 4 of 4 settings." in texts(first)
    assert "FP→AC beats FP alone for 4 of 4 settings." in texts(first)
    flipped = combinations.section(context_of(combination_rows(ab=0.45, ba=0.3)))
    assert "AC→FP beats FP→AC for 0 of 4 settings." in texts(flipped)
    assert "AC→FP beats AC alone for 4 of 4 settings." in texts(flipped)
    assert "AC→FP beats FP alone for 0 of 4 settings." in texts(flipped)
    counts = tables(flipped)["combinations_1_counts"].data.set_index("comparison")
    assert counts.loc["FP→AC beats AC alone", "wins"] == 4 and counts.loc["FP→AC beats AC alone", "settings"] == 4


def test_combination_counts_per_setting_and_ties():
    rows = combination_rows(ab=0.2, ba=0.3)
    # In one setting FP→AC wins; in another the two orders tie.
    plant_setting(rows, FP_THEN_AC, "white_square", 2.0, asr_after=0.1)
    plant_setting(rows, FP_THEN_AC, "white_square", 6.0, asr_after=0.2)
    plant_setting(rows, AC_THEN_FP, "white_square", 6.0, asr_after=0.2)
    section = combinations.section(context_of(rows))
    assert "AC→FP beats FP→AC for 2 of 4 settings (1 tied)." in texts(section)


def plant_setting(rows, pipeline, trigger, poison_pct, **values):
    for row in rows:
        if row["pipeline"] == pipeline and row["trigger"] == trigger and row["poison_pct"] == poison_pct:
            row.update(values)


def test_combination_change_is_paired_against_the_better_single_defense():
    section = combinations.section(context_of(combination_rows(ab=0.2, ba=0.3)))
    data = tables(section)["combinations_1_asr_after_synthetic_signs_gtsrb_cnn"].data
    # FP alone (0.4) is the better single defense; the per-seed spread cancels in the pairing.
    assert np.allclose(data["ab_asr_change_mean"], 0.2 - 0.4)
    assert np.allclose(data["ba_asr_change_mean"], 0.3 - 0.4)
    assert np.allclose(data["ab_asr_change_hi"] - data["ab_asr_change_lo"], 0.0)
    assert (data["ab_asr_change_n"] == 3).all()
    assert np.allclose(data["a_asr_after_mean"], 0.5) and (data["a_asr_after_n"] == 3).all()


def test_combination_tables_hold_only_the_settings_each_dataset_ran():
    signs = combination_rows(ab=0.2, ba=0.3, seeds=[0])
    gtsrb = synthetic_rows(["big_yellow_square"], [4], [0], [AC, FP, AC_THEN_FP, FP_THEN_AC], dataset="gtsrb")
    found = tables(combinations.section(context_of(signs + gtsrb)))
    assert found["combinations_1_asr_after_gtsrb_gtsrb_cnn"].data[["trigger", "poison_pct"]].values.tolist() == [
        ["big_yellow_square", 4.0]]
    assert len(found["combinations_1_asr_after_synthetic_signs_gtsrb_cnn"].data) == 4
    assert found["combinations_1_counts"].data["settings"].tolist() == [5] * 5


def test_combinations_need_both_orders_and_both_singles():
    rows = combination_rows(ab=0.2, ba=0.3)
    assert combinations.section(context_of([r for r in rows if r["pipeline"] != FP_THEN_AC])) is None
    assert combinations.section(context_of([r for r in rows if r["pipeline"] != FP])) is None
    # A chain of other parameters than the singles is not their pair.
    other = synthetic_rows(["yellow_square"], [6], [0], [AC, FP, "ac(cluster_analysis=distance)>" + FP,
                                                         FP + ">ac(cluster_analysis=distance)"])
    assert combinations.section(context_of(other)) is None


# Controls ----------------------------------------------------------------------------------------

def control_rows() -> list[dict]:
    rows = synthetic_rows(["yellow_square"], [6], SEEDS, ["none", AC, RANDOM_AS_AC, "perfect_filter"])
    before = {0: 0.88, 1: 0.90, 2: 0.92}
    for row in rows:
        row["asr_before"] = before[row["seed"]]
    plant(rows, AC, asr_after=lambda row: {0: 0.05, 1: 0.1, 2: 0.15}[row["seed"]])
    plant(rows, RANDOM_AS_AC, asr_after=lambda row: {0: 0.4, 1: 0.5, 2: 0.6}[row["seed"]])
    plant(rows, "perfect_filter", asr_after=0.0)
    return rows


def test_control_ratio_is_computed_from_the_means_by_hand():
    section = controls.section(context_of(control_rows()))
    (table,) = [t for t in tables(section).values() if t.name.startswith("controls_1_asr")]
    # (0.90 - 0.50) / (0.90 - 0.10) = 0.5
    assert table.data["explained"].iloc[0] == pytest.approx(0.5)
    assert table.shown[("Removal alone explains", "")].iloc[0] == "50 % of the drop"
    assert table.data["perfect_asr_after_mean"].iloc[0] == 0.0
    assert table.data["random_asr_after_n"].iloc[0] == 3
    assert "median of 50 %" in texts(section)


def test_control_matches_same_as_written_with_retrain_none():
    rows = control_rows()
    # The search space stores same_as with every parameter and retrain none (only the count is used).
    (name, params), = json.loads(next(r["d1_same_as"] for r in rows if r["pipeline"] == RANDOM_AS_AC)).items()
    stored = json.dumps({name: {**params, "retrain": "none"}}, sort_keys=True)
    plant(rows, RANDOM_AS_AC, d1_same_as=stored)
    assert controls.section(context_of(rows)) is not None


def test_control_ratio_is_undefined_when_the_defense_did_not_lower_asr():
    rows = control_rows()
    plant(rows, AC, asr_after=0.95)
    table = next(t for t in tables(controls.section(context_of(rows))).values() if "_asr_" in t.name)
    assert np.isnan(table.data["explained"].iloc[0])
    assert table.shown[("Removal alone explains", "")].iloc[0].startswith("–")


def test_controls_show_only_settings_where_the_defense_ran():
    rows = control_rows()
    # On another dataset only the random control ran: no table for it.
    rows += synthetic_rows(["white_square"], [4], [0], [RANDOM_AS_AC, "perfect_filter"], dataset="gtsrb")
    names = set(tables(controls.section(context_of(rows))))
    assert names == {"controls_1_asr_synthetic_signs_gtsrb_cnn", "controls_1_clean_synthetic_signs_gtsrb_cnn"}


def test_controls_absent_without_a_matching_defense():
    rows = control_rows()
    assert controls.section(context_of([r for r in rows if r["pipeline"] != RANDOM_AS_AC])) is None
    # same_as names an SS configuration the sweep did not run alone
    ss_only = synthetic_rows(["yellow_square"], [6], [0], [
        AC, "random_filter(same_as={'ss': {'expected_pp_poison': 0.05, 'eps_multiplier': 1.5}})"])
    assert controls.section(context_of(ss_only)) is None
    # AC with other parameters than same_as names
    other = synthetic_rows(["yellow_square"], [6], [0], ["ac(cluster_analysis=distance)", RANDOM_AS_AC])
    assert controls.section(context_of(other)) is None


# Guidelines --------------------------------------------------------------------------------------

STRONG, MILD, CHEAP = "ac(cluster_analysis=smaller)", "ac(cluster_analysis=distance)", FP


def guideline_rows() -> list[dict]:
    """STRONG: ASR 5 %, drop 3 pp; MILD: ASR 10 %, drop 1.5 pp; CHEAP: ASR 20 %, drop 0.5 pp;
    perfect_filter: ASR 0 %, no drop (never a choice)."""
    rows = synthetic_rows(["yellow_square"], [6], SEEDS, ["none", STRONG, MILD, CHEAP, "perfect_filter"])
    for row in rows:
        row["clean_acc_before"] = 0.95
    for pipeline, asr, drop in ((STRONG, 0.05, 0.03), (MILD, 0.10, 0.015), (CHEAP, 0.20, 0.005),
                                ("perfect_filter", 0.0, 0.0)):
        plant(rows, pipeline, asr_after=asr, clean_acc_after=0.95 - drop,
              der=lambda row, asr=asr, drop=drop: (max(0, row["asr_before"] - asr) - drop + 1) / 2)
    return rows


def test_guidelines_choose_the_lowest_asr_within_each_budget():
    section = guidelines.section(context_of(guideline_rows()))
    chosen = {t.data["budget_pp"].iloc[0]: t.data["pipeline"].iloc[0] for t in tables(section).values()
              if "budget" in t.name}
    assert chosen == {1.0: CHEAP, 2.0: MILD, 5.0: STRONG}


def test_guidelines_say_when_nothing_fits_the_budget():
    context = context_of(guideline_rows())
    context = ReportContext(context.connection, context.facts, budgets=(0.1,))
    (table,) = [t for t in tables(guidelines.section(context)).values() if "budget" in t.name]
    assert table.shown["Configuration"].tolist() == ["none within budget"]
    assert table.data["asr_after_n"].tolist() == [0]


def test_guidelines_rank_by_mean_der_without_the_oracle():
    section = guidelines.section(context_of(guideline_rows()))
    ranking = next(t for t in tables(section).values() if t.name.startswith("guidelines_der"))
    # DER = (0.9 - asr - drop + 1) / 2 with the same ASR before: STRONG 0.92, MILD 0.8875, CHEAP 0.8475 (minus the
    # ASR before's seed spread, equal for all three)
    assert ranking.data["pipeline"].tolist() == [STRONG, MILD, CHEAP]
    assert ranking.shown["Rank"].tolist() == ["1", "2", "3"]
    assert (ranking.data["der_n"] == 3).all()
    assert ranking.shown["DER"].str.fullmatch(r"0\.\d{3} \[0\.\d{3}, [01]\.\d{3}\] n=3").all()
    assert DER_FORMULA in ranking.note and POOLED_INTERVAL in ranking.note


def test_guidelines_absent_without_a_defended_trial():
    rows = synthetic_rows(["yellow_square"], [6], [0], ["none", "perfect_filter"])
    assert guidelines.section(context_of(rows)) is None


# Parameters --------------------------------------------------------------------------------------

def grid_rows() -> list[dict]:
    pipelines = ([f"ss(expected_pp_poison={pp},eps_multiplier={eps},score=centered)"
                  for pp in (0.01, 0.05) for eps in (1.0, 3.0)]
                 + [f"fp(layer={layer},threshold={t})" for layer in ("last_conv", "second_to_last_conv")
                    for t in (0.02, 0.04)]
                 + [AC, "ac(cluster_analysis=distance,ex_re_threshold=1.0)", AC_THEN_FP])
    rows = synthetic_rows(["yellow_square", "white_square"], [6], [0, 1], pipelines)
    plant(rows, "ss(expected_pp_poison=0.05,eps_multiplier=3.0,score=centered)", asr_after=0.02)
    plant(rows, "ss(expected_pp_poison=0.01,eps_multiplier=1.0,score=centered)", asr_after=0.8)
    plant(rows, AC, asr_after=0.3)
    plant(rows, AC_THEN_FP, asr_after=0.99)  # a chain: must not move AC's cell
    return rows


@pytest.fixture(scope="module")
def planted_grids() -> tuple[list[dict], object]:
    rows = grid_rows()
    return rows, parameters.section(context_of(rows))


def test_parameter_grids_show_the_planted_cells(planted_grids):
    _, section = planted_grids
    found = tables(section)
    ss = found["parameters_ss_cells_synthetic_signs_gtsrb_cnn"].data.set_index(["expected_pp_poison", "eps_multiplier"])
    assert ss.loc[("0.05", "3.0"), "asr_after_mean"] == pytest.approx(0.02)
    assert ss.loc[("0.01", "1.0"), "asr_after_mean"] == pytest.approx(0.8)
    assert ss.loc[("0.05", "3.0"), "asr_after_n"] == 4  # two triggers × two seeds
    assert POOLED_INTERVAL in found["parameters_ss_cells_synthetic_signs_gtsrb_cnn"].note
    ac = found["parameters_ac_cells_synthetic_signs_gtsrb_cnn"].data
    smaller = ac[(ac["cluster_analysis"] == "smaller") & (ac["ex_re_threshold"] == "None")]
    assert smaller["asr_after_mean"].iloc[0] == pytest.approx(0.3)
    assert ((ac["cluster_analysis"] == "distance") & (ac["ex_re_threshold"] == "1.0")).sum() == 1
    best = found["parameters_ss_best_synthetic_signs_gtsrb_cnn"].data
    assert set(best["expected_pp_poison"] + "/" + best["eps_multiplier"]) == {"0.05/3.0"}


def test_parameter_rates_are_means_over_models_with_their_counts_pooled(planted_grids):
    rows, section = planted_grids
    ss = tables(section)["parameters_ss_cells_synthetic_signs_gtsrb_cnn"].data
    cell = ss[(ss["expected_pp_poison"] == "0.05") & (ss["eps_multiplier"] == "1.0")].iloc[0]
    runs = [r for r in rows if r["pipeline"] == "ss(expected_pp_poison=0.05,eps_multiplier=1.0,score=centered)"]
    removed, poisoned = (sum(r[f"d1_{count}"] for r in runs) for count in ("removed_poisoned", "n_poisoned"))
    per_model = [r["d1_removed_poisoned"] / r["d1_n_poisoned"] for r in runs]  # one run per model here
    assert cell["tpr"] == pytest.approx(np.mean(per_model)) and cell["tpr_n"] == len(runs)
    assert cell["tpr_pooled"] == pytest.approx(removed / poisoned)
    assert (cell["tp"], cell["tp"] + cell["fn"]) == (removed, poisoned)


def test_parameter_figures_are_svg_heatmaps_and_tuning_curves(planted_grids):
    _, section = planted_grids
    figures = {block.name: block for block in section.blocks if isinstance(block, Figure)}
    assert set(figures) == {"parameters_ss_synthetic_signs_gtsrb_cnn", "parameters_ac_synthetic_signs_gtsrb_cnn",
                            "parameters_fp_synthetic_signs_gtsrb_cnn", "parameters_fp_tuning_synthetic_signs_gtsrb_cnn"}
    for figure in figures.values():
        assert figure.svg.startswith("<svg") and figure.svg.endswith("</svg>") and figure.caption
    tuning = figures["parameters_fp_tuning_synthetic_signs_gtsrb_cnn"].svg
    assert "stop at threshold 2 %" in tuning and "stop at threshold 4 %" in tuning
    assert "last_conv" in tuning and "second_to_last_conv" in tuning


def test_parameters_absent_without_single_defense_runs():
    rows = synthetic_rows(["yellow_square"], [6], [0], ["none", AC_THEN_FP, "perfect_filter"])
    assert parameters.section(context_of(rows)) is None


# Beside the thesis -------------------------------------------------------------------------------

def test_thesis_row_for_a_setting_of_table_4_1():
    # GTSRB-yellowSquare-bigger: yellow square, 6 % poisoned, 99.26 % backdoor success, 95.76 % clean accuracy
    rows = synthetic_rows(["yellow_square"], [6, 3], SEEDS, ["none", AC], dataset="gtsrb")
    for row in rows:
        row["asr_before"] = {0: 0.98, 1: 0.99, 2: 1.0}[row["seed"]]
    section = thesis.section(context_of(rows))
    data = tables(section)["thesis_backdoored"].data
    asr = data[data["metric"].str.startswith("ASR")]
    assert asr["thesis_row"].tolist() == ["GTSRB-yellowSquare-bigger"]  # 3 % is in no thesis table
    row = asr.iloc[0]
    assert row["thesis"] == 99.26 and row["ours_mean"] == pytest.approx(99.0)
    assert row["difference_pp"] == pytest.approx(-0.26)
    assert bool(row["inside"]) and row["ours_n"] == 3
    assert not data["analogue"].any()


def test_thesis_clean_models_count_one_model_per_seed_whatever_trigger_the_rows_name():
    # Without poison the trigger changes no image: two triggers at 0 % are the same three models.
    rows = synthetic_rows(["yellow_square", "white_square"], [0], SEEDS, ["none", AC], dataset="gtsrb")
    data = tables(thesis.section(context_of(rows)))["thesis_clean"].data
    assert data["ours_n"].tolist() == [3]


def test_thesis_value_outside_a_narrow_interval():
    rows = synthetic_rows(["yellow_square"], [6], SEEDS, ["none"], dataset="gtsrb")
    for row in rows:
        row["asr_before"] = 0.9 + 0.001 * row["seed"]
    shown = tables(thesis.section(context_of(rows)))["thesis_backdoored"].shown
    assert shown.loc[shown["Metric"].str.startswith("ASR"), "Thesis inside our CI"].tolist() == ["no"]


def test_thesis_analogue_is_labelled():
    rows = synthetic_rows(["yellow_square"], [6], [0], ["none", FP], dataset="synthetic_signs")
    section = thesis.section(context_of(rows))
    found = tables(section)
    assert found["thesis_backdoored"].data["analogue"].all()
    assert all(text.startswith("ANALOGUE: synthetic_signs") for text in found["thesis_backdoored"].shown["Ours on"])
    fine_pruning = found["thesis_fine_pruning"].data
    assert set(fine_pruning["thesis_table"]) == {"Table 4.6"}  # last_conv at 4 %
    assert "ANALOGUE" in texts(section)


def test_thesis_defense_rows_match_parameters_and_convert_percentages():
    rows = synthetic_rows(["yellow_square"], [6], SEEDS, [AC, "fp(layer=last_conv,threshold=0.02)", AC_THEN_FP],
                          dataset="gtsrb")
    plant(rows, AC, asr_after=0.5)
    section = thesis.section(context_of(rows))
    found = tables(section)
    assert "thesis_fine_pruning" not in found  # the thesis pruned at 4 %, this sweep at 2 %
    ac = found["thesis_activation_clustering"].data
    asr = ac[ac["metric"] == "ASR after"].iloc[0]
    assert asr["thesis"] == 100.0 and asr["ours_mean"] == pytest.approx(50.0)
    assert asr["difference_pp"] == pytest.approx(-50.0)
    combination = found["thesis_combinations"].data
    assert set(combination["thesis_table"]) == {"Table 4.7"}


def test_thesis_combinations_retrain_activation_clustering_from_scratch():
    fine_tuned = "ac(cluster_analysis=smaller,retrain=finetune)"
    rows = synthetic_rows(["yellow_square"], [6], SEEDS, [fine_tuned, f"{fine_tuned}>{FP}", f"{FP}>{fine_tuned}"],
                          dataset="gtsrb")
    found = tables(thesis.section(context_of(rows)))
    assert "thesis_activation_clustering" not in found and "thesis_combinations" not in found


def test_thesis_absent_for_a_dataset_the_thesis_did_not_use():
    rows = synthetic_rows(["yellow_square"], [6], [0], ["none", AC], dataset="digits")
    assert thesis.section(context_of(rows)) is None


# Provenance --------------------------------------------------------------------------------------

def test_provenance_lists_versions_formulas_and_command():
    rows = synthetic_rows(["yellow_square"], [6], [0, 1], ["none", AC])
    rows[0]["tensorflow_version"] = "2.20.0"
    section = provenance.section(context_of(rows, command="bdsweep report demo --storage ./runs"))
    assert "tensorflow: 2.21.0 (3 trials), 2.20.0 (1 trial)" in texts(section)
    metrics = tables(section)["provenance_metrics"].data.set_index("metric")["definition"]
    assert DER_FORMULA in metrics["der"]
    assert "[max(0, asr_before − asr_after) − max(0, clean_acc_before − clean_acc_after) + 1] / 2" in DER_FORMULA
    assert {"clean_acc", "asr", "ra", "tpr", "fpr", "precision", "f1"} <= set(metrics.index)
    assert "Student-t" in texts(section) and "computed per backdoored model" in texts(section)
    (code,) = [block for block in section.blocks if isinstance(block, Code)]
    assert code.text == "bdsweep report demo --storage ./runs"


def test_provenance_absent_without_rows():
    rows = synthetic_rows(["yellow_square"], [6], [0], ["none"])
    context = context_of(rows)
    context.connection.execute("CREATE OR REPLACE VIEW results AS SELECT * FROM result_rows WHERE FALSE")
    assert provenance.section(context) is None


# Every number that aggregates seeds is an estimate with its n --------------------------------------

ESTIMATE = re.compile(r"-?\d+\.\d+ \[-?\d+\.\d+, -?\d+\.\d+\] n=\d+|-?\d+\.\d+ \(n = 1\)|–")


def test_every_estimate_cell_states_its_interval_and_n():
    rows = combination_rows(ab=0.2, ba=0.3) + control_rows()
    context = context_of(rows)
    checked = 0
    for function in (combinations.section, controls.section, guidelines.section):
        for table in tables(function(context)).values():
            for column in table.shown.columns:
                label = " ".join(column) if isinstance(column, tuple) else column
                if "(%)" in label or "(pp)" in label or label in ("DER",):
                    for cell in table.shown[column]:
                        assert ESTIMATE.fullmatch(cell), (table.name, label, cell)
                        checked += 1
    assert checked > 50


@pytest.mark.slow
def test_ten_thousand_rows_build_every_later_section():
    # How long this takes is measured by bench/bench_report.py, not asserted here.
    pipelines = (["none", "perfect_filter", RANDOM_AS_AC, AC, FP, AC_THEN_FP, FP_THEN_AC]
                 + [f"ss(expected_pp_poison={pp},eps_multiplier={eps},score={score})"
                    for pp in (0.001, 0.005, 0.01, 0.05, 0.1, 0.2, 0.5, 0.6, 0.9)
                    for eps in (0.1, 0.2, 0.5, 1, 3, 5, 7, 10, 12, 15, 20) for score in ("art", "centered")]
                 + [f"ac(cluster_analysis={c},reduce={r},ex_re_threshold={x})" for c in ("smaller", "distance")
                    for r in ("PCA", "FastICA") for x in (None, 1.0)]
                 + [f"fp(layer={layer},threshold={t})" for layer in ("last_conv", "second_to_last_conv")
                    for t in (0.02, 0.06)])
    rows = synthetic_rows(["yellow_square", "white_square", "big_yellow_square", "yellow_pattern", "white_pattern"],
                          [2, 4, 6, 27], [0, 1, 2], pipelines, dataset="gtsrb")
    assert len(rows) >= 10_000
    context = context_of(rows)
    built = [function(context) for function in (parameters.section, combinations.section, controls.section,
                                                guidelines.section, thesis.section, provenance.section)]
    assert all(section is not None for section in built)
