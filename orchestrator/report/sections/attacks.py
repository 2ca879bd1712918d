"""Section "Attacks before any defense": clean accuracy, ASR and RA of the backdoored models per
attack setting, and ASR against poison percentage."""

from __future__ import annotations

import pandas as pd

from orchestrator.report import figures
from orchestrator.report.model import Figure, Paragraph, ReportContext, Section, Table
from orchestrator.report.sections.settings import (
    backdoored_models_sql,
    estimate_cells,
    file_stem,
    panel_title,
    setting_columns,
    shown_keys,
)
from orchestrator.report.stats import aggregate

METRICS = {"clean_acc": "Clean accuracy (%)", "asr": "ASR (%)", "ra": "RA (%)"}
MAX_PANELS = 6  # (dataset, model) panels in the dose-response figure
MAX_LINES = len(figures.PALETTE)  # lines per panel; beyond this a panel would not be readable


def section(context: ReportContext) -> Section | None:
    """None when the rows have no before-defense metrics."""
    columns = context.columns("results")
    metrics = [m for m in METRICS if f"{m}_before" in columns]
    if "asr_before" not in columns:
        return None
    keys = setting_columns(context)
    models = backdoored_models_sql(keys, {metric: f"{metric}_before" for metric in metrics})
    stats = aggregate(context.connection, models, keys, metrics)
    if stats.empty:
        return None
    blocks: list = [Paragraph(
        "The backdoored models before any defense, one per attack setting and seed: clean accuracy on the clean "
        "test set, attack success rate (ASR, the share of triggered source-class test images classified as the "
        "target) and robust accuracy (RA, the share of them still classified as their true class).")]
    pairs = stats[["dataset", "model"]].drop_duplicates().itertuples(index=False, name=None)
    pairs = list(pairs)
    for dataset, model in pairs:
        part = stats[(stats["dataset"] == dataset) & (stats["model"] == model)].reset_index(drop=True)
        row_keys = [k for k in keys if k not in ("dataset", "model")]
        shown = shown_keys(part, row_keys)
        for metric in metrics:
            shown[METRICS[metric]] = estimate_cells(part, metric)
        name = "attacks" if len(pairs) == 1 else file_stem("attacks", dataset, model)
        title = "Backdoored models before any defense" + ("" if len(pairs) == 1 else f": {dataset} · {model}")
        blocks.append(Table(name, title, shown.reset_index(drop=True), part,
                            "Cells: mean [95 % CI] n = seeds, in percent. Poison %: share of the source class's "
                            "training images given the trigger and the target label."))
    blocks.append(dose_response_figure(stats, keys, pairs))
    return Section("attacks", "Attacks before any defense", blocks)


def dose_response_figure(stats: pd.DataFrame, keys: list[str], pairs: list[tuple[str, str]]) -> Figure:
    """ASR (%) against poison % per (dataset, model) panel, a line per trigger with its 95 % band."""
    shown_pairs = pairs[:MAX_PANELS]
    line_keys = [k for k in keys if k not in ("dataset", "model", "poison_pct")]
    dropped_lines, logarithmic = 0, False
    size = (4.8, 3.4) if len(shown_pairs) > 1 else (7.2, 4.0)
    with figures.panels(len(shown_pairs), max_columns=2, panel_size=size, name="dose_response") as (figure, axes):
        for axis, (dataset, model) in zip(axes, shown_pairs):
            part = stats[(stats["dataset"] == dataset) & (stats["model"] == model)]
            lines = list(part.groupby(line_keys, sort=True))
            dropped_lines += max(0, len(lines) - MAX_LINES)
            for index, (line, points) in enumerate(lines[:MAX_LINES]):
                points = points.sort_values("poison_pct")
                label = " · ".join(str(v) for v in (line if isinstance(line, tuple) else (line,)))
                figures.line_with_band(axis, points["poison_pct"], 100 * points["asr_mean"], 100 * points["asr_lo"],
                                       100 * points["asr_hi"], label, figures.colour(index),
                                       figures.MARKERS[index % len(figures.MARKERS)])
            logarithmic |= figures.poison_axis(axis, part["poison_pct"])
            figures.percent_axis(axis, "y")
            axis.set_xlabel("Poisoned share of the source class (%)")
            axis.set_ylabel("ASR before defense (%)")
            if len(shown_pairs) > 1:
                axis.set_title(panel_title({"dataset": dataset, "model": model}, ["dataset", "model"]))
            axis.legend(loc="lower right", title="Trigger" if line_keys == ["trigger"] else None)
        svg = figures.to_svg(figure)
    caption = "Lines: mean ASR over seeds; bands: 95 % confidence interval (absent where a point has one seed)."
    if logarithmic:
        caption += " The x axis is logarithmic, so that small poison percentages do not crowd together."
    if len(pairs) > MAX_PANELS:
        caption += f" Only the first {MAX_PANELS} of {len(pairs)} (dataset, model) pairs are drawn; the tables have all."
    if dropped_lines:
        caption += f" {dropped_lines} further lines are not drawn (at most {MAX_LINES} per panel); the tables have them."
    return Figure("dose_response", "Attack success rate against poison percentage", svg, caption)
