"""An input filter's rows in the report: its own detection table (clean against triggered inputs
rejected, intervals over models), found by the kind the rows record, whatever the filter's name."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from orchestrator.report.build import build_sections
from orchestrator.report.model import ReportContext, SweepFacts, Table
from orchestrator.report.sections import detection
from tests.report_rows import connect_rows, synthetic_rows

SEEDS = [0, 1, 2]
GATE = "entropy_gate(frr=0.05)"  # a made-up input filter: no registry knows it, its rows name its kind
# Per seed: (share of clean inputs rejected, share of triggered inputs rejected, clean acc served, asr served)
PLANTED = {0: (0.04, 0.90, 0.91, 0.05), 1: (0.06, 0.80, 0.90, 0.12), 2: (0.05, 0.70, 0.92, 0.20)}


def gated_rows(others: tuple[str, ...] = ("ac(cluster_analysis=smaller)",)) -> list[dict]:
    """Synthetic rows of ``none`` and ``others``, and the gate standing alone on each backdoored model."""
    rows = synthetic_rows(["yellow_square"], [4], SEEDS, ["none", *others])
    gated = []
    for row in rows:
        if row["pipeline"] != "none":
            continue
        clean, triggered, clean_acc, asr = PLANTED[row["seed"]]
        gated.append({**row, "trial_id": row["trial_id"][:12] + "gate", "pipeline": GATE, "n_defenses": 1,
                      "d1_name": "entropy_gate", "d1_kind": "input_filter", "d1_frr": 0.05,
                      "d1_input_frr": clean, "d1_input_tpr": triggered, "d1_input_auroc": float("nan"),
                      "served_clean_acc": clean_acc, "served_asr": asr, "der": 0.5})
    return rows + gated


def context_of(rows: list[dict]) -> ReportContext:
    return ReportContext(connect_rows(rows), SweepFacts("demo", "name: demo\n", {"done": len(rows)}))


def tables(section) -> dict[str, Table]:
    return {block.name: block for block in section.blocks if isinstance(block, Table)}


def interval(values) -> tuple[float, float]:
    return stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))


def test_an_input_filter_gets_its_own_table_with_t_intervals_over_models():
    found = tables(detection.section(context_of(gated_rows())))
    table = found["detection_input_filters"]
    row = table.data.set_index("pipeline").loc[GATE]
    for index, metric in enumerate(("input_frr", "input_tpr", "served_clean_acc", "served_asr")):
        values = [PLANTED[seed][index] for seed in SEEDS]
        assert row[f"{metric}_mean"] == pytest.approx(np.mean(values)) and row[f"{metric}_n"] == 3
        assert (row[f"{metric}_lo"], row[f"{metric}_hi"]) == pytest.approx(interval(values))
    shown = table.shown.set_index("Defense configuration").loc[GATE]
    low, high = interval([0.90, 0.80, 0.70])
    assert shown["Triggered rejected (%)"] == f"80.0 [{100 * low:.1f}, {min(100 * high, 100):.1f}] n=3"  # cut at 100
    assert shown["Step"] == "1:\u00a0entropy_gate" and shown["Models"] == "3"
    assert "ASR before any defense (%)" in table.shown.columns  # what the filter is set against
    # The training-set filter keeps its tables; the gate is not among their rows.
    assert set(found["detection_rates"].data["defense"]) == {"ac"}


def test_detection_shows_an_input_filter_alone_and_two_models_of_one_setting_are_two():
    section = detection.section(context_of(gated_rows(others=())))
    assert section is not None and set(tables(section)) == {"detection_input_filters"}
    # A model is an attack setting and a seed: the same gate on two seeds is n = 2.
    rows = [row for row in gated_rows(others=()) if row["seed"] in (0, 1)]
    data = tables(detection.section(context_of(rows)))["detection_input_filters"].data
    assert data["input_frr_n"].tolist() == [2]


def test_an_input_filter_stands_in_the_generic_sections_by_its_label():
    sections = {section.id: section for section in build_sections(context_of(gated_rows()))}
    for section_id in ("master", "tradeoff", "guidelines"):
        text = " ".join(str(table.shown.to_numpy().tolist()) + table.title
                        for table in tables(sections[section_id]).values())
        svgs = " ".join(getattr(block, "svg", "") for block in sections[section_id].blocks)
        # The trade-off's table lists its Pareto front only; its figure has a colour for every defense.
        assert GATE in text or "entropy_gate" in svgs, section_id


# A made-up model inspection (no registry knows it): per seed, (target flagged, target's rank,
# target's score, classes flagged).
CLEANSE = "mask_check"
INSPECTED = {0: (True, 1, 3.5, 1), 1: (False, 2, 1.5, 1), 2: (True, 1, 2.5, 2)}


def inspected_rows(poison_pct: float = 4) -> list[dict]:
    rows = synthetic_rows(["yellow_square"], [poison_pct], SEEDS, ["none"])
    inspected = []
    for row in rows:
        flagged, rank, score, n_flagged = INSPECTED[row["seed"]]
        inspected.append({**row, "trial_id": row["trial_id"][:12] + "mask", "pipeline": CLEANSE, "n_defenses": 1,
                          "d1_name": CLEANSE, "d1_kind": "model_inspection", "d1_target_flagged": flagged,
                          "d1_target_rank": rank, "d1_target_score": score, "d1_n_flagged_classes": n_flagged,
                          "d1_flagged_classes": "1", "d1_repaired": False, "der": 0.5})
    return rows + inspected


def test_a_model_inspection_gets_a_table_of_the_targets_flags_and_rank_over_models():
    table = tables(detection.section(context_of(inspected_rows())))["detection_inspections"]
    row = table.data.set_index("pipeline").loc[CLEANSE]
    for index, metric in enumerate(("target_flagged", "target_rank", "target_score", "n_flagged_classes")):
        values = [float(INSPECTED[seed][index]) for seed in SEEDS]
        assert row[f"{metric}_mean"] == pytest.approx(np.mean(values)) and row[f"{metric}_n"] == 3
        assert (row[f"{metric}_lo"], row[f"{metric}_hi"]) == pytest.approx(interval(values))
    shown = table.shown.set_index("Defense configuration").loc[CLEANSE]
    assert shown["Target flagged (%)"].startswith("66.7 [") and shown["Models"] == "3"
    low, high = interval([1.0, 2.0, 1.0])
    assert shown["Target's rank"] == f"1.3 [1.0, {high:.1f}] n=3"  # cut at rank 1
    # At 0 % there is no target to flag: the table leaves those models out.
    assert detection.section(context_of(inspected_rows(poison_pct=0))) is None


def test_the_benign_arm_shows_an_input_filters_clean_rejections_and_an_inspections_false_flags():
    from orchestrator.report.sections import benign

    rows = gated_rows(others=()) + inspected_rows()
    for row in rows:
        row["poison_pct"] = 0.0
    table = tables(benign.section(context_of(rows)))
    (found,) = table.values()
    shown = found.shown.set_index("Defense configuration")
    frr = [PLANTED[seed][0] for seed in SEEDS]
    low, high = interval(frr)
    assert shown.loc[GATE, "Other false alarms"] == (f"5.0 [{100 * max(low, 0):.1f}, {100 * high:.1f}] n=3 % of "
                                                     "clean inputs rejected")
    assert shown.loc[CLEANSE, "Other false alarms"].startswith("1.3 [") and "classes flagged" in shown.loc[CLEANSE, "Other false alarms"]
    served = found.data.set_index("pipeline").loc[GATE]
    # The gate's cost is the clean accuracy it serves: before minus served, per seed.
    before = [r["clean_acc_before"] for r in rows if r["pipeline"] == GATE]
    assert served["acc_cost_mean"] == pytest.approx(np.mean([b - PLANTED[s][2] for b, s in zip(before, SEEDS)]))
