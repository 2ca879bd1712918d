"""Sections "Benign arm" and "Why the thesis's SS and DP failed" on planted rows.

Rows come from :func:`tests.report_rows.synthetic_rows` (the full schema); the values a test is
about are then overwritten with planted ones, so every number the section shows can be computed
by hand here.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from orchestrator.report.build import write_report
from orchestrator.report.model import Figure, Paragraph, ReportContext, SweepFacts, Table
from orchestrator.report.sections import benign
from orchestrator.studies.thesis import failures
from orchestrator.results import connect
from tests.report_rows import PIPELINES, connect_rows, synthetic_rows, write_rows

SEEDS = [0, 1, 2]
AC = "ac(cluster_analysis=smaller)"
FP = "fp(layer=last_conv,threshold=0.04)"
SS_ART = "ss(expected_pp_poison=0.05,eps_multiplier=1.5,score=art)"
SS_ART_WIDER = "ss(expected_pp_poison=0.05,eps_multiplier=3,score=art)"
SS_CENTRED = "ss(expected_pp_poison=0.05,eps_multiplier=1.5,score=centered)"
DP_LOW, DP_HIGH = "dp(mode=trusted,eps=0.01)", "dp(mode=trusted,eps=0.05)"


def context_of(rows: list[dict]) -> ReportContext:
    return ReportContext(connect_rows(rows), SweepFacts("demo", "name: demo\n", {"done": len(rows)}))


def plant(rows: list[dict], pipeline: str, where=lambda row: True, **values) -> None:
    """Set columns of every row of ``pipeline`` that ``where`` accepts; a callable value gets the row."""
    for row in rows:
        if row["pipeline"] == pipeline and where(row):
            row.update({key: value(row) if callable(value) else value for key, value in values.items()})


def tables(section) -> dict[str, Table]:
    return {block.name: block for block in section.blocks if isinstance(block, Table)}


def texts(section) -> str:
    return " ".join(block.text for block in section.blocks if isinstance(block, Paragraph))


def row_of(table: Table, pipeline: str) -> pd.Series:
    shown = table.shown[table.shown["Defense configuration"] == pipeline]
    assert len(shown) == 1, (pipeline, table.shown)
    return shown.iloc[0]


# Benign arm --------------------------------------------------------------------------------------

def benign_rows(triggers=("yellow_square",)) -> list[dict]:
    """AC, FP and AC→FP at 0 % and 4 % poison; at 0 % AC removes 100, 110, 120 of 1,000 clean samples
    (seeds 0, 1, 2) and FP costs 0, 1, 2 pp of clean accuracy. The 4 % rows are left as made: any
    of them counted would change the numbers."""
    rows = synthetic_rows(list(triggers), [0, 4], SEEDS, ["none", AC, FP, f"{AC}>{FP}"])
    clean = lambda row: row["poison_pct"] == 0  # noqa: E731
    plant(rows, AC, clean, d1_n_seen=1000, d1_n_poisoned=0, d1_removed_poisoned=0,
          d1_removed_clean=lambda row: 100 + 10 * row["seed"])
    plant(rows, FP, clean, clean_acc_before=0.95, clean_acc_after=lambda row: 0.95 - 0.01 * row["seed"])
    return rows


def test_benign_fpr_is_a_mean_over_models_with_a_t_interval_and_its_counts_pooled():
    section = benign.section(context_of(benign_rows()))
    table, = tables(section).values()
    ac = row_of(table, AC)
    # AC removed 100, 110, 120 of 1,000 clean samples on the three models (seeds): 11.0 % each way, but
    # the interval is over the three models' rates, not over 3,000 samples.
    low, high = stats.t.interval(0.95, 2, loc=0.11, scale=stats.sem([0.10, 0.11, 0.12]))
    assert ac["FPR (%)"] == f"11.0 [{100 * low:.1f}, {100 * high:.1f}] n=3"
    assert ac["Clean removed, pooled"] == "330 of 3,000"
    assert ac["Filtering step"] == "1:\u00a0ac"
    data = table.data[table.data["pipeline"] == AC].iloc[0]
    assert (data["fp"], data["tn"], data["seeds"], data["fpr_n"]) == (330, 2670, 3, 3)
    assert data["fpr"] == pytest.approx(0.11)
    # the chain's AC step is reported as its own row, position 1
    assert row_of(table, f"{AC}>{FP}")["Filtering step"] == "1:\u00a0ac"


def test_benign_cost_is_a_mean_over_seeds_with_a_t_interval_and_fine_pruning_has_no_rate():
    section = benign.section(context_of(benign_rows()))
    table, = tables(section).values()
    fp = row_of(table, FP)
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)  # costs 0, 1, 2 pp: mean 1, sd 1
    assert fp["Clean-acc. cost (pp)"] == f"1.0 [{1 - half:.1f}, {1 + half:.1f}] n=3"
    assert fp["FPR (%)"] == "–" and fp["Filtering step"] == "– (removes no samples)" and fp["Clean removed, pooled"] == "–"
    assert "none" not in set(table.shown["Defense configuration"])
    assert any(isinstance(block, Figure) for block in section.blocks)


def test_benign_triggers_at_zero_percent_count_once_per_seed():
    rows = benign_rows(triggers=("yellow_square", "white_square"))
    # the second trigger's AC removes 200 more per seed: averaged per seed, 250 + 10·seed
    plant(rows, AC, lambda row: row["poison_pct"] == 0 and row["trigger"] == "white_square",
          d1_removed_clean=lambda row: 300 + 10 * row["seed"])
    table, = tables(benign.section(context_of(rows))).values()
    data = table.data.set_index("pipeline")
    assert data.loc[AC, "fp"] == 630 and data.loc[AC, "seeds"] == 3
    assert data.loc[FP, "acc_cost_n"] == 3
    assert row_of(table, FP)["Clean-acc. cost (pp)"].endswith("n=3")


def test_benign_draws_no_figure_it_could_not_label_and_says_so():
    many = [f"ss(expected_pp_poison=0.05,eps_multiplier={eps},score=centered)" for eps in range(1, benign.MAX_FIGURE_ROWS + 2)]
    section = benign.section(context_of(synthetic_rows(["yellow_square"], [0], [0], many)))
    table, = tables(section).values()
    assert len(table.shown) == benign.MAX_FIGURE_ROWS + 1
    assert not any(isinstance(block, Figure) for block in section.blocks)
    assert f"its {benign.MAX_FIGURE_ROWS + 1} rows are more than one figure can label" in texts(section)


def test_benign_absent_without_defended_trials_at_zero_percent():
    assert benign.section(context_of(synthetic_rows(["yellow_square"], [4], SEEDS, ["none", AC, FP]))) is None
    undefended = synthetic_rows(["yellow_square"], [0], SEEDS, ["none"]) + synthetic_rows(["yellow_square"], [4], SEEDS, [AC])
    assert benign.section(context_of(undefended)) is None


# Spectral Signatures: ART's score against the centred one ----------------------------------------

def ss_rows(art_of_seed_1: float) -> list[dict]:
    """Two ART configurations and a centred one on 4 % poison; ART's AUROC is 0.9 except on seed 1."""
    rows = synthetic_rows(["yellow_square"], [4], SEEDS, ["none", SS_ART, SS_ART_WIDER, SS_CENTRED, DP_LOW])
    for pipeline in (SS_ART, SS_ART_WIDER):
        plant(rows, pipeline, d1_auroc=lambda row: art_of_seed_1 if row["seed"] == 1 else 0.9)
    plant(rows, SS_CENTRED, d1_auroc=0.97)
    return rows


def test_a_seed_whose_art_auroc_is_below_one_half_is_counted_as_the_wrong_tail():
    section = failures.section(context_of(ss_rows(art_of_seed_1=0.2)))
    found = tables(section)
    seeds = found["failures_ss_seeds_synthetic_signs_gtsrb_cnn"].shown.set_index("Seed")
    assert seeds.loc["1", "AUROC, ART score (un-centred)"] == "0.20"
    assert seeds.loc["1", "AUROC, centred score (Tran et al.)"] == "0.97"
    assert seeds.loc["1", "ART flags the wrong tail"] == "yes (AUROC < 0.5)"
    assert seeds.loc["0", "ART flags the wrong tail"] == "no"
    setting = found["failures_ss_settings"]
    # two ART configurations share one ROC per model: three models, not six
    assert setting.shown["ART flags the wrong tail"].tolist() == ["1 of 3 seeds (seed 1)"]
    assert setting.shown["Centred flags the wrong tail"].tolist() == ["0 of 3 seeds"]
    mean = (0.9 + 0.2 + 0.9) / 3
    assert setting.data["auroc_art_mean"].iloc[0] == pytest.approx(mean)
    assert setting.shown["AUROC, ART score (un-centred)"].iloc[0].startswith(f"{mean:.2f} [")
    assert "ART's score flagged the wrong tail (AUROC < 0.5) on 1 and the centred score on 0" in texts(section)
    assert "#1188" in texts(section) and "un-centred" in texts(section)


def test_a_seed_whose_art_auroc_is_above_one_half_is_not():
    section = failures.section(context_of(ss_rows(art_of_seed_1=0.8)))
    assert tables(section)["failures_ss_settings"].shown["ART flags the wrong tail"].tolist() == ["0 of 3 seeds"]
    assert "flagged the wrong tail (AUROC < 0.5) on 0 and" in texts(section)


def test_ss_part_says_so_when_no_model_has_both_scores():
    rows = synthetic_rows(["yellow_square"], [4], SEEDS, ["none", SS_ART, DP_LOW])
    section = failures.section(context_of(rows))
    assert "with both scores (art and centered) on no backdoored model" in texts(section)
    assert not any(name.startswith("failures_ss") for name in tables(section))
    assert "failures_dp_eps" in tables(section)


# Data Provenance: segment gains against eps -------------------------------------------------------

def dp_rows() -> list[dict]:
    """Trusted DP at eps 0.01 and 0.05 on 4 % poison: the attacker's camera gains 2.5, 3.0, 3.5 pp
    (seeds 0, 1, 2), clean cameras lose 0.2 pp, except camera 1 of seed 2, which gains 2 pp.
    ``removed_cameras`` says what a segment's gain above eps condemns."""
    rows = synthetic_rows(["yellow_square"], [4], SEEDS, ["none", SS_CENTRED, DP_LOW, DP_HIGH])
    for pipeline, eps in ((DP_LOW, 0.01), (DP_HIGH, 0.05)):
        plant(rows, pipeline, d1_gain_camera_0=-0.002, d1_gain_camera_2=-0.002,
              d1_gain_camera_1=lambda row: 0.02 if row["seed"] == 2 else -0.002,
              d1_gain_camera_3=lambda row: 0.03 + 0.005 * (row["seed"] - 1))
        plant(rows, pipeline, d1_removed_cameras=lambda row, eps=eps: ",".join(
            str(c) for c in range(4) if row[f"d1_gain_camera_{c}"] > eps))
    return rows


def test_the_eps_at_which_the_attackers_segment_is_condemned_is_shown():
    section = failures.section(context_of(dp_rows()))
    eps = tables(section)["failures_dp_eps"].shown.set_index("eps")
    assert eps.loc["0.01", "Attacker's segment condemned"] == "3 of 3 poisoned models"
    assert eps.loc["0.05", "Attacker's segment condemned"] == "0 of 3 poisoned models"
    assert eps.loc["0.01", "A clean segment condemned"] == "1 of 3 models"
    assert eps.loc["0.05", "A clean segment condemned"] == "0 of 3 models"
    assert ("trusted mode: the attacker's segment was condemned in every poisoned model at eps = 0.01, in none at "
            "eps = 0.05; a clean segment was condemned in some model at eps = 0.01.") in texts(section)
    gains = tables(section)["failures_dp_gains_synthetic_signs_gtsrb_cnn"].shown.iloc[0]
    half = stats.t.ppf(0.975, 2) * 0.5 / math.sqrt(3)  # gains 2.5, 3.0, 3.5 pp: sd 0.5 pp
    assert gains[("Gain from leaving the segment out (pp)", "camera 3 (attacker)")] == \
        f"3.00 [{3 - half:.2f}, {3 + half:.2f}] n=3"
    assert gains[("Condemned at eps = 0.01", "attacker")] == "3 of 3"
    assert gains[("Condemned at eps = 0.05", "attacker")] == "0 of 3"
    assert gains[("Condemned at eps = 0.01", "clean")] == "1 of 3"
    assert any(isinstance(block, Figure) and block.name == "failures_dp_gains" for block in section.blocks)


def test_condemnation_read_from_the_gains_when_rows_lack_removed_cameras():
    rows = dp_rows()
    for row in rows:
        row.pop("d1_removed_cameras", None)
    eps = tables(failures.section(context_of(rows)))["failures_dp_eps"].shown.set_index("eps")
    assert eps["Attacker's segment condemned"].tolist() == ["3 of 3 poisoned models", "0 of 3 poisoned models"]
    assert eps["A clean segment condemned"].tolist() == ["1 of 3 models", "0 of 3 models"]


def test_dp_part_says_so_without_data_provenance_rows():
    section = failures.section(context_of(synthetic_rows(["yellow_square"], [4], SEEDS, [SS_ART, SS_CENTRED])))
    assert "ran no Data Provenance step on a backdoored model" in texts(section)
    assert "failures_ss_settings" in tables(section)


def test_failures_absent_without_either_part():
    assert failures.section(context_of(synthetic_rows(["yellow_square"], [4], SEEDS, ["none", AC, SS_ART]))) is None


# The whole report ---------------------------------------------------------------------------------

def test_the_whole_report_builds_with_both_sections_from_row_files(tmp_path):
    rows = synthetic_rows(["yellow_square", "big_yellow_square"], [0, 4], SEEDS, PIPELINES)
    write_rows(tmp_path / "runs", "demo", rows)
    context = ReportContext(connect(tmp_path / "runs", "demo"), SweepFacts("demo", "name: demo\n", {"done": len(rows)}))
    files = write_report(context, tmp_path / "report")
    assert {"benign", "failures"} <= set(files.sections)
    assert files.sections.index("failures") == files.sections.index("detection") + 1
    names = {path.stem for path in files.summaries}
    assert {"benign_synthetic_signs_gtsrb_cnn", "failures_ss_settings", "failures_dp_eps"} <= names
    assert {"failures_ss_scores", "failures_dp_gains", "benign_synthetic_signs_gtsrb_cnn"} <= \
        {path.stem for path in files.figures}
    html = files.html.read_text()
    assert "Benign arm" in html and "#1188" in html
    summary = pd.read_parquet(tmp_path / "report" / "summary" / "benign_synthetic_signs_gtsrb_cnn.parquet")
    assert set(summary["pipeline"]) == set(PIPELINES) - {"none"}
