"""Section "Answers": each claim's verdict follows planted rows (flip the data, the verdict flips), too
few pairs or a missing arm say so, the thesis's own numbers come from its tables, and the section
renders in the whole report right after the sweep."""

from __future__ import annotations

import hashlib
import html
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from orchestrator.report.build import build_sections, write_report
from orchestrator.report.model import ReportContext, SweepFacts, Table
from orchestrator.studies.thesis import answers
from orchestrator.studies.thesis.answers import (
    AGREES,
    CLAIMS,
    DISAGREES,
    INCONCLUSIVE,
    NOT_IN_SWEEP,
    VERDICT_RULE,
    ThesisRuns,
    after_holm,
    answers_frame,
    answers_table,
    decide,
    multiplicity_text,
)
from orchestrator.report.stats import mean_interval, welch_interval
from tests.orchestrator.report.test_render import built_once, generated_report_context
from tests.report_rows import connect_rows, parse_pipeline, synthetic_rows

SIGNS, FACES = ("synthetic_signs", "gtsrb_cnn"), ("synthetic_faces", "deepid")
POISON_PCTS = [4, 8]
SEEDS = [0, 1, 2]
# Added to the effect per seed: the differences spread (an interval has a width) and, with three
# seeds, average to exactly the effect, so an effect of 0 gives an interval around 0.
JITTER = {0: 0.05, 1: -0.05, 2: 0.0}
BASE_ASR = 0.5
IMPLANTED = 0.9  # ASR before defense of the models defense claims read
AC = "ac(cluster_analysis=smaller)"
FP = "fp(layer=last_conv,threshold=0.04)"

# Per claim, the arms a sweep must hold to test it: (dataset and model, trigger, pipeline, coefficient).
# An arm's ASR (before defense for `none`, else after) is BASE_ASR + coefficient · (effect + jitter), so
# that the claim's statistic is effect × 100 pp: positive is the thesis's side.
SCENARIOS = {
    "rq1_size": [(SIGNS, "big_yellow_square", "none", 1), (SIGNS, "yellow_square", "none", 0)],
    "rq1_colour_signs": [(SIGNS, "yellow_square", "none", 1), (SIGNS, "white_square", "none", 0),
                         (SIGNS, "yellow_pattern", "none", 1), (SIGNS, "white_pattern", "none", 0)],
    "rq1_colour_faces": [(FACES, "green_sunglasses", "none", 1), (FACES, "black_sunglasses", "none", 0)],
    # A lower ASR after on faces is a larger reduction there.
    "rq2_ac": [(FACES, "green_sunglasses", AC, -1), (SIGNS, "yellow_square", AC, 0)],
    "rq2_fp": [(FACES, "green_sunglasses", FP, -1), (SIGNS, "yellow_square", FP, 0)],
    "rq3_ac_metric": [(SIGNS, "yellow_square", "ac(cluster_analysis=distance)", 1), (SIGNS, "yellow_square", AC, 0)],
    "rq3_fp_layer_signs": [(SIGNS, "yellow_square", "fp(layer=second_to_last_conv,threshold=0.04)", 1),
                           (SIGNS, "yellow_square", FP, 0)],
    "rq3_fp_layer_faces": [(FACES, "green_sunglasses", FP, 1),
                           (FACES, "green_sunglasses", "fp(layer=second_to_last_conv,threshold=0.04)", 0)],
    "rq3_fp_threshold": [(SIGNS, "yellow_square", "fp(layer=last_conv,threshold=0.02)", 1),
                         (SIGNS, "yellow_square", "fp(layer=last_conv,threshold=0.06)", 0)],
    "rq4_order": [(SIGNS, "yellow_square", f"{FP}>{AC}", 1), (SIGNS, "yellow_square", f"{AC}>{FP}", 0)],
    "rq4_chain_vs_ac": [(SIGNS, "yellow_square", AC, 1), (SIGNS, "yellow_square", f"{AC}>{FP}", 0)],
}


def trial_row(dataset: str, model: str, trigger: str, poison_pct: float, seed: int, pipeline: str,
              asr_before: float, asr_after: float) -> dict:
    """One result row with the columns section Answers reads (``dN_name`` and ``dN_<param>`` per defense)."""
    steps = parse_pipeline(pipeline)
    row = {
        "trial_id": hashlib.sha256(json.dumps([dataset, trigger, poison_pct, seed, pipeline]).encode()).hexdigest()[:16],
        "dataset": dataset, "model": model, "trigger": trigger, "source": 8, "target": 14,
        "poison_pct": float(poison_pct), "seed": seed, "pipeline": pipeline, "n_defenses": len(steps),
        "clean_acc_before": 0.95, "asr_before": asr_before,
        "clean_acc_after": 0.94 if steps else 0.95, "asr_after": asr_after if steps else asr_before,
    }
    for position, (name, params) in enumerate(steps, start=1):
        row[f"d{position}_name"] = name
        row.update({f"d{position}_{key}": value for key, value in params.items()})
    return row


def planted_rows(claim_id: str, effect: float, poison_pcts=POISON_PCTS, seeds=SEEDS, arms=None,
                 asr_before: float = IMPLANTED) -> list[dict]:
    """Rows of the claim's arms (all of them unless ``arms`` picks some by index) at every poison % and seed."""
    rows = []
    for index, ((dataset, model), trigger, pipeline, coefficient) in enumerate(SCENARIOS[claim_id]):
        if arms is not None and index not in arms:
            continue
        for poison_pct in poison_pcts:
            for seed in seeds:
                planted = BASE_ASR + coefficient * (effect + JITTER[seed])
                if pipeline == "none":
                    rows.append(trial_row(dataset, model, trigger, poison_pct, seed, pipeline, planted, planted))
                else:
                    rows.append(trial_row(dataset, model, trigger, poison_pct, seed, pipeline, asr_before, planted))
    return rows


def judged(rows: list[dict]) -> pd.DataFrame:
    """The section's answers over ``rows``, indexed by claim."""
    context = ReportContext(connect_rows(rows), SweepFacts("planted", "", {"done": len(rows)}))
    return answers_frame(answers.SweepRuns(context), ThesisRuns()).set_index("claim_id")


@pytest.mark.parametrize("effect, verdict", [(0.3, AGREES), (-0.3, DISAGREES), (0.0, INCONCLUSIVE)],
                         ids=["thesis_side", "flipped", "no_effect"])
@pytest.mark.parametrize("claim_id", list(SCENARIOS))
def test_each_verdict_follows_the_planted_data(claim_id, effect, verdict):
    table = judged(planted_rows(claim_id, effect))
    row = table.loc[claim_id]
    assert row["verdict"] == verdict, row.to_dict()
    assert row["mean"] == pytest.approx(effect * 100, abs=1e-6)
    n_models = len(POISON_PCTS) * len(SEEDS)
    if row["comparison"] == "paired":
        assert row["n_first"] == n_models and pd.isna(row["n_second"])
    else:
        assert (row["n_first"], row["n_second"]) == (n_models, n_models)
    assert row["lower"] < row["mean"] < row["upper"]
    # The claims read only their own arms: every other claim lacks rows here.
    assert set(table.index[table["verdict"] != NOT_IN_SWEEP]) == {claim_id}


@pytest.mark.parametrize("claim_id", list(SCENARIOS))
def test_a_single_pair_is_inconclusive_and_says_why(claim_id):
    row = judged(planted_rows(claim_id, 0.3, poison_pcts=[8], seeds=[0])).loc[claim_id]
    assert row["verdict"] == INCONCLUSIVE
    expected = "fewer than 2 pairs" if row["comparison"] == "paired" else "fewer than 2 models in a group"
    assert row["reason"] == expected
    assert math.isnan(row["lower"]) and row["mean"] == pytest.approx(35.0)


@pytest.mark.parametrize("claim_id", list(SCENARIOS))
def test_a_sweep_without_one_arm_cannot_judge_the_claim(claim_id):
    table = judged(planted_rows(claim_id, 0.3, arms={0}))
    assert table.loc[claim_id, "verdict"] == NOT_IN_SWEEP
    assert table.loc[claim_id, "reason"] == "no pair in this sweep"


@pytest.mark.parametrize("claim_id", [c for c in SCENARIOS if not c.startswith("rq1")])
def test_defense_claims_leave_out_models_without_a_backdoor(claim_id):
    # ASR before 30 %: nothing for a defense to remove, whatever it does after.
    assert judged(planted_rows(claim_id, 0.3, asr_before=0.3)).loc[claim_id, "verdict"] == NOT_IN_SWEEP


def test_a_parameter_contrast_pairs_only_runs_alike_in_every_other_parameter():
    rows = planted_rows("rq3_fp_layer_signs", 0.3)
    # The last-conv arm at another threshold: no run matches the second-to-last arm's 4 %.
    for row in rows:
        if row["d1_layer"] == "last_conv":
            row["d1_threshold"] = 0.06
    assert judged(rows).loc["rq3_fp_layer_signs", "verdict"] == NOT_IN_SWEEP


def test_the_thesis_side_of_each_claim_is_the_same_statistic_on_its_tables():
    thesis = answers_frame(ThesisRuns(), ThesisRuns()).set_index("claim_id")
    # Table 4.1 with A.2 at 2, 4, 6 %: big yellow square minus yellow square = 28.15, 17.04, 0.74 pp.
    assert thesis.loc["rq1_size", "thesis_value"] == pytest.approx((28.15 + 17.04 + 0.74) / 3)
    assert thesis.loc["rq1_size", "thesis_n_first"] == 3
    # Tables 4.1 and 4.3: AC's mean ASR reduction on 4 face models 27.5 pp, on 6 GTSRB models -1.79 pp.
    assert thesis.loc["rq2_ac", "thesis_value"] == pytest.approx(27.5 - (-0.74 - 8.52 + 0.74 + 1.49 - 1.11 - 2.59) / 6)
    assert (thesis.loc["rq2_ac", "thesis_n_first"], thesis.loc["rq2_ac", "thesis_n_second"]) == (4, 6)
    # Tables 4.7 and 4.9, FP→AC minus AC→FP over 10 models.
    assert thesis.loc["rq4_order", "thesis_value"] == pytest.approx(6.562)
    # The thesis's tables lie on its own side of every claim they can compute; the text-only ones have none.
    with_tables = thesis["thesis_value"].dropna()
    assert (with_tables > 0).all() and len(with_tables) == len(CLAIMS) - 2
    assert thesis.loc[["rq3_ac_metric", "rq3_fp_threshold"], "thesis_value"].isna().all()


@pytest.mark.parametrize("lower, upper, count, enough, verdict", [
    (0.1, 5.0, 3, True, AGREES), (-5.0, -0.1, 3, True, DISAGREES), (0.0, 5.0, 3, True, INCONCLUSIVE),
    (-5.0, 0.0, 3, True, INCONCLUSIVE), (-1.0, 1.0, 3, True, INCONCLUSIVE),
    (math.nan, math.nan, 1, False, INCONCLUSIVE), (math.nan, math.nan, 0, False, NOT_IN_SWEEP)])
def test_the_verdict_rule(lower, upper, count, enough, verdict):
    assert decide(lower, upper, count, enough, "fewer than 2 pairs")[0] == verdict


def test_intervals_are_scipys_student_t_and_welch():
    rng = np.random.default_rng(3)
    first, second = rng.normal(1.0, 2.0, 7), rng.normal(0.0, 0.5, 4)
    mean, lower, upper, n = mean_interval(np.append(first, np.nan))
    expected = stats.ttest_1samp(first, 0.0).confidence_interval()
    assert (mean, lower, upper, n) == pytest.approx((first.mean(), expected.low, expected.high, 7))
    welch = stats.ttest_ind(first, second, equal_var=False)
    difference, lower, upper, df = welch_interval(first, second)
    interval = welch.confidence_interval()
    assert (difference, lower, upper, df) == pytest.approx((first.mean() - second.mean(), interval.low,
                                                            interval.high, welch.df))
    assert math.isnan(mean_interval([2.0])[1]) and mean_interval([])[3] == 0
    assert math.isnan(welch_interval([1.0], [1.0, 2.0])[1])
    assert welch_interval([1.0, 1.0], [0.0, 0.0])[:3] == (1.0, 1.0, 1.0)


def test_the_whole_report_holds_the_answers_right_after_the_sweep(tmp_path):
    out = tmp_path / "report"
    context = generated_report_context(tmp_path / "runs")
    sections = build_sections(context)
    files = write_report(context, out, sections=built_once(sections))
    assert files.sections[:2] == ["sweep", "answers"]
    section = next(s for s in sections if s.id == "answers")
    table = next(b for b in section.blocks if isinstance(b, Table) and b.name == "answers")
    assert len(table.shown) == len(CLAIMS)
    verdicts = set(table.data["verdict"])
    assert verdicts <= {AGREES, DISAGREES, INCONCLUSIVE, NOT_IN_SWEEP} and len(verdicts - {NOT_IN_SWEEP}) >= 1

    page, markdown = html.unescape(files.html.read_text()), files.markdown.read_text()
    assert 'id="table-answers"' in page and "#table-answers td:nth-last-child(-n+2)" in page
    assert VERDICT_RULE in page and VERDICT_RULE in markdown
    assert multiplicity_text(table.data) in page and "Holm 1979" in markdown
    for cell in [*table.shown["Verdict (95 % each)"], *table.shown.iloc[:, -1]]:
        assert cell in page and cell in markdown
    summary = pd.read_parquet(out / "summary" / "answers.parquet")
    assert summary["verdict"].tolist() == table.data["verdict"].tolist()
    assert summary["holm_verdict"].tolist() == table.data["holm_verdict"].tolist()
    assert summary["claim_id"].tolist() == [claim.id for claim in CLAIMS]


# Multiplicity ------------------------------------------------------------------------------------

# Three claims judged together, each read from its own models: a strong effect (30 pp on 6 pairs,
# p ≈ 0.00002), a weak one (5 pp, p ≈ 0.041: its interval [0.3, 9.7] lies above 0) and none (p = 1).
FAMILY = {"rq1_size": 0.3, "rq1_colour_faces": 0.05, "rq4_order": 0.0}


def family_rows() -> list[dict]:
    return [row for claim_id, effect in FAMILY.items() for row in planted_rows(claim_id, effect)]


def planted_differences(effect: float) -> np.ndarray:
    """The claim's paired differences in pp as :func:`planted_rows` plants them: one per model."""
    return 100 * np.array([effect + JITTER[seed] for _ in POISON_PCTS for seed in SEEDS])


@pytest.mark.filterwarnings("ignore:Precision loss")  # the sign group of rq2_ac is constant
def test_p_values_come_from_the_same_t_statistics_as_the_intervals():
    table = judged(family_rows())
    for claim_id, effect in FAMILY.items():
        expected = stats.ttest_1samp(planted_differences(effect), 0.0)
        assert table.loc[claim_id, "p_value"] == pytest.approx(expected.pvalue, abs=1e-9)
        interval = expected.confidence_interval()
        assert (table.loc[claim_id, "lower"], table.loc[claim_id, "upper"]) == pytest.approx((interval.low, interval.high))
    # A two-group claim: Welch's test, as its interval.
    rq2 = judged(planted_rows("rq2_ac", 0.05)).loc["rq2_ac"]
    faces = 100 * (IMPLANTED - (BASE_ASR - np.array([0.05 + JITTER[seed] for _ in POISON_PCTS for seed in SEEDS])))
    signs = np.full(len(faces), 100 * (IMPLANTED - BASE_ASR))
    assert rq2["p_value"] == pytest.approx(stats.ttest_ind(faces, signs, equal_var=False).pvalue)


def test_holm_turns_a_claim_significant_alone_inconclusive_in_the_family():
    table = judged(family_rows())
    # Alone, the weak claim's interval lies above 0: AGREES at 95 %.
    assert table.loc["rq1_colour_faces", "verdict"] == AGREES
    assert table.loc["rq1_colour_faces", "p_value"] < 0.05
    # In the family of 3: p(1) ≈ 0.00002 ≤ 0.05 / 3 is kept; p(2) ≈ 0.041 > 0.05 / 2 is not, nor anything after.
    assert table.loc["rq1_colour_faces", "holm_verdict"] == INCONCLUSIVE
    assert table.loc["rq1_colour_faces", "holm_p"] == pytest.approx(2 * table.loc["rq1_colour_faces", "p_value"])
    assert table.loc["rq1_size", ["verdict", "holm_verdict"]].tolist() == [AGREES, AGREES]
    assert table.loc["rq1_size", "holm_p"] == pytest.approx(3 * table.loc["rq1_size", "p_value"])
    assert table.loc["rq4_order", ["verdict", "holm_verdict"]].tolist() == [INCONCLUSIVE, INCONCLUSIVE]
    # Judged on its own (a family of one), the weak claim keeps its verdict.
    alone = judged(planted_rows("rq1_colour_faces", 0.05)).loc["rq1_colour_faces"]
    assert (alone["verdict"], alone["holm_verdict"]) == (AGREES, AGREES)


def test_the_section_states_the_multiplicity_and_what_holm_changed():
    table = judged(family_rows()).reset_index()
    text = multiplicity_text(table)
    assert "3 of 11 claims have rows here and 3 of them have a test" in text
    assert "at 95 % on its own" in text and "family-wise 5 %" in text and "Holm 1979" in text
    assert "colour on faces (RQ1) from AGREES to INCONCLUSIVE (p 0.041, adjusted 0.082 > 0.05)" in text
    shown = answers_table(table).shown.set_index("Claim (the thesis's answer)")
    assert list(shown.columns[-3:]) == ["p (Holm-adjusted)", "Verdict (95 % each)",
                                        "After Holm (family-wise 5 %, m = 3)"]
    weak = shown.iloc[table.index[table["claim_id"] == "rq1_colour_faces"][0]]
    assert (weak["p (Holm-adjusted)"], weak["Verdict (95 % each)"], weak.iloc[-1]) == (
        "0.041 (0.082)", "AGREES", "INCONCLUSIVE")
    assert shown.iloc[table.index[table["claim_id"] == "rq2_ac"][0]]["p (Holm-adjusted)"] == "–"


def test_a_claim_without_a_test_stays_out_of_the_family():
    # One pair: no interval, no p-value; the other two claims form a family of 2.
    rows = planted_rows("rq1_size", 0.3) + planted_rows("rq1_colour_faces", 0.05) + planted_rows(
        "rq4_order", 0.3, poison_pcts=[8], seeds=[0])
    table = judged(rows)
    assert math.isnan(table.loc["rq4_order", "p_value"]) and math.isnan(table.loc["rq4_order", "holm_p"])
    assert table.loc["rq4_order", "holm_verdict"] == INCONCLUSIVE
    # With m = 2 the weak claim's p(2) ≈ 0.041 ≤ 0.05 / 1: Holm keeps it.
    assert table.loc["rq1_colour_faces", "holm_verdict"] == AGREES
    text = multiplicity_text(table.reset_index())
    assert "3 of 11 claims have rows here and 2 of them have a test" in text and "changes no verdict" in text
    assert answers_table(table.reset_index()).shown.loc[table.index.get_loc("rq4_order"), "p (Holm-adjusted)"] == (
        "– (no test)")


@pytest.mark.parametrize("verdict, rejected, after", [
    (AGREES, True, AGREES), (AGREES, False, INCONCLUSIVE), (DISAGREES, True, DISAGREES),
    (DISAGREES, False, INCONCLUSIVE), (INCONCLUSIVE, True, INCONCLUSIVE), (NOT_IN_SWEEP, False, NOT_IN_SWEEP)])
def test_holm_only_withdraws_verdicts(verdict, rejected, after):
    assert after_holm(verdict, rejected) == after


def test_a_sweep_without_the_theses_arms_has_no_answers_section():
    # One trigger, no defense the claims read: no claim has a pair here, so the study stays out.
    rows = synthetic_rows(["yellow_square"], [4], [0, 1], ["none", "perfect_filter"])
    context = ReportContext(connect_rows(rows), SweepFacts("demo", "name: demo\n", {"done": len(rows)}))
    assert answers.section(context) is None
