"""The leaderboard study's four claims on planted all-to-one rows: each verdict follows the planted
direction and flips when the data are flipped; models without a backdoor are left out."""

from __future__ import annotations

import pandas as pd
import pytest

from orchestrator.report.model import ReportContext, SweepFacts
from orchestrator.studies.claims import AGREES, DISAGREES, NOT_IN_SWEEP
from orchestrator.studies.leaderboard import answers
from tests.report_rows import connect_rows, synthetic_rows

SEEDS = [0, 1, 2]


def base_row() -> dict:
    row = next(r for r in synthetic_rows(["yellow_square"], [10], [0], ["none", "ac(cluster_analysis=smaller)"])
               if r["pipeline"] != "none")
    return {**row, "poison_base": "all", "n_defenses": 1, "asr_before": 0.95, "d1_input_tpr": None}


def trial(trigger: str, seed: int, defense: str, der: float, **extra) -> dict:
    return {**base_row(), "trigger": trigger, "seed": seed, "pipeline": defense, "d1_name": defense, "der": der,
            "trial_id": f"{trigger}-{seed}-{defense}", **extra}


def planted(flip: bool = False) -> list[dict]:
    """Q1: latent defenses DER ~0.9 on blend and white_pattern models, ~0.55 on adaptive_blend ones;
    Q2: i_bau and neural_cleanse above ac and ss; Q3: fine_tune above fp; Q4: STRIP's TPR higher on
    white_pattern than on blend. ``flip`` swaps every planted direction."""
    high, low = (0.55, 0.9) if flip else (0.9, 0.55)
    sign = -1 if flip else 1
    rows = []
    for seed in SEEDS:
        jitter = 0.01 * seed
        for trigger in ("blend", "white_pattern"):
            rows += [trial(trigger, seed, d, high + jitter) for d in ("ac", "ss", "spectre")]
            rows += [trial(trigger, seed, d, high + sign * 0.1 + jitter) for d in ("i_bau", "neural_cleanse")]
            rows += [trial(trigger, seed, "fp", 0.6 + jitter), trial(trigger, seed, "fine_tune", 0.6 + sign * 0.2 + jitter)]
        rows += [trial("adaptive_blend", seed, d, low + jitter) for d in ("ac", "ss", "spectre")]
        tpr_patch, tpr_blend = (0.3, 0.9) if flip else (0.9, 0.3)
        rows += [trial("white_pattern", seed, "strip", 0.8, d1_input_tpr=tpr_patch + jitter),
                 trial("blend", seed, "strip", 0.6, d1_input_tpr=tpr_blend + jitter)]
        # Not implanted: left out of every claim whatever its numbers.
        rows += [trial("wanet", seed, "strip", 0.5, d1_input_tpr=0.0, asr_before=0.1)]
    return rows


def verdicts(rows: list[dict]) -> dict[str, str]:
    context = ReportContext(connect_rows(rows), SweepFacts("demo", "name: demo\n", {"done": len(rows)}))
    table = answers.answers_frame(answers.trials(context))
    return dict(zip(table["question"], table["verdict"]))


def test_each_claim_agrees_with_the_planted_direction_and_disagrees_when_it_is_flipped():
    assert verdicts(planted()) == {"Q1": AGREES, "Q2": AGREES, "Q3": AGREES, "Q4": AGREES}
    assert verdicts(planted(flip=True)) == {"Q1": DISAGREES, "Q2": DISAGREES, "Q3": DISAGREES, "Q4": DISAGREES}


def test_the_statistics_are_the_planted_differences_and_unimplanted_models_are_left_out():
    context = ReportContext(connect_rows(planted()), SweepFacts("demo", "name: demo\n", {"done": 1}))
    table = answers.answers_frame(answers.trials(context)).set_index("question")
    assert table.loc["Q1", "mean"] == pytest.approx(0.9 - 0.55) and table.loc["Q1", "n_first"] == 6
    assert table.loc["Q1", "n_second"] == 3
    assert table.loc["Q4", "mean"] == pytest.approx(100 * (0.9 - 0.3)) and table.loc["Q4", "n_second"] == 3  # no wanet
    assert table.loc["Q3", "n_first"] == 6 and pd.isna(table.loc["Q3", "n_second"])  # paired: one count


def test_a_sweep_without_the_claims_defenses_has_no_answers():
    rows = [trial("blend", seed, "perfect_filter", 0.9) for seed in SEEDS]
    context = ReportContext(connect_rows(rows), SweepFacts("demo", "name: demo\n", {"done": 3}))
    assert answers.section(context) is None
    assert set(answers.answers_frame(answers.trials(context))["verdict"]) == {NOT_IN_SWEEP}
