"""The leaderboard study's README block: which defenses may rank first against each attack, with
their DER and rank ranges, and the mean-DER heatmap per dataset and model (``bdsweep findings NAME
--study leaderboard``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from orchestrator.report import figures as report_figures
from orchestrator.report.model import ReportContext
from orchestrator.report.render import markdown_table
from orchestrator.report.sections.settings import estimate_cells, file_stem, format_value
from orchestrator.studies.claims import NOT_IN_SWEEP
from orchestrator.studies.findings import FindingsWriter
from orchestrator.studies.leaderboard import answers, beside
from orchestrator.studies.leaderboard.board import IMPLANTED_ASR, draw_heatmap, heatmap_size, leaderboard, rank_cells


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
    """Per attack setting that implanted a backdoor (:data:`IMPLANTED_ASR`), the defenses whose rank
    range reaches 1 (the seeds cannot rule out that each is the best), best mean first."""
    first = board[(board["rank_lo"] == 1) & (board["asr_before_mean"] >= IMPLANTED_ASR)]
    first = first.sort_values(["dataset", "model", "trigger", "poison_pct", "rank", "pipeline"])
    return pd.DataFrame({
        "Dataset / model": [f"{d} / {m}" for d, m in zip(first["dataset"], first["model"])],
        "Attack": [f"{t} {format_value(p)} %" for t, p in zip(first["trigger"], first["poison_pct"])],
        "May rank first": first["pipeline"].tolist(),
        "Rank (range)": rank_cells(first),
        "DER": estimate_cells(first, "der", scale=1.0, digits=3),
    })


def markdown(context: ReportContext, name: str, figure_paths: list[str], partial: str = "") -> str:
    board = leaderboard(context)
    if board.empty:
        return f"{partial}The `{name}` sweep has no all-to-one rows with two seeds or more: no leaderboard."
    n_trials, seeds = context.connection.execute(
        "SELECT count(DISTINCT trial_id), count(DISTINCT seed) FROM results").fetchone()
    lines = [f"{partial}From the `{name}` sweep ({n_trials} trials, {seeds} seeds; its report's Leaderboard section "
             f"has every defense's row). Per attack setting whose undefended models reached a mean ASR of "
             f"{100 * IMPLANTED_ASR:.0f} % or "
             "more, the defenses whose rank range over a bootstrap of the seeds reaches 1: the seeds cannot tell "
             "which of them is best.", "", *markdown_table(front_runners(board)), ""]
    weak = not_implanted(board)
    if weak:
        lines += [f"Left out, their undefended models' mean ASR below {100 * IMPLANTED_ASR:.0f} % (little backdoor "
                  "to remove, every DER near 0.5): " + "; ".join(weak) + ".", ""]
    claims = answers.answers_frame(answers.trials(context))
    if (claims["verdict"] != NOT_IN_SWEEP).any():
        shown = answers.answers_table(claims).shown.drop(columns=["Models"])
        lines += ["The four claims, each judged at 95 % by the report's rule (Leaderboard answers), and after "
                  "Holm's adjustment over them:", "", *markdown_table(shown), ""]
    for path in figure_paths:
        caption = f"Mean DER, {Path(path).stem.removeprefix('leaderboard_heatmap_')}: " + HEATMAP_SHORT
        lines += [f"![{caption}]({path})", "", f"*{caption}*", ""]
    lines += where_we_differ(context)
    return "\n".join(lines).rstrip()


DIFFERENCES_SHOWN = 10


def not_implanted(board: pd.DataFrame) -> list[str]:
    """``digits / gtsrb_cnn: wanet 10 % (ASR 5 %)`` for each attack setting of ``board`` whose undefended
    models' mean ASR is below :data:`IMPLANTED_ASR`."""
    settings = board.groupby(["dataset", "model", "trigger", "poison_pct"], sort=True)["asr_before_mean"].first()
    return [f"{d} / {m}: {t} {format_value(p)} % (ASR {100 * asr:.0f} %)"
            for (d, m, t, p), asr in settings.items() if asr < IMPLANTED_ASR]


def likely_reason(row) -> str:
    """What the measurements say about one pair's gap: a backdoor too weak on one side for the other
    side's DER (the DER ceiling, :func:`beside.der_ceiling`), or the defense itself."""
    if row.gap < 0 and row.ceiling < row.bb_der:
        return f"our backdoor is weaker: ASR before {100 * row.asr_before_mean:.0f} % caps our DER at {row.ceiling:.2f}"
    if row.gap > 0 and row.bb_ceiling < row.der_mean:
        return (f"their backdoor is weaker: ASR before {100 * row.bb_asr_before:.0f} % caps their DER "
                f"at {row.bb_ceiling:.2f}")
    return (f"the defense: both backdoors leave room (ASR before ours {100 * row.asr_before_mean:.0f} %, "
            f"theirs {100 * row.bb_asr_before:.0f} %)")


def where_we_differ(context: ReportContext) -> list[str]:
    """README lines "Where we differ from BackdoorBench": the orders' agreement, the pairs whose DER
    differs by 0.2 or more with each one's likely reason, and the settings that differ."""
    found = beside.comparison(context)
    if found.empty:
        return []
    rhos = beside.orders(context)
    overall = rhos[rhos["attack"] == "every pair"]
    agreement = "; ".join(
        f"on {row.dataset}, Spearman's rho of our mean DER against theirs over {row.n} (attack, defense) pairs is "
        + (f"{row.rho:+.2f} [{row.rho_lo:+.2f}, {row.rho_hi:+.2f}]" if np.isfinite(row.rho) else "undefined")
        for row in overall.itertuples())
    lines = [f"**Where we differ from BackdoorBench.** {agreement[:1].upper()}{agreement[1:]} (the report's Beside "
             "BackdoorBench section has every pair and attack)."]
    wide = beside.differences(context)
    weak = wide["asr_before_mean"] < IMPLANTED_ASR if not wide.empty else pd.Series(dtype=bool)
    if wide.empty:
        lines += ["", "No pair's mean DER differs from theirs by 0.2 or more."]
    else:
        if weak.any():
            attacks = ", ".join(sorted({f"{d} {t}" for d, t in zip(wide.loc[weak, "dataset"], wide.loc[weak, "trigger"])}))
            lines += ["", f"{len(wide)} of {len(found)} pairs differ in DER by 0.2 or more. {int(weak.sum())} of them "
                      f"are on attacks whose backdoor did not implant here ({attacks}: undefended mean ASR below "
                      f"{100 * IMPLANTED_ASR:.0f} %, so DER cannot pass (ASR + 1) / 2)."]
        wide = wide[~weak]
        shown = wide.head(DIFFERENCES_SHOWN)
        lines += ["", (f"The {len(wide)} pairs on implanted backdoors that differ by 0.2 or more"
                       if weak.any() else f"{len(wide)} of {len(found)} pairs differ in DER by 0.2 or more")
                  + (f"; the {len(shown)} largest" if len(shown) < len(wide) else "")
                  + ", each with what was measured on both sides (ASR before: the undefended model's):", "",
                  *markdown_table(pd.DataFrame({
                      "Dataset": shown["dataset"], "Attack / defense": shown["trigger"] + " / " + shown["defense"],
                      "DER ours": estimate_cells(shown, "der", scale=1.0, digits=3),
                      "DER theirs": [f"{v:.3f}" for v in shown["bb_der"]],
                      "Likely reason": [likely_reason(row) for row in shown.itertuples()],
                  }))]
    return lines + ["", beside.SETTING, ""]


HEATMAP_SHORT = "attacks by defenses, mean over seeds; hatched where the 95 % interval holds 0.5 (no effect)."

WRITER = FindingsWriter("leaderboard", figures, markdown)
