"""Section "Detection": what the filtering defenses removed, per model and pooled, and the ROC of
Spectral Signatures.

The unit of a detection rate's interval is the backdoored model (an attack setting and a seed), not
the sample: the samples one model saw share its training and its features, so a filter catches or
misses them together. Each rate is computed per model and averaged over models with a Student-t
interval, n = models (:func:`~orchestrator.report.stats.detection_rates`); the counts summed over
every model stay beside it as counts, so a reader sees both what was removed in total and how much
the rate varies from model to model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator.report import figures
from orchestrator.report.model import Figure, Paragraph, ReportContext, Section, Table
from orchestrator.report.sections.settings import (
    heading,
    panel_title,
    pipeline_order,
    quote,
    pooled_cells,
    rate_cells,
    select_panel,
    setting_columns,
)
from orchestrator.report.stats import aggregate, detection_rates, format_estimate

FILTERS = ("ac", "ss", "dp", "perfect_filter", "random_filter")
COUNTS = {"removed_poisoned", "removed_clean", "n_seen", "n_poisoned"}
MAX_PANELS = 6
SCORE_LABELS = {"art": "ART score (un-centred)", "centered": "centred score (Tran et al.)"}


def section(context: ReportContext) -> Section | None:
    """None when no filtering defense ran (no detection counts in the stages view)."""
    columns = context.columns("stages")
    if not COUNTS | {"defense"} <= columns:
        return None
    counts = detection_counts(context)
    if counts.empty:
        return None
    blocks = [
        Paragraph("What each filtering configuration removed from the training set of every backdoored model it "
                  "ran on (a model: one attack setting and seed). TP: poisoned samples removed; FP: clean samples "
                  "removed; FN: poisoned samples kept; TN: clean samples kept. TPR = TP / (TP + FN), FPR = FP / "
                  "(FP + TN), precision = TP / (TP + FP), F1 = 2 TP / (2 TP + FP + FN). A configuration with two "
                  "filtering steps has a row per step: the second sees only what the first kept."),
        Paragraph("How the intervals are taken. The samples of one model are not independent: they share its "
                  "training run and its features, so a filter catches or misses them together. Each rate is "
                  "therefore computed once per model, and the table gives the mean over models with a 95 % "
                  "Student-t interval, mean ± t(0.975, n − 1) · s / √n, where n is the number of models (not "
                  "of samples) and s the standard deviation of the models' rates. With one model there is no "
                  "interval: the cell says (n = 1). The counts summed over all models (pooled, e.g. 37/42 "
                  "poisons removed) stand beside each rate; they say how much was removed in total, not how "
                  "certain the rate is."),
        rates_table(counts),
        counts_table(counts),
    ]
    if {"roc_fpr", "roc_tpr"} <= columns:
        roc = roc_figure(context, counts)
        if roc is not None:
            blocks.append(roc)
    return Section("detection", "Detection: what the filtering defenses removed", blocks)


def detection_counts(context: ReportContext) -> pd.DataFrame:
    """:func:`detection_rates` per (dataset, model, pipeline, position, defense) of the filtering steps,
    a model being an attack setting (:func:`setting_columns`) and a seed; configurations in reading order."""
    names = ", ".join(f"'{name}'" for name in FILTERS)
    frame = detection_rates(context.connection, "stages", ["dataset", "model", "pipeline", "position", "defense"],
                            [*setting_columns(context), "seed"], where=f"defense IN ({names})")
    if frame.empty:
        return frame
    rank = {p: i for i, p in enumerate(pipeline_order(frame["pipeline"]))}
    return frame.sort_values(["dataset", "model", "pipeline", "position"],
                             key=lambda c: c.map(rank) if c.name == "pipeline" else c).reset_index(drop=True)


def _keys(counts: pd.DataFrame) -> pd.DataFrame:
    shown = {}
    for column in ("dataset", "model"):
        if counts[column].nunique() > 1:
            shown[heading(column)] = counts[column]
    shown[heading("pipeline")] = counts["pipeline"]
    shown["Step"] = [f"{position}:\u00a0{defense}" for position, defense in zip(counts["position"], counts["defense"])]
    return pd.DataFrame(shown)


def _percent(value: float) -> str:
    return "–" if np.isnan(value) else f"{100 * value:.1f}"


def rates_table(counts: pd.DataFrame) -> Table:
    """Per configuration step: TPR, FPR and the share removed, each the mean over models with its t
    interval and n, the pooled counts of TPR and FPR beside them, and the number of models (precision
    and F1 are in :func:`counts_table`, to keep this table within a page's width)."""
    shown = _keys(counts)
    shown["Models"] = counts["models"].astype(str)
    shown["TPR (%)"] = rate_cells(counts, "tpr")
    shown["TP / poisoned, pooled"] = pooled_cells(counts, "tpr")
    shown["FPR (%)"] = rate_cells(counts, "fpr")
    shown["FP / clean, pooled"] = pooled_cells(counts, "fpr")
    shown["Removed (%)"] = rate_cells(counts, "removed_share")
    rates = [f"{rate}{part}" for rate in ("tpr", "fpr", "removed_share") for part in ("", "_lo", "_hi", "_n", "_pooled")]
    data = counts[["dataset", "model", "pipeline", "position", "defense", "models", "runs", "tp", "fp", "fn", "tn",
                   *rates]]
    return Table("detection_rates", "Detection rates per filtering configuration: mean over models", shown, data,
                 "Each rate computed per backdoored model, then mean [95 % Student-t interval over models] n = models "
                 "(not samples); (n = 1): one model, no interval; an interval of zero width: every model had the "
                 "same rate. Pooled: counts summed over all models, hits / total. Removed: share of the training set "
                 "the step removed. Models: backdoored models (attack settings × seeds) the step ran on; a rate's n "
                 "can be smaller (a model trained without poisons has no TPR).")


def counts_table(counts: pd.DataFrame) -> Table:
    """The confusion counts summed over models, and precision and F1 as means over models."""
    shown = _keys(counts)
    for column in ("tp", "fp", "fn", "tn"):
        shown[column.upper()] = [f"{value:,}" for value in counts[column]]
    shown["Precision (%)"] = rate_cells(counts, "precision")
    shown["F1 (%)"] = rate_cells(counts, "f1")
    shown["Models"] = counts["models"].astype(str)
    rates = [f"{rate}{part}" for rate in ("precision", "f1") for part in ("", "_lo", "_hi", "_n", "_pooled")]
    data = counts[["dataset", "model", "pipeline", "position", "defense", "tp", "fp", "fn", "tn", "seen", "runs",
                   "models", *rates]]
    return Table("detection_counts", "Detection counts per filtering configuration, summed over models; "
                 "precision and F1", shown, data,
                 "Summed over every model the configuration ran on: TP + FN = poisoned samples seen, FP + TN = clean "
                 "samples seen. Precision and F1: per model, mean [95 % Student-t interval over models] n = models "
                 "(a model that removed nothing has no precision).")


def roc_figure(context: ReportContext, counts: pd.DataFrame) -> Figure | None:
    """Spectral Signatures' ROC per attack setting: the mean curve of each score kind, and every SS
    configuration's operating point.

    The ROC of one model does not depend on SS's removal share, only on its score, so the curve is
    taken once per model (attack setting with every column that sets a model apart, seed, score,
    layer, what earlier steps kept) however many SS configurations ran on it; curves are averaged at
    equal removal shares (threshold averaging). With more than ``MAX_PANELS`` attack settings, panels
    pool settings: first over triggers, then over all but dataset and model, and the caption says so.
    """
    columns = context.columns("stages")
    score = quote("score") if "score" in columns else "'art'"
    layer = quote("layer") if "layer" in columns else "NULL"
    keys = setting_columns(context)
    settings = context.frame(f"SELECT DISTINCT {', '.join(quote(k) for k in keys)} FROM stages "
                             "WHERE defense = 'ss' AND roc_fpr IS NOT NULL")
    if settings.empty:
        return None
    for panel_keys in (keys, [k for k in keys if k != "trigger"], ["dataset", "model"]):
        if len(settings[panel_keys].drop_duplicates()) <= MAX_PANELS:
            break
    by_panel = settings.groupby(panel_keys, dropna=False)
    pooled = [heading(k).lower() for k in keys if k not in panel_keys and by_panel[k].nunique(dropna=False).max() > 1]
    keys_sql = ", ".join(quote(k) for k in panel_keys)
    model_sql = ", ".join(quote(k) for k in [*keys, "seed"])
    prefix = "array_to_string(list_slice(string_split(pipeline, '>'), 1, position - 1), '>')"
    models = (f"(SELECT {keys_sql}, {score} AS score, any_value(roc_fpr) AS roc_fpr, any_value(roc_tpr) AS roc_tpr, "
              f"any_value(auroc) AS auroc FROM stages WHERE defense = 'ss' AND roc_fpr IS NOT NULL "
              f"GROUP BY {model_sql}, {score}, {layer}, position, {prefix})")
    curves = context.frame(
        f"SELECT {keys_sql}, score, i, avg(f) FILTER (WHERE NOT isnan(f)) AS fpr, "
        f"avg(t) FILTER (WHERE NOT isnan(t)) AS tpr FROM ("
        f"SELECT {keys_sql}, score, unnest(range(len(roc_fpr))) AS i, unnest(roc_fpr) AS f, unnest(roc_tpr) AS t "
        f"FROM {models}) GROUP BY {keys_sql}, score, i ORDER BY {keys_sql}, score, i")
    auroc = aggregate(context.connection, models, [*panel_keys, "score"], ["auroc"])
    operating = detection_rates(context.connection,
                                f"(SELECT *, {score} AS score_kind FROM stages WHERE defense = 'ss')",
                                [*panel_keys, "score_kind", "pipeline", "position"], [*keys, "seed"])
    operating = operating.rename(columns={"score_kind": "score"})
    panels = curves[panel_keys].drop_duplicates().reset_index(drop=True)
    scores = sorted(curves["score"].dropna().unique())
    shown_keys_ = [k for k in panel_keys if panels[k].nunique() > 1] or panel_keys[-1:]
    drawn = panels.iloc[:MAX_PANELS]
    with figures.panels(len(drawn), max_columns=2, panel_size=(4.2, 3.5), name="ss_roc") as (figure, axes):
        for axis, (_, panel) in zip(axes, drawn.iterrows()):
            for index, kind in enumerate(scores):
                mine = select_panel(curves, panel, panel_keys)
                mine = mine[mine["score"] == kind]
                stats = select_panel(auroc, panel, panel_keys)
                stats = stats[stats["score"] == kind]
                label = SCORE_LABELS.get(kind, str(kind))
                if not stats.empty:
                    row = stats.iloc[0]
                    label += ", AUROC " + format_estimate(row["auroc_mean"], max(row["auroc_lo"], 0.0),
                                                          min(row["auroc_hi"], 1.0), int(row["auroc_n"]),
                                                          scale=1.0, digits=2)
                axis.plot(100 * mine["fpr"], 100 * mine["tpr"], color=figures.colour(index), label=label)
                points = select_panel(operating, panel, panel_keys)
                points = points[points["score"] == kind]
                axis.scatter(100 * points["fpr"], 100 * points["tpr"], s=16, facecolors="none",
                             edgecolors=figures.colour(index), linewidths=0.9, zorder=3)
            axis.plot([0, 100], [0, 100], color=figures.GREY, linestyle=":", linewidth=0.9)
            figures.percent_axis(axis, "x")
            figures.percent_axis(axis, "y")
            axis.set_xlabel("FPR: clean samples removed (%)")
            axis.set_ylabel("TPR: poisons removed (%)")
            axis.set_title(panel_title(panel, shown_keys_))
            axis.legend(loc="lower right", fontsize=7.5)
        svg = figures.to_svg(figure)
    caption = ("Lines: ROC of Spectral Signatures' score as the share removed from every class grows from 0 to 100 %, "
               "averaged at equal shares over the models of the panel (one curve per model, however many SS "
               "configurations ran on it); AUROC: mean [95 % CI] n = models. Circles: each SS configuration's "
               "operating point (its FPR and TPR, each the mean over the panel's models). Dotted: chance.")
    if pooled:
        caption += (f" Panels pool the attack settings that differ only in {', '.join(pooled)}, to keep at most "
                    f"{MAX_PANELS} panels; their AUROC intervals then mix seed-to-seed with setting-to-setting "
                    "spread.")
    if len(panels) > MAX_PANELS:
        caption += f" Only the first {MAX_PANELS} of {len(panels)} panels are drawn."
    return Figure("ss_roc", "Spectral Signatures: ROC and operating points", svg, caption)
