"""Section "Leaderboard": every defense against every all-to-one attack, with intervals over seeds
and ranks that admit ties.

Per (dataset, model, attack setting) and defense configuration, over the seeds: DER (served for an
input filter), ASR after, the clean-accuracy drop and the defense's compute seconds per model, each a
mean with a 95 % Student-t interval; the defense's rank by mean DER within the attack setting, with a
95 % interval from a bootstrap that resamples each (setting, defense)'s seeds
(:func:`~orchestrator.report.stats.bootstrap_ranks`): defenses the seeds cannot tell apart share
ranks. A heatmap per (dataset, model) shows mean DER, attacks by defenses, hatching cells whose
interval holds 0.5 (no effect cannot be ruled out).

It reads the all-to-one rows (:data:`ALL_TO_ONE`, BackdoorBench's setting) of a sweep with at
least two seeds and one defense; other sweeps do not get it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator.report import figures
from orchestrator.report.model import Figure, Paragraph, ReportContext, Section, Table
from orchestrator.report.sections.benign import wrap_label
from orchestrator.report.sections.settings import (
    DER_FORMULA,
    NO_DEFENSE,
    estimate_cells,
    file_stem,
    format_value,
    pipeline_order,
    quote,
)
from orchestrator.report.stats import aggregate, bootstrap_ranks

CELL = ["dataset", "model", "trigger", "poison_pct"]  # an attack setting (all-to-one: no source class)
METRICS = ("der", "asr_after", "acc_drop", "defense_seconds", "asr_before")
IMPLANTED_ASR = 0.5  # below this ASR before, a model has (nearly) no backdoor for a defense to remove
# BackdoorBench's setting: poisons from every class but the target (``source: all``), or clean-label
# poisons of the target class; either way ASR is measured on every non-target test image.
ALL_TO_ONE = "poison_base IN ('all', 'target')"
N_BOOT = 2000  # bootstrap replicates of the rank intervals (seeded: the report is reproducible)
NEEDED = {"poison_base", "der", "asr_after", "clean_acc_before", "clean_acc_after", "seed", "pipeline", "trigger"}


def trials(context: ReportContext) -> pd.DataFrame:
    """One row per defended all-to-one trial on a poisoned model: the :data:`CELL` columns,
    ``pipeline``, ``seed`` and :data:`METRICS` (``acc_drop`` = clean accuracy before − after;
    ``asr_before``: the undefended model's)."""
    columns = context.columns("results")
    seconds = "defense_seconds" if "defense_seconds" in columns else "NULL::DOUBLE AS defense_seconds"
    return context.frame(
        f"SELECT {', '.join(quote(c) for c in CELL)}, pipeline, seed, der, asr_after, "
        f"clean_acc_before - clean_acc_after AS acc_drop, {seconds}, asr_before FROM results "
        f"WHERE {ALL_TO_ONE} AND poison_pct > 0 AND pipeline <> '{NO_DEFENSE}' AND der IS NOT NULL")


def leaderboard(context: ReportContext) -> pd.DataFrame:
    """Per (:data:`CELL`, pipeline): ``<metric>_mean/_lo/_hi/_n`` of :data:`METRICS` and the rank
    columns of :func:`bootstrap_ranks` (``rank``, ``rank_lo``, ``rank_hi``, ``p_first``); empty
    when there are no such trials or fewer than two seeds."""
    found = trials(context)
    if found.empty or found["seed"].nunique() < 2:
        return pd.DataFrame()
    context.connection.register("leaderboard_trials", found)
    try:
        stats = aggregate(context.connection, "leaderboard_trials", [*CELL, "pipeline"], list(METRICS))
    finally:
        context.connection.unregister("leaderboard_trials")
    ranks = bootstrap_ranks(found, CELL, "pipeline", "der", n_boot=N_BOOT, seed=0)
    merged = stats.merge(ranks.drop(columns=["mean", "n"]), on=[*CELL, "pipeline"], how="left")
    return merged.sort_values([*CELL, "rank", "pipeline"]).reset_index(drop=True)


def section(context: ReportContext) -> Section | None:
    if not NEEDED <= context.columns("results"):
        return None
    board = leaderboard(context)
    if board.empty:
        return None
    blocks: list = [Paragraph(
        "Every defense configuration against every all-to-one attack setting (poisons drawn from every class "
        "but the target), over the seeds. Cells: mean [95 % Student-t interval] n = seeds; for a configuration "
        f"ending in an input filter, what it serves. {DER_FORMULA}. Clean-accuracy drop: before − after in "
        "percentage points (negative: a gain). Compute: the defense's seconds per model. Rank: by mean DER "
        f"within the attack setting (1 = best; equal means share the better rank), with the 2.5–97.5 % range "
        f"of ranks over {N_BOOT:,} bootstrap resamples of each cell's seeds: defenses whose ranges overlap are "
        "not told apart by these seeds.")]
    for (dataset, model), part in board.groupby(["dataset", "model"], sort=True):
        blocks.append(heatmap(part, dataset, model))
        for (trigger, poison_pct), cell in part.groupby(["trigger", "poison_pct"], sort=True):
            blocks.append(_table(cell.reset_index(drop=True), dataset, model, trigger, poison_pct))
    return Section("leaderboard", "Leaderboard: every defense against every attack, with intervals and rank ranges",
                   blocks)


def rank_cells(frame: pd.DataFrame) -> list[str]:
    """``2 (1–3)``: the rank of the mean with its bootstrap range; ``1`` alone when the range is that rank."""
    return [f"{rank}" if low == high == rank else f"{rank} ({low}–{high})"
            for rank, low, high in zip(frame["rank"], frame["rank_lo"], frame["rank_hi"])]


def _table(cell: pd.DataFrame, dataset: str, model: str, trigger: str, poison_pct: float) -> Table:
    shown = pd.DataFrame({
        "Rank (range)": rank_cells(cell),
        "Defense configuration": cell["pipeline"],
        "DER": estimate_cells(cell, "der", scale=1.0, digits=3),
        "ASR after (%)": estimate_cells(cell, "asr_after"),
        "Clean-acc. drop (pp)": estimate_cells(cell, "acc_drop", bounds=None),
        "Compute (s)": estimate_cells(cell, "defense_seconds", scale=1.0, digits=0, bounds=(0.0, np.inf)),
    })
    title = (f"Leaderboard on {dataset} / {model}: {trigger} at {format_value(poison_pct)} % "
             f"(undefended ASR {100 * cell['asr_before_mean'].iloc[0]:.0f} %)")
    note = ("" if cell["asr_before_mean"].iloc[0] >= IMPLANTED_ASR else
            f" The undefended models' mean ASR is below {100 * IMPLANTED_ASR:.0f} %: there was little backdoor "
            "to remove, so DER stays near 0.5.")
    return Table(file_stem("leaderboard", dataset, model, trigger, poison_pct), title, shown, cell,
                 "Sorted by rank. Mean [95 % CI] n = seeds; rank range: 2.5–97.5 % of bootstrap ranks." + note)


def heatmap(part: pd.DataFrame, dataset: str, model: str) -> Figure:
    """The report's figure: :func:`draw_heatmap` as inline SVG with its caption."""
    name = file_stem("leaderboard_heatmap", dataset, model)
    with figures.panels(1, max_columns=1, panel_size=heatmap_size(part), name=name) as (figure, (axes,)):
        draw_heatmap(figure, axes, part)
        svg = figures.to_svg(figure)
    return Figure(name, f"Mean DER of every defense against every attack on {dataset} / {model}", svg, HEATMAP_CAPTION)


HEATMAP_CAPTION = ("Rows: attack settings with their undefended models' mean ASR (%). "
                   "Each cell: the defense's mean DER over seeds against that attack setting (0.5: no effect; 1: "
                   "backdoor removed at no cost). Hatched: the 95 % interval over seeds holds 0.5, so the seeds "
                   "cannot rule out that the defense does nothing there. Blank: not run.")


def heatmap_size(part: pd.DataFrame) -> tuple[float, float]:
    """(width, height) in inches of :func:`draw_heatmap`'s panel for ``part``'s attacks and defenses."""
    rows = part[["trigger", "poison_pct"]].drop_duplicates()
    longest = max(len(f"{t} {format_value(p)} % (ASR 100)") for t, p in rows.itertuples(index=False))
    columns = part["pipeline"].nunique()
    width = min(figures.MAX_WIDTH_IN, 0.75 * columns + 0.08 * longest + 1.6)
    lines = max(wrap_label(d, 14, after=",(").count("\n") + 1 for d in part["pipeline"].unique())
    return width, 0.34 * len(rows) + 1.2 + 0.16 * lines


def draw_heatmap(figure, axes, part: pd.DataFrame) -> None:
    """Mean DER of ``part`` (one dataset and model of :func:`leaderboard`), attack settings by defense
    configurations; hatched where the interval holds 0.5."""
    attacks = part[["trigger", "poison_pct"]].drop_duplicates().sort_values(["trigger", "poison_pct"])
    keyed = part.set_index(["trigger", "poison_pct", "pipeline"])
    before = part.groupby(["trigger", "poison_pct"])["asr_before_mean"].first()
    row_labels = [f"{t} {format_value(p)} % (ASR {100 * before[(t, p)]:.0f})" for t, p in attacks.itertuples(index=False)]
    defenses = pipeline_order(part["pipeline"].unique())
    shape = (len(attacks), len(defenses))
    matrix, marked = np.full(shape, np.nan), np.zeros(shape, bool)
    for i, (trigger, poison_pct) in enumerate(attacks.itertuples(index=False)):
        for j, defense in enumerate(defenses):
            if (trigger, poison_pct, defense) in keyed.index:
                row = keyed.loc[(trigger, poison_pct, defense)]
                matrix[i, j] = row["der_mean"]
                marked[i, j] = row["der_n"] >= 2 and row["der_lo"] <= 0.5 <= row["der_hi"]
    column_labels = [wrap_label(d, 14, after=",(") for d in defenses]
    figures.annotated_heatmap(figure, axes, matrix, row_labels, column_labels, "mean DER", (0.0, 1.0), 2, marked)
    axes.tick_params(axis="x", labelrotation=0, labelsize=7)
