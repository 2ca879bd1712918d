"""The leaderboard study's README block: which defenses may rank first against each attack, with
their DER and rank ranges, and the mean-DER heatmap per dataset and model (``bdsweep findings NAME
--study leaderboard``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from orchestrator.report import figures as report_figures
from orchestrator.report.model import ReportContext
from orchestrator.report.render import markdown_table
from orchestrator.report.sections.settings import file_stem, format_value
from orchestrator.report.stats import format_estimate
from orchestrator.studies.claims import NOT_IN_SWEEP
from orchestrator.studies.findings import FindingsWriter
from orchestrator.studies.leaderboard import answers
from orchestrator.studies.leaderboard.board import draw_heatmap, heatmap_size, leaderboard, rank_cells


def figures(context: ReportContext) -> dict[str, Figure | None]:
    """One heatmap per (dataset, model) of the leaderboard's rows."""
    board = leaderboard(context)
    drawn = {}
    for (dataset, model), part in (board.groupby(["dataset", "model"], sort=True) if not board.empty else []):
        name = file_stem("heatmap", dataset, model)
        with report_figures.panels(1, max_columns=1, panel_size=heatmap_size(part), name=name) as (figure, (axes,)):
            draw_heatmap(figure, axes, part)
        drawn[name] = figure
    return drawn


def front_runners(board: pd.DataFrame) -> pd.DataFrame:
    """Per attack setting, the defenses whose rank range reaches 1 (the seeds cannot rule out that
    each is the best), best mean first."""
    first = board[board["rank_lo"] == 1].sort_values(["dataset", "model", "trigger", "poison_pct", "rank", "pipeline"])
    return pd.DataFrame({
        "Dataset / model": [f"{d} / {m}" for d, m in zip(first["dataset"], first["model"])],
        "Attack": [f"{t} {format_value(p)} %" for t, p in zip(first["trigger"], first["poison_pct"])],
        "May rank first": first["pipeline"].tolist(),
        "Rank (range)": rank_cells(first),
        "DER": [format_estimate(m, lo, hi, int(n), scale=1.0, digits=3) for m, lo, hi, n in
                zip(first["der_mean"], first["der_lo"].clip(0, 1), first["der_hi"].clip(0, 1), first["der_n"])],
    })


def markdown(context: ReportContext, name: str, figure_paths: list[str], partial: str = "") -> str:
    board = leaderboard(context)
    if board.empty:
        return f"{partial}The `{name}` sweep has no all-to-one rows with two seeds or more: no leaderboard."
    n_trials, seeds = context.connection.execute(
        "SELECT count(DISTINCT trial_id), count(DISTINCT seed) FROM results").fetchone()
    lines = [f"{partial}From the `{name}` sweep ({n_trials} trials, {seeds} seeds; its report's Leaderboard section "
             "has every defense's row). Per attack setting, the defenses whose rank range over a bootstrap of the "
             "seeds reaches 1: the seeds cannot tell which of them is best.", "",
             *markdown_table(front_runners(board)), ""]
    claims = answers.answers_frame(answers.trials(context))
    if (claims["verdict"] != NOT_IN_SWEEP).any():
        shown = answers.answers_table(claims).shown.drop(columns=["Models"])
        lines += ["The four claims, each judged at 95 % by the report's rule (Leaderboard answers), and after "
                  "Holm's adjustment over them:", "", *markdown_table(shown), ""]
    for path in figure_paths:
        caption = f"Mean DER, {Path(path).stem.removeprefix('leaderboard_heatmap_')}: " + HEATMAP_SHORT
        lines += [f"![{caption}]({path})", "", f"*{caption}*", ""]
    return "\n".join(lines).rstrip()


HEATMAP_SHORT = "attacks by defenses, mean over seeds; hatched where the 95 % interval holds 0.5 (no effect)."

WRITER = FindingsWriter("leaderboard", figures, markdown)
