"""The leaderboard study's section on planted all-to-one rows: its cells are the seeds' means with t
intervals, a defense that clearly wins ranks first alone, two the seeds cannot tell apart share a
rank range, and the heatmap hatches a cell whose DER interval holds 0.5."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import stats

from orchestrator.report.model import Figure, ReportContext, SweepFacts, Table
from orchestrator.studies.leaderboard import board
from tests.report_rows import connect_rows, synthetic_rows

SEEDS = [0, 1, 2]
# Per defense, the DER of seeds 0, 1, 2 against blend: ac wins clearly; ss and fp are alike.
PLANTED = {"ac(cluster_analysis=smaller)": [0.90, 0.92, 0.91],
           "ss(expected_pp_poison=0.05,eps_multiplier=1.5,score=centered)": [0.60, 0.70, 0.50],
           "fp(layer=last_conv,threshold=0.04)": [0.62, 0.58, 0.66]}


def planted_rows(der=PLANTED, poison_base="all") -> list[dict]:
    rows = synthetic_rows(["yellow_square"], [10], SEEDS, ["none", *der])
    for row in rows:
        row["poison_base"] = poison_base
        row["trigger"] = "blend"
        if row["pipeline"] in der:
            row["der"] = der[row["pipeline"]][row["seed"]]
            row["defense_seconds"] = 10.0 + row["seed"]
    return rows


def context_of(rows: list[dict]) -> ReportContext:
    return ReportContext(connect_rows(rows), SweepFacts("demo", "name: demo\n", {"done": len(rows)}))


def test_cells_are_seed_means_with_t_intervals_and_ranks_separate_a_clear_winner_only():
    section = board.section(context_of(planted_rows()))
    tables = [block for block in section.blocks if isinstance(block, Table)]
    (table,) = tables
    data = table.data.set_index("pipeline")
    for pipeline, values in PLANTED.items():
        low, high = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
        assert data.loc[pipeline, "der_mean"] == pytest.approx(np.mean(values))
        assert (data.loc[pipeline, "der_lo"], data.loc[pipeline, "der_hi"]) == pytest.approx((low, high))
    assert data.loc[list(PLANTED)[0], ["rank", "rank_lo", "rank_hi"]].tolist() == [1, 1, 1]
    ss, fp = list(PLANTED)[1], list(PLANTED)[2]
    assert {data.loc[ss, "rank"], data.loc[fp, "rank"]} == {2, 3}
    assert (data.loc[ss, "rank_lo"], data.loc[ss, "rank_hi"]) == (2, 3) == (data.loc[fp, "rank_lo"], data.loc[fp, "rank_hi"])
    assert data.loc[fp, "defense_seconds_mean"] == pytest.approx(11.0)
    assert table.shown["Rank (range)"].tolist()[0] == "1" and "(2–3)" in table.shown["Rank (range)"].tolist()[1]
    # Flipping the data flips the ranks.
    flipped = {p: [1 - v for v in values] for p, values in PLANTED.items()}
    data = [b for b in board.section(context_of(planted_rows(flipped))).blocks if isinstance(b, Table)][0].data
    assert data.set_index("pipeline").loc[list(PLANTED)[0], "rank"] == 3


def test_the_heatmap_hatches_a_cell_whose_interval_holds_one_half():
    figure = next(b for b in board.section(context_of(planted_rows())).blocks if isinstance(b, Figure))
    # ss's seeds (0.6, 0.7, 0.5) have an interval that holds 0.5; ac's and fp's do not.
    assert figure.svg.count("<pattern") == 1 and len(re.findall(r'url\(#[^)]*-h[0-9a-f]+\)', figure.svg)) == 1  # one hatched cell
    part = board.leaderboard(context_of(planted_rows()))
    holds = (part["der_lo"] <= 0.5) & (part["der_hi"] >= 0.5)
    assert holds.tolist() == [p.startswith("ss") for p in part["pipeline"]]


def test_no_leaderboard_for_source_specific_rows_or_one_seed():
    assert board.section(context_of(planted_rows(poison_base="source"))) is None
    one_seed = [row for row in planted_rows() if row["seed"] == 0]
    assert board.section(context_of(one_seed)) is None
