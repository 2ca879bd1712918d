"""Section "Detection": what the training-set filters removed, per model and pooled, the ROC of every
filter that records one, and what the input filters rejected at inference.

Which steps are filters is the registry's word (their kind, :mod:`orchestrator.report.methods`), not
a list of names: a plugin's filter has its rows here like a built-in's.

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
from orchestrator.report.methods import INPUT_FILTER, MODEL_INSPECTION, TRAINING_SET_FILTER, defenses, kind_sql
from orchestrator.report.model import Figure, Paragraph, ReportContext, Section, Table
from orchestrator.report.sections.reversed_triggers import reversed_trigger_figure
from orchestrator.report.sections.settings import (
    estimate_cells,
    file_stem,
    heading,
    panel_title,
    pipeline_order,
    quote,
    pooled_cells,
    rate_cells,
    select_panel,
    setting_columns,
    shown_keys,
)
from orchestrator.report.stats import aggregate, detection_rates, format_estimate

COUNTS = {"removed_poisoned", "removed_clean", "n_seen", "n_poisoned"}
MAX_PANELS = 6
SCORE_LABELS = {"art": "ART score (un-centred)", "centered": "centred score (Tran et al.)"}
ROC_METRICS = {"roc_fpr", "roc_tpr", "auroc"}  # a filter that declares these gets its ROC drawn
REJECTIONS = {"input_frr", "input_tpr"}  # an input filter's kind metrics
INSPECTED = {"target_flagged", "target_rank", "target_score", "n_flagged_classes"}  # a model inspection's
# An input filter that sets a threshold on clean images declares how many (strip does); a threshold
# set on fewer than FEW_CALIBRATION_IMAGES is named under the table: its false-rejection rate is loose.
CALIBRATION_N, FEW_CALIBRATION_IMAGES = "calibration_n", 200


def section(context: ReportContext) -> Section | None:
    """None when no training-set filter and no input filter ran."""
    columns = context.columns("stages")
    counts = detection_counts(context) if COUNTS | {"defense"} <= columns else pd.DataFrame()
    blocks: list = []
    if not counts.empty:
        blocks += [
            Paragraph("What each training-set filter configuration removed from the training set of every "
                      "backdoored model it ran on (a model: one attack setting and seed). TP: poisoned samples "
                      "removed; FP: clean samples removed; FN: poisoned samples kept; TN: clean samples kept. TPR = "
                      "TP / (TP + FN), FPR = FP / (FP + TN), precision = TP / (TP + FP), F1 = 2 TP / (2 TP + FP + "
                      "FN). A configuration with two filtering steps has a row per step: the second sees only what "
                      "the first kept."),
            Paragraph(INTERVALS),
            rates_table(counts),
            counts_table(counts),
        ]
        if {"roc_fpr", "roc_tpr"} <= columns:
            blocks += [figure for defense in roc_defenses(context)
                       if (figure := roc_figure(context, counts, defense)) is not None]
    blocks += input_filter_blocks(context)
    blocks += inspection_blocks(context)
    if not blocks:
        return None
    return Section("detection", "Detection: what the filters removed or rejected, what the inspections flagged", blocks)


INTERVALS = (
    "How the intervals are taken. The samples of one model are not independent: they share its training run "
    "and its features, so a filter catches or misses them together. Each rate is therefore computed once per "
    "model, and the table gives the mean over models with a 95 % Student-t interval, mean ± t(0.975, n − 1) · "
    "s / √n, where n is the number of models (not of samples) and s the standard deviation of the models' "
    "rates. With one model there is no interval: the cell says (n = 1). The counts summed over all models "
    "(pooled, e.g. 37/42 poisons removed) stand beside each rate; they say how much was removed in total, not "
    "how certain the rate is.")


def input_filter_rates(context: ReportContext) -> pd.DataFrame:
    """Per (dataset, model, pipeline, position, defense) of the input-filter steps: the shares of clean and
    of triggered test inputs rejected, the AUROC of the filter's score, and clean accuracy and ASR served
    (a rejected input is neither correct nor a backdoor success), each averaged per backdoored model
    (attack setting and seed) first, then over models: ``<metric>_mean/_lo/_hi/_n`` with a 95 %
    Student-t interval, n = models; the backdoored models' ASR before any defense (``asr_before``)
    beside them. Empty when no input filter ran."""
    columns = context.columns("stages")
    if not REJECTIONS | {"defense", "position"} <= columns:
        return pd.DataFrame()
    metrics = [m for m in ("input_frr", "input_tpr", "input_auroc", "served_clean_acc", "asr_before", "served_asr",
                           CALIBRATION_N) if m in columns]
    return step_estimates(context, INPUT_FILTER, ["dataset", "model", "pipeline", "position", "defense"], metrics)


def step_estimates(context: ReportContext, kind: str, group: list[str], metrics: list[str],
                   where: str = "TRUE") -> pd.DataFrame:
    """Per ``group`` of the defense steps of ``kind`` on backdoored models (and ``where``): each of
    ``metrics`` averaged per model (attack setting and seed; NaN left out) first, then over models,
    ``<metric>_mean/_lo/_hi/_n`` with a 95 % Student-t interval, n = models; configurations in reading order."""
    keys = ", ".join(quote(k) for k in dict.fromkeys([*group, *setting_columns(context), "seed"]))
    means = ", ".join(f"avg(CASE WHEN isnan({quote(m)}::DOUBLE) THEN NULL ELSE {quote(m)}::DOUBLE END) AS {quote(m)}"
                      for m in metrics)
    per_model = (f"(SELECT {keys}, {means} FROM stages WHERE {kind_sql(context.columns('stages'))} = '{kind}' "
                 f"AND poison_pct > 0 AND {where} GROUP BY {keys})")
    frame = aggregate(context.connection, per_model, group, metrics)
    if frame.empty:
        return frame
    rank = {p: i for i, p in enumerate(pipeline_order(frame["pipeline"]))}
    return frame.sort_values(group, key=lambda c: c.map(rank) if c.name == "pipeline" else c).reset_index(drop=True)


def inspection_results(context: ReportContext) -> pd.DataFrame:
    """Per (dataset, model, setting columns, pipeline, position, defense) of the model-inspection steps on
    backdoored models: the share of models whose target class was flagged (``target_flagged``), the
    target's rank by suspicion among the classes (1 = most suspicious), its score, and how many classes
    were flagged, each averaged per model (seed) first: ``<metric>_mean/_lo/_hi/_n`` with a 95 %
    Student-t interval, n = models; ``asr_before`` beside them. Empty when no inspection ran."""
    columns = context.columns("stages")
    if not INSPECTED | {"defense", "position"} <= columns:
        return pd.DataFrame()
    metrics = ["target_flagged", "target_rank", "target_score", "n_flagged_classes", "asr_before"]
    group = list(dict.fromkeys(["dataset", "model", *setting_columns(context), "pipeline", "position", "defense"]))
    return step_estimates(context, MODEL_INSPECTION, group, metrics, where="target_flagged IS NOT NULL")


def inspection_blocks(context: ReportContext) -> list:
    """A paragraph and a table of what each model-inspection configuration flagged; [] when none ran."""
    found = inspection_results(context)
    if found.empty:
        return []
    shown = shown_keys(found, [k for k in setting_columns(context)], keep=("trigger", "poison_pct"))
    shown[heading("pipeline")] = found["pipeline"]
    shown["Models"] = found["target_flagged_n"].astype(str)
    shown["ASR before (%)"] = estimate_cells(found, "asr_before")
    shown["Target flagged (%)"] = estimate_cells(found, "target_flagged")
    shown["Target's rank"] = estimate_cells(found, "target_rank", scale=1.0, digits=1, bounds=(1.0, np.inf))
    shown["Target's score"] = estimate_cells(found, "target_score", scale=1.0, digits=2, bounds=None)
    shown["Classes flagged"] = estimate_cells(found, "n_flagged_classes", scale=1.0, digits=1, bounds=(0.0, np.inf))
    return [
        Paragraph("Model inspections score every class of a model and flag the suspicious ones (Neural Cleanse: the "
                  "anomaly index of the class's reversed trigger). Per attack setting and configuration, over the "
                  "backdoored models (seeds): the share of models whose attack target was flagged, the target's rank "
                  "among the classes by score (1 = the most suspicious class; ties share the better rank), its score, "
                  "and how many classes were flagged in all (a flagged class that is not the target is a false "
                  "flag). Mean [95 % Student-t interval] n = models."),
        Table("detection_inspections", "Model inspections: was the target flagged, and where did it rank", shown, found,
              "Mean [95 % Student-t interval over models] n = models; the share flagged in percent. A target ranked 1 "
              "but not flagged was the most suspicious class without crossing the threshold."),
        *([figure] if (figure := reversed_trigger_figure(context)) is not None else []),
    ]


def input_filter_blocks(context: ReportContext) -> list:
    """A paragraph and a table of what each input-filter configuration rejected; [] when none ran."""
    rates = input_filter_rates(context)
    if rates.empty:
        return []
    shown = _keys(rates)
    shown["Models"] = rates["input_frr_n"].astype(str)
    titles = {"input_frr": "Clean rejected (%)", "input_tpr": "Triggered rejected (%)",
              "input_auroc": "AUROC (%)", "served_clean_acc": "Clean acc. served (%)",
              "asr_before": "ASR before any defense (%)", "served_asr": "ASR served (%)"}
    for metric, title in titles.items():
        if f"{metric}_mean" in rates:
            shown[title] = estimate_cells(rates, metric)
    few = rates[rates[f"{CALIBRATION_N}_mean"] < FEW_CALIBRATION_IMAGES] if f"{CALIBRATION_N}_mean" in rates else rates[:0]
    caveat = [Paragraph(
        "Thresholds set on few clean images: " + "; ".join(
            f"{row.pipeline} on {row.dataset} set its threshold on {row[f'{CALIBRATION_N}_mean']:.0f} clean "
            f"calibration images" for _, row in few.iterrows())
        + f" (fewer than {FEW_CALIBRATION_IMAGES}): the share of clean inputs it rejects can be far from the share "
          "it was set for.")] if len(few) else []
    return [
        Paragraph("Input filters decide at inference which test inputs the model serves. Per configuration: the "
                  "share of clean test inputs it rejected (false rejections, a cost) and of triggered test inputs "
                  "it rejected (detections), the AUROC of its score (triggered against clean inputs; blank for a "
                  "filter without a score), and clean accuracy and ASR served with the filter in place, where a "
                  "rejected input counts as neither correct nor a backdoor success. Each share is taken per backdoored "
                  "model (attack setting and seed) and averaged over models: mean [95 % Student-t interval] "
                  "n = models."),
        Table("detection_input_filters", "Input filters: clean and triggered test inputs rejected, per configuration",
              shown, rates,
              "Mean [95 % Student-t interval over models] n = models, in percent; (n = 1): one model. A filter that "
              "rejects triggered inputs far more often than clean ones separates them; its clean-rejection share "
              "is what it costs every user. Models: backdoored models (attack settings × seeds) the step ran on."),
        *caveat,
    ]


def detection_counts(context: ReportContext) -> pd.DataFrame:
    """:func:`detection_rates` per (dataset, model, pipeline, position, defense) of the filtering steps,
    a model being an attack setting (:func:`setting_columns`) and a seed; configurations in reading order."""
    filters = f"{kind_sql(context.columns('stages'))} = '{TRAINING_SET_FILTER}'"
    frame = detection_rates(context.connection, "stages", ["dataset", "model", "pipeline", "position", "defense"],
                            [*setting_columns(context), "seed"], where=filters)
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
    return Table("detection_rates", "Detection rates per training-set filter configuration: mean over models", shown, data,
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
    return Table("detection_counts", "Detection counts per training-set filter configuration, summed over models; "
                 "precision and F1", shown, data,
                 "Summed over every model the configuration ran on: TP + FN = poisoned samples seen, FP + TN = clean "
                 "samples seen. Precision and F1: per model, mean [95 % Student-t interval over models] n = models "
                 "(a model that removed nothing has no precision).")


def roc_defenses(context: ReportContext) -> list[str]:
    """The filters that declare a ROC (``roc_fpr``, ``roc_tpr``, ``auroc``) and recorded one in these rows."""
    declaring = [name for name, info in defenses().items()
                 if info.kind == TRAINING_SET_FILTER and ROC_METRICS <= {metric[0] for metric in info.metrics}]
    if not declaring:
        return []
    names = ", ".join("'" + name.replace("'", "''") + "'" for name in declaring)
    ran = set(context.frame(f"SELECT DISTINCT defense FROM stages WHERE defense IN ({names}) "
                            "AND roc_fpr IS NOT NULL")["defense"])
    return [name for name in declaring if name in ran]


def roc_figure(context: ReportContext, counts: pd.DataFrame, defense: str | None = None) -> Figure | None:
    """A filter's ROC per attack setting (the first of :func:`roc_defenses` by default): the mean curve
    of each score kind (its ``score`` parameter, where it has one), and every configuration's operating point.

    The ROC of one model does not depend on the filter's removal share, only on its score, so the curve is
    taken once per model (attack setting with every column that sets a model apart, seed, score,
    layer, what earlier steps kept) however many configurations ran on it; curves are averaged at
    equal removal shares (threshold averaging). With more than ``MAX_PANELS`` attack settings, panels
    pool settings: first over triggers, then over all but dataset and model, and the caption says so.
    """
    if defense is None:
        found = roc_defenses(context)
        if not found:
            return None
        defense = found[0]
    named = "'" + defense.replace("'", "''") + "'"
    columns = context.columns("stages")
    score = quote("score") if "score" in columns else "'–'"
    layer = quote("layer") if "layer" in columns else "NULL"
    keys = setting_columns(context)
    settings = context.frame(f"SELECT DISTINCT {', '.join(quote(k) for k in keys)} FROM stages "
                             f"WHERE defense = {named} AND roc_fpr IS NOT NULL")
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
              f"any_value(auroc) AS auroc FROM stages WHERE defense = {named} AND roc_fpr IS NOT NULL "
              f"GROUP BY {model_sql}, {score}, {layer}, position, {prefix})")
    curves = context.frame(
        f"SELECT {keys_sql}, score, i, avg(f) FILTER (WHERE NOT isnan(f)) AS fpr, "
        f"avg(t) FILTER (WHERE NOT isnan(t)) AS tpr FROM ("
        f"SELECT {keys_sql}, score, unnest(range(len(roc_fpr))) AS i, unnest(roc_fpr) AS f, unnest(roc_tpr) AS t "
        f"FROM {models}) GROUP BY {keys_sql}, score, i ORDER BY {keys_sql}, score, i")
    auroc = aggregate(context.connection, models, [*panel_keys, "score"], ["auroc"])
    operating = detection_rates(context.connection,
                                f"(SELECT *, {score} AS score_kind FROM stages WHERE defense = {named})",
                                [*panel_keys, "score_kind", "pipeline", "position"], [*keys, "seed"])
    operating = operating.rename(columns={"score_kind": "score"})
    panels = curves[panel_keys].drop_duplicates().reset_index(drop=True)
    scores = sorted(curves["score"].dropna().unique())
    shown_keys_ = [k for k in panel_keys if panels[k].nunique() > 1] or panel_keys[-1:]
    drawn = panels.iloc[:MAX_PANELS]
    stem = file_stem(defense, "roc")
    with figures.panels(len(drawn), max_columns=2, panel_size=(4.2, 3.5), name=stem) as (figure, axes):
        for axis, (_, panel) in zip(axes, drawn.iterrows()):
            for index, kind in enumerate(scores):
                mine = select_panel(curves, panel, panel_keys)
                mine = mine[mine["score"] == kind]
                stats = select_panel(auroc, panel, panel_keys)
                stats = stats[stats["score"] == kind]
                label = SCORE_LABELS.get(kind, str(kind)) if len(scores) > 1 or kind != "–" else defense
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
            if axis.get_legend_handles_labels()[0]:  # a panel whose scores have no curve draws none
                axis.legend(loc="lower right", fontsize=7.5)
        svg = figures.to_svg(figure)
    caption = (f"Lines: ROC of {defense}'s score as the share removed from every class grows from 0 to 100 %, "
               f"averaged at equal shares over the models of the panel (one curve per model, however many {defense} "
               f"configurations ran on it); AUROC: mean [95 % CI] n = models. Circles: each {defense} configuration's "
               "operating point (its FPR and TPR, each the mean over the panel's models). Dotted: chance.")
    if pooled:
        caption += (f" Panels pool the attack settings that differ only in {', '.join(pooled)}, to keep at most "
                    f"{MAX_PANELS} panels; their AUROC intervals then mix seed-to-seed with setting-to-setting "
                    "spread.")
    if len(panels) > MAX_PANELS:
        caption += f" Only the first {MAX_PANELS} of {len(panels)} panels are drawn."
    return Figure(stem, f"{defense}: ROC and operating points", svg, caption)
