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


BOARD_SPACE = """
name: board
dataset: {name: synthetic_signs, per_class: 10}
model: gtsrb_cnn
attack: {source: all, target: 14, trigger: [yellow_square, blend], poison_pct: 10}
seeds: [0, 1, 2]
defenses: [none, {ac: {cluster_analysis: smaller}}, fine_tune]
"""


def test_findings_write_the_leaderboard_block_beside_the_thesis_block_and_again_the_same_bytes(tmp_path):
    import textwrap

    from typer.testing import CliRunner

    from orchestrator.cli import app
    from orchestrator.pipeline import row_types, trial_row
    from orchestrator.results import write_row
    from orchestrator.search_space import load_search_space
    from orchestrator.studies.findings import markers
    from orchestrator.sweep import plan_sweep, record_sweep
    from tests.fake_trials import fake_records

    root = str(tmp_path / "runs")
    space = tmp_path / "board.yaml"
    space.write_text(textwrap.dedent(BOARD_SPACE))
    _, trials = load_search_space(space)
    record_sweep(plan_sweep(trials, root, "board"), space)
    for index, trial in enumerate(trials):
        records = fake_records(trial, asr_after=0.05 + 0.03 * index, clean_acc_after=0.93 - 0.002 * index)
        write_row(root, "board", trial_row(trial, *records, "board"), types=row_types(trial))
    thesis_start, thesis_end = markers("thesis")
    board_start, board_end = markers("leaderboard")
    readme = tmp_path / "README.md"
    thesis_block = f"{thesis_start}\nthe thesis's findings, written earlier\n{thesis_end}\n"
    readme.write_text(f"# Project\n\n{thesis_block}\nBetween.\n\n{board_start}\nstale\n{board_end}\n\nAfter.\n")
    arguments = ["findings", "board", "--study", "leaderboard", "--storage", root, "--readme", str(readme),
                 "--figures", str(tmp_path / "figures")]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    text = readme.read_text()
    assert thesis_block in text and text.endswith(f"{board_end}\n\nAfter.\n") and "stale" not in text
    block = text.split(board_start)[1].split(board_end)[0]
    assert "From the `board` sweep (" in block and "| Dataset / model | Attack | May rank first |" in block
    assert "](figures/leaderboard_heatmap_synthetic_signs_gtsrb_cnn.png)" in block
    png = (tmp_path / "figures" / "leaderboard_heatmap_synthetic_signs_gtsrb_cnn.png").read_bytes()
    assert CliRunner().invoke(app, arguments).exit_code == 0
    assert readme.read_text() == text
    assert (tmp_path / "figures" / "leaderboard_heatmap_synthetic_signs_gtsrb_cnn.png").read_bytes() == png
    # An unknown study is refused by name.
    refused = CliRunner().invoke(app, [*arguments[:3], "nowhere", *arguments[4:]])
    assert refused.exit_code == 2 and "unknown study 'nowhere'" in refused.output


# Beside BackdoorBench ----------------------------------------------------------------------------

def test_backdoorbench_der_is_computed_from_its_own_no_defense_cell():
    from orchestrator.studies.leaderboard.beside import backdoorbench, reference_cells

    from importlib import resources

    import pandas as pd

    cells = backdoorbench()
    nc = cells[(cells["attack_name"] == "badnet") & (cells["defense_name"] == "nc") & np.isclose(cells["ratio"], 0.1)]
    raw = pd.read_csv(resources.files("orchestrator.studies.leaderboard") / "reference"
                      / "backdoorbench_gtsrb_preactresnet18.csv")
    at = raw[(raw["attack_name"] == "badnet") & np.isclose(raw["ratio"], 0.1)].set_index("defense_name")
    expected = (max(0, at.loc["no defense", "test_asr"] - at.loc["nc", "test_asr"])
                - max(0, at.loc["no defense", "test_acc"] - at.loc["nc", "test_acc"]) + 1) / 2
    assert nc["der"].iloc[0] == pytest.approx(expected)
    reference = reference_cells()
    assert set(reference.loc[reference["trigger"] == "sig", "bb_ratio"]) == {0.005}
    assert reference[reference["trigger"] == "label_consistent"].empty  # no defended lc cell


def beside_rows(agree: bool) -> list[dict]:
    """Our white_pattern rows for the defenses BackdoorBench has against BadNets, whose DER order agrees
    with (or reverses) BackdoorBench's (its BadNets DERs have no ties)."""
    from orchestrator.studies.leaderboard.beside import DEFENSES, reference_cells

    reference = reference_cells()
    theirs = reference[reference["trigger"] == "white_pattern"].set_index("defense")["bb_der"]
    assert theirs.is_unique
    base = synthetic_rows(["yellow_square"], [10], SEEDS, ["none", "ac(cluster_analysis=smaller)"])
    ranked = theirs.rank(method="first")
    rows = [dict(row, poison_base="all", trigger="white_pattern") for row in base if row["pipeline"] == "none"]
    for name in theirs.index:
        order = ranked[name] if agree else len(ranked) + 1 - ranked[name]
        for row in base:
            if row["pipeline"] != "none":
                rows.append(dict(row, poison_base="all", trigger="white_pattern", pipeline=name, d1_name=name, n_defenses=1,
                                 trial_id=f"{row['trial_id'][:10]}{name}", der=0.1 * order + 0.01 * row["seed"]))
    assert set(theirs.index) <= set(DEFENSES)
    return rows


def test_spearman_of_the_defense_orders_is_one_when_ours_agrees_and_minus_one_when_reversed():
    from orchestrator.studies.leaderboard import beside

    agreeing = beside.orders(context_of(beside_rows(agree=True))).set_index("attack")
    assert agreeing.loc["white_pattern", "rho"] == pytest.approx(1.0)
    assert agreeing.loc["white_pattern", "rho_lo"] == pytest.approx(1.0)
    reversed_ = beside.orders(context_of(beside_rows(agree=False))).set_index("attack")
    assert reversed_.loc["white_pattern", "rho"] == pytest.approx(-1.0)
    section = beside.section(context_of(beside_rows(agree=True)))
    table = next(b for b in section.blocks if isinstance(b, Table) and b.name == "beside_backdoorbench")
    assert len(table.data) == agreeing.loc["white_pattern", "n"] >= 3
    assert (table.data["bb_ratio"] == 0.1).all() and table.data["der_n"].eq(3).all()
    assert "white_pattern: badnet at ratio 0.1" in table.note


def test_where_we_differ_lists_the_wide_gaps_each_with_the_reason_its_measurements_give():
    """Against BackdoorBench's BadNets cells (their undefended ASR 59 %: DER at most 0.80): ours equal
    theirs but for three planted gaps, one per reason."""
    from orchestrator.studies.leaderboard import beside
    from orchestrator.studies.leaderboard.findings import where_we_differ

    reference = beside.reference_cells()
    theirs = reference[reference["trigger"] == "white_pattern"].set_index("defense")["bb_der"]
    # defense: (our DER, our ASR before)
    planted = {"ac": (0.98, 0.97),                # above their ceiling: their backdoor is weaker
               "neural_cleanse": (0.55, 0.56),    # our ceiling 0.78 < their 0.796: ours is weaker
               "fp": (0.40, 0.90),                # both leave room: the defense
               "i_bau": (0.50, 0.05)}             # no backdoor implanted here: named, not in the table
    rows = []
    for row in beside_rows(agree=True):
        defense = row["pipeline"]
        if defense == "none":
            rows.append(row)
            continue
        der, asr_before = planted.get(defense, (theirs[defense], 0.9))
        rows.append(dict(row, der=der, asr_before=asr_before))
    context = context_of(rows)
    wide = beside.differences(context)
    assert wide["defense"].tolist() == ["ac", "fp", "i_bau", "neural_cleanse"]  # largest gap first
    assert wide["gap"].tolist() == pytest.approx([0.98 - theirs["ac"], 0.40 - theirs["fp"], 0.50 - theirs["i_bau"],
                                                  0.55 - theirs["neural_cleanse"]])
    text = "\n".join(where_we_differ(context))
    assert ("4 of 6 pairs differ in DER by 0.2 or more. 1 of them are on attacks whose backdoor did not implant "
            "here (synthetic_signs white_pattern" in text)
    assert "The 3 pairs on implanted backdoors that differ by 0.2 or more" in text and "/ i_bau |" not in text
    assert "their backdoor is weaker: ASR before 59 % caps their DER at 0.80" in text
    assert "our backdoor is weaker: ASR before 56 % caps our DER at 0.78" in text
    assert "the defense: both backdoors leave room (ASR before ours 90 %, theirs 59 %)" in text
    assert "Spearman's rho of our mean DER against theirs over 6 (attack, defense) pairs" in text
    assert beside.SETTING in text
    # Equal DERs everywhere: no gap listed.
    even = [dict(row, der=theirs[row["pipeline"]]) if row["pipeline"] != "none" else row for row in beside_rows(agree=True)]
    assert "No pair's mean DER differs from theirs by 0.2 or more." in "\n".join(where_we_differ(context_of(even)))


# The README block against the report's summary Parquet ------------------------------------------

NUMBER = re.compile(r"[-+−]?\d+(?:\.\d+)?")


def numbers(cell: str) -> list[float]:
    return [float(token.replace("−", "-")) for token in NUMBER.findall(cell)]


def markdown_rows(block: str, header: str) -> list[dict]:
    """The rows of the Markdown table of ``block`` whose header line starts with ``header``."""
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    names = [cell.strip() for cell in lines[start].strip("|").split(" | ")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(names, (cell.strip() for cell in line.strip().strip("|").split(" | ")))))
    return rows


def test_every_number_in_the_readme_block_equals_the_reports_summary_parquet(tmp_path):
    """The block's front runners, answers, orders and gaps, number by number, against the Parquet
    files the report of the same rows writes (acceptance 2 of the leaderboard issue)."""
    import pandas as pd

    from orchestrator.report.build import write_report
    from orchestrator.report.sections.settings import file_stem
    from orchestrator.studies.leaderboard.findings import markdown

    planted = {"ac": (0.98, 0.97), "neural_cleanse": (0.55, 0.56), "fp": (0.40, 0.90)}
    rows = [dict(row, der=planted[row["pipeline"]][0] + 0.01 * row["seed"], asr_before=planted[row["pipeline"]][1])
            if row["pipeline"] in planted else row for row in beside_rows(agree=True)]
    context = context_of(rows)
    files = write_report(context, tmp_path / "report")
    summary = {path.stem: pd.read_parquet(path) for path in files.summaries}
    block = markdown(context, "board", [])

    front = markdown_rows(block, "| Dataset / model |")
    assert front
    for row in front:
        trigger, pct = row["Attack"].removesuffix(" %").rsplit(" ", 1)
        dataset, model = row["Dataset / model"].split(" / ")
        cell = summary[file_stem("leaderboard", dataset, model, trigger, float(pct))].set_index("pipeline").loc[row["May rank first"]]
        mean, low, high, n = numbers(row["DER"])
        assert (mean, low, high) == pytest.approx((cell.der_mean, max(cell.der_lo, 0), min(cell.der_hi, 1)), abs=5e-4)
        assert n == cell.der_n and cell.rank_lo == 1
        ranks = [cell["rank"]] if cell.rank_lo == cell.rank_hi == cell["rank"] else [cell["rank"], cell.rank_lo, cell.rank_hi]
        assert numbers(row["Rank (range)"].replace("–", " ")) == ranks

    answered = markdown_rows(block, "| Question |")
    claims = summary["leaderboard_answers"].set_index("claim")
    assert sum(row["Ours"] != "–" for row in answered) >= 2  # Q2 and Q3 have their defenses here
    for row in answered:
        claim = claims.loc[row["Claim"]]
        assert row["Verdict (95 % each)"] == claim.verdict.upper() and row["After Holm"] == claim.holm_verdict.upper()
        if row["Ours"] != "–":
            mean, low, high, *n = numbers(row["Ours"])  # each claim in its own unit, as the Parquet holds it
            assert (mean, low, high) == pytest.approx((claim["mean"], claim.lower, claim.upper), abs=5e-3)
            assert n[0] == claim.n_first

    orders = summary[file_stem("beside_backdoorbench_orders")].set_index(["dataset", "attack"])
    for dataset, in orders.index.get_level_values(0).unique().to_frame().itertuples(index=False):
        overall = orders.loc[(dataset, "every pair")]
        found = re.search(rf"[Oo]n {dataset}, Spearman's rho of our mean DER against theirs over (\d+) \(attack, "
                          r"defense\) pairs is ([^;(]*)", block)
        n, (rho, low, high) = int(found[1]), numbers(found[2])
        assert (n, rho, low, high) == pytest.approx((overall.n, overall.rho, overall.rho_lo, overall.rho_hi), abs=5e-3)

    beside_cells = summary["beside_backdoorbench"].set_index(["dataset", "trigger", "defense"])
    gaps = markdown_rows(block, "| Dataset | Attack / defense |")
    assert {"white_pattern / ac", "white_pattern / fp", "white_pattern / neural_cleanse"} <= {
        row["Attack / defense"] for row in gaps}
    for row in gaps:
        cell = beside_cells.loc[(row["Dataset"], *row["Attack / defense"].split(" / "))]
        mean, low, high, n = numbers(row["DER ours"])
        assert (mean, low, high, n) == pytest.approx((cell.der_mean, max(cell.der_lo, 0), min(cell.der_hi, 1), cell.der_n), abs=5e-4)
        assert numbers(row["DER theirs"])[0] == pytest.approx(cell.bb_der, abs=5e-4)
        percent = numbers(row["Likely reason"])[0]
        before = cell.bb_asr_before if row["Likely reason"].startswith("their") else cell.asr_before_mean
        assert percent == pytest.approx(100 * before, abs=0.5)


@pytest.mark.slow
def test_the_leaderboard_sections_read_in_chromium(tmp_path):
    """The study's three sections (Leaderboard, Beside BackdoorBench, answers) in a real browser, with
    the checks every report passes."""
    from orchestrator.report.build import build_sections, write_report
    from tests.browser import assert_reads_well, inspect_page
    from tests.orchestrator.report.test_render import built_once

    context = context_of(beside_rows(agree=True))
    sections = build_sections(context)
    assert {"leaderboard", "backdoorbench", "leaderboard_answers"} <= {section.id for section in sections}
    files = write_report(context, tmp_path / "report", sections=built_once(sections))
    page = inspect_page(files.html, screenshot=tmp_path / "board.png")
    assert_reads_well(page, sections)
    assert any("heatmap" in (figure.id or "") or "DER" in (figure.title or "") for figure in page.figures)
