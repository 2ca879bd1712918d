"""Section "Attacks before any defense": clean accuracy, ASR and RA of the backdoored models per
attack setting (an attack with its parameters, at a poison percentage), ASR against poison
percentage per attack, and how visible each attack's change is against the ASR it buys."""

from __future__ import annotations

import numpy as np
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
                            "Cells: mean [95 % CI] n = seeds, in percent. Poison %: share of the poison base given "
                            "the trigger: the source class's training images; the whole training set for "
                            "source: all; the target class's for a clean-label attack."))
    blocks.append(dose_response_figure(stats, keys, pairs))
    if "attack_psnr_mean" in columns:
        visible = aggregate(context.connection, backdoored_models_sql(keys, {
            "asr": "asr_before", "psnr": "attack_psnr_mean", "ssim": "attack_ssim_mean"}), keys, ["asr", "psnr", "ssim"])
        visible = visible[visible["psnr_n"] > 0]
        if not visible.empty:
            blocks.append(visibility_figure(visible))
    return Section("attacks", "Attacks before any defense", blocks)


def visibility_figure(stats: pd.DataFrame) -> Figure:
    """ASR (%) against how visible the poisons' change is (PSNR in dB, SSIM): a point per attack setting."""
    finite = stats[np.isfinite(stats["psnr_mean"])]
    unchanged = len(stats) - len(finite)
    triggers = list(dict.fromkeys(stats["trigger"]))
    with figures.panels(2, max_columns=2, panel_size=(4.8, 3.6), name="visibility") as (figure, axes):
        for axis, (metric, label) in zip(axes, (("psnr", "PSNR of a poison against its original (dB)"),
                                                ("ssim", "SSIM of a poison against its original"))):
            shown = finite if metric == "psnr" else stats
            for index, trigger in enumerate(triggers[:MAX_LINES]):
                part = shown[shown["trigger"] == trigger]
                figures.points_with_error_bars(axis, part[f"{metric}_mean"], 100 * part["asr_mean"],
                                               (part[f"{metric}_lo"], part[f"{metric}_hi"]),
                                               (100 * part["asr_lo"], 100 * part["asr_hi"]), figures.colour(index),
                                               trigger if metric == "psnr" else None,
                                               figures.MARKERS[index % len(figures.MARKERS)])
            figures.percent_axis(axis, "y")
            axis.set_xlabel(label + " → less visible")
            axis.set_ylabel("ASR before defense (%)")
        axes[0].legend(loc="lower left", title="Attack", fontsize=8)
        svg = figures.to_svg(figure)
    caption = ("A point per attack setting (attack, parameters and poison %): its poisons' mean PSNR and SSIM "
               "against their originals, and the backdoored models' ASR; bars: 95 % intervals over seeds. Up and "
               "to the right is an attack that works and is hard to see.")
    if unchanged:
        caption += f" {unchanged} settings whose poisons are unchanged images (PSNR +inf) appear in the SSIM panel only."
    if len(triggers) > MAX_LINES:
        caption += f" Only the first {MAX_LINES} of {len(triggers)} attacks are drawn; the table has them all."
    return Figure("visibility", "Attack success against visibility", svg, caption)


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
