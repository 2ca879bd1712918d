"""Section "Beside the thesis" (the thesis study): the thesis's numbers next to the sweep's, wherever
the sweep ran the same setting.

Each thesis table (backdoored models 4.1 with the poison sweeps A.1/A.2, clean models 3.5, Activation
Clustering 4.2/4.3, Fine-Pruning 4.5/4.6, combinations 4.7–4.9) is matched on dataset, model, trigger
and poison percentage, and on the defense parameters it fixes. The thesis printed percentages; ours
are fractions, shown ×100. Bundled datasets stand beside the real ones they imitate, labelled as
analogues: ``synthetic_signs`` beside GTSRB, ``synthetic_faces`` beside YouTube Faces and LFW (any
model: the thesis ran DeepID and VGG16 on those).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator.report.model import Paragraph, ReportContext, Section, Table
from orchestrator.report.sections.settings import (
    CORE,
    backdoored_models_sql,
    estimate_cells,
    file_stem,
    format_value,
    heading,
    quote,
    rate_cells,
    setting_columns,
)
from orchestrator.report.stats import aggregate, detection_rates
from orchestrator.studies.thesis.reference import load_reference, thesis_settings
from orchestrator.studies.thesis.setup import AC, DATASET_MATCHES, FP_THRESHOLD, ac_setup_sql


def section(context: ReportContext) -> Section | None:
    """None when the sweep ran none of the thesis's settings (nor an analogue of one)."""
    if not {"n_defenses", "asr_before", "clean_acc_before"} <= context.columns("results"):
        return None
    keys = setting_columns(context)
    comparisons = [
        ("backdoored", "Backdoored models (Tables 4.1, A.1, A.2)", _backdoored(context, keys)),
        ("clean", "Clean models (Table 3.5)", _clean(context, keys)),
        ("activation_clustering", "Activation Clustering (Tables 4.2, 4.3)", _activation_clustering(context, keys)),
        ("fine_pruning", "Fine-Pruning (Tables 4.5, 4.6)", _fine_pruning(context, keys)),
        ("combinations", "Combinations of AC and FP (Tables 4.7, 4.9)", _combinations(context, keys)),
    ]
    tables = [_table(name, title, rows) for name, title, rows in comparisons if rows is not None and len(rows)]
    if not tables:
        return None
    analogue = any(table.data["analogue"].any() for table in tables)
    blocks: list = [Paragraph(
        "The thesis's numbers (percent, as printed) beside this sweep's (fractions shown as percent): mean "
        "[95 % CI] n = seeds; detection rates are computed per model (seed) and averaged the same way, with the "
        "counts summed over seeds beside them (removed / total), as the thesis counted them. "
        "Difference = ours − thesis in percentage points. 'Thesis inside our CI' says whether the thesis's "
        "value lies within our interval; with one seed there is no interval. The thesis trained one model per "
        "setting, so its numbers carry their own, unknown, seed-to-seed spread. Activation Clustering, alone or "
        "in a combination, is matched only where it ran as in the thesis: without exclusionary "
        "reclassification, retraining from scratch.")]
    if analogue:
        blocks.append(Paragraph(
            "Rows marked ANALOGUE are not the thesis's data: the bundled synthetic_signs (GTSRB-like signs) stands "
            "beside GTSRB and synthetic_faces beside YouTube Faces and LFW, with the same trigger and poison "
            "percentage. They show whether a trend carries over, not whether the thesis replicates."))
    return Section("thesis", "Beside the thesis: its tables next to this sweep", blocks + tables)


def _backdoored(context: ReportContext, keys: list[str]) -> pd.DataFrame:
    """Backdoored models before any defense: clean accuracy and ASR, one value per trained model
    (attack setting and seed), however many defenses ran on it."""
    models = backdoored_models_sql(keys, ["clean_acc_before", "asr_before"])
    ours = aggregate(context.connection, models, keys, ["clean_acc_before", "asr_before"])
    models = load_reference("models").merge(thesis_settings(), on=["model_id", "dataset", "model", "trigger"])
    sweep = load_reference("poison_sweep").rename(columns={"poison_pct_of_source": "poison_pct"})
    sweep["model_id"] = (sweep["dataset"] + " · " + sweep["trigger"] + " · "
                         + sweep["poison_pct"].map(lambda pct: f"{pct:g} %"))
    sweep["thesis_table"] = np.where(sweep["dataset"] == "gtsrb", "Table A.2", "Table A.1")
    thesis = pd.concat([models.assign(thesis_table="Table 4.1"), sweep], ignore_index=True)
    thesis["poison_pct"] = thesis["poison_pct"].astype(float)
    metrics = [("clean accuracy", "clean_acc", "clean_acc_before", None),
               ("ASR (backdoor success)", "backdoor_success", "asr_before", None)]
    return _compare(ours, thesis, keys, ["trigger", "poison_pct"], metrics)


def _clean(context: ReportContext, keys: list[str]) -> pd.DataFrame:
    """Models trained without poison (poison_pct 0): clean accuracy, one value per trained model."""
    # Without poison the trigger changes no image: one model per seed, whatever trigger the row names.
    unpoisoned = [k for k in keys if k not in ("trigger", "poison_pct")]
    models = backdoored_models_sql(unpoisoned, ["clean_acc_before"], where="poison_pct = 0")
    ours = aggregate(context.connection, models, unpoisoned, ["clean_acc_before"])
    thesis = load_reference("clean_models").assign(thesis_table="Table 3.5")
    thesis["model_id"] = thesis["dataset"] + " / " + thesis["model"]
    return _compare(ours, thesis, unpoisoned, [], [("clean accuracy", "clean_acc", "clean_acc_before", None)])


def _activation_clustering(context: ReportContext, keys: list[str]) -> pd.DataFrame | None:
    """AC alone with the thesis's setup: no exclusionary reclassification, retraining from scratch."""
    columns = context.columns("results")
    if not {"d1_name", "d1_cluster_analysis"} <= columns:
        return None
    thesis_setup = f"n_defenses = 1 AND d1_name = 'ac' AND {ac_setup_sql(1, columns)}"
    counts = {"d1_removed_poisoned", "d1_n_poisoned", "d1_removed_clean", "d1_n_seen"} <= columns
    source = (f"(SELECT {_select(keys)}, seed, pipeline, d1_cluster_analysis AS cluster_analysis, asr_after, "
              "clean_acc_after" + (", d1_removed_poisoned AS removed_poisoned, d1_n_poisoned AS n_poisoned, "
                                   "d1_removed_clean AS removed_clean, d1_n_seen AS n_seen" if counts else "")
              + f" FROM results WHERE {thesis_setup})")
    ours = _estimates(context, source, [*keys, "pipeline", "cluster_analysis"], ["clean_acc_after", "asr_after"],
                      counts)
    thesis = load_reference("activation_clustering").merge(thesis_settings(), on="model_id")
    thesis["thesis_table"] = "Tables 4.2, 4.3"
    thesis["tpr"] = 100 * thesis["removed_poisoned"] / thesis["n_poisoned"]
    metrics = [("clean accuracy after", "clean_acc_after", "clean_acc_after", None),
               ("ASR after", "backdoor_success_after", "asr_after", None)]
    if counts:
        metrics += [("TPR (poisoned removed)", "tpr", "tpr", ("tp", "poisoned")),
                    ("training set removed", "removed_total_pct", "removed_share", ("removed", "seen"))]
    return _compare(ours, thesis, keys, ["trigger", "poison_pct", "cluster_analysis"], metrics)


def _fine_pruning(context: ReportContext, keys: list[str]) -> pd.DataFrame | None:
    """FP alone per layer and threshold."""
    columns = context.columns("results")
    if not {"d1_name", "d1_layer", "d1_threshold"} <= columns:
        return None
    pruned = ("d1_pruned_channels::DOUBLE / nullif(d1_layer_width, 0) AS pruned_share"
              if {"d1_pruned_channels", "d1_layer_width"} <= columns else "NULL::DOUBLE AS pruned_share")
    source = (f"(SELECT {_select(keys)}, pipeline, d1_layer AS layer, round(d1_threshold * 100, 6) AS "
              f"threshold_pct, asr_after, clean_acc_after, {pruned} FROM results "
              "WHERE n_defenses = 1 AND d1_name = 'fp')")
    ours = _estimates(context, source, [*keys, "pipeline", "layer", "threshold_pct"],
                      ["clean_acc_after", "asr_after", "pruned_share"])
    thesis = load_reference("fine_pruning").merge(thesis_settings(), on="model_id")
    thesis["thesis_table"] = np.where(thesis["layer"] == "last_conv", "Table 4.6", "Table 4.5")
    thesis["threshold_pct"] = thesis["threshold_pct"].astype(float)
    thesis["pruned_share"] = 100 * thesis["removed_neurons"] / thesis["layer_width"]
    metrics = [("clean accuracy after", "clean_acc_after", "clean_acc_after", None),
               ("ASR after", "backdoor_success_after", "asr_after", None),
               ("channels pruned (% of layer)", "pruned_share", "pruned_share", None)]
    return _compare(ours, thesis, keys, ["trigger", "poison_pct", "layer", "threshold_pct"], metrics)


def _combinations(context: ReportContext, keys: list[str]) -> pd.DataFrame | None:
    """AC (smaller) then FP, and FP then AC, FP at the thesis's 4 % threshold."""
    columns = context.columns("results")
    if not {"d1_name", "d2_name"} <= columns:
        return None

    def column(name: str) -> str:
        # A chain's columns exist only for the defenses some row ran at that position.
        return name if name in columns else "NULL"

    # The thesis's size-based AC, run as in _activation_clustering; FP at its 4 % threshold.
    ac_off = {position: f" AND {ac_setup_sql(position, columns, AC)}" for position in (1, 2)}
    threshold = FP_THRESHOLD
    source = f"""(
        SELECT {_select(keys)}, pipeline, asr_after, clean_acc_after,
               CASE WHEN d1_name = 'ac' THEN 'ac_then_fp' ELSE 'fp_then_ac' END AS "order",
               CASE WHEN d1_name = 'ac' THEN {column('d2_layer')} ELSE {column('d1_layer')} END AS fp_layer
        FROM results
        WHERE n_defenses = 2 AND (
            (d1_name = 'ac'{ac_off[1]}
             AND d2_name = 'fp' AND abs({column('d2_threshold')} - {threshold}) < 1e-9)
         OR (d1_name = 'fp' AND abs({column('d1_threshold')} - {threshold}) < 1e-9
             AND d2_name = 'ac'{ac_off[2]})))"""
    ours = _estimates(context, source, [*keys, "pipeline", "order", "fp_layer"], ["clean_acc_after", "asr_after"])
    thesis = load_reference("combinations").merge(thesis_settings(), on="model_id")
    thesis["thesis_table"] = np.where(thesis["order"] == "ac_then_fp", "Table 4.7", "Table 4.9")
    metrics = [("clean accuracy after", "clean_acc_after", "clean_acc_after", None),
               ("ASR after", "backdoor_success_after", "asr_after", None)]
    return _compare(ours, thesis, keys, ["trigger", "poison_pct", "order", "fp_layer"], metrics)


def _estimates(context: ReportContext, source: str, keys: list[str], means: list[str],
               counts: bool = False) -> pd.DataFrame:
    """Means (``m_mean``, ``m_lo``, ``m_hi``, ``m_n``) of ``source`` per ``keys``; with ``counts`` (the
    source holds a filtering step's counts) also the TPR and the share of the training set removed,
    per model (a seed) and averaged over models (``tpr_mean``, ``removed_share_mean`` with t bounds ``_lo``,
    ``_hi`` and n = models ``_n``; :func:`detection_rates`), with their hits and totals summed over the
    models (``tp`` of ``poisoned``, ``removed`` of ``seen``); ``source`` then holds ``seed``."""
    ours = aggregate(context.connection, source, keys, means)
    if counts:
        pooled = detection_rates(context.connection, source, keys, ["seed"])
        pooled = pooled.assign(poisoned=pooled["tp"] + pooled["fn"], removed=pooled["tp"] + pooled["fp"])
        pooled = pooled[[*keys, "tp", "poisoned", "removed", "seen",
                         *(f"{rate}{part}" for rate in ("tpr", "removed_share") for part in ("", "_lo", "_hi", "_n"))]]
        ours = ours.merge(pooled.rename(columns={"tpr": "tpr_mean", "removed_share": "removed_share_mean"}),
                          on=keys, how="left")
    return ours


def _compare(ours: pd.DataFrame, thesis: pd.DataFrame, setting: list[str], keys: list[str],
             metrics: list[tuple[str, str, str, tuple[str, str] | None]]) -> pd.DataFrame:
    """Thesis rows joined to our estimates of the same setting, one row per (match, metric).

    Parameters
    ----------
    ours : estimates by ``setting`` (our attack-setting columns), ``keys`` (and maybe ``pipeline``)
    thesis : thesis rows with ``model_id``, ``thesis_table``, ``dataset``, ``model``, ``keys`` and values
    setting : our setting columns; those beyond dataset, model, trigger and poison % (a training
        configuration the sweep varies, say) are named in ``configuration``
    metrics : ``(name, thesis column (percent), our prefix (fraction), (hits, total) for a rate or None)``

    Returns
    -------
    long DataFrame: thesis_table, thesis_row, dataset, model, configuration, analogue, metric, thesis (percent),
    ours_mean / ours_lo / ours_hi (percent), ours_n, shown_ours (the formatted cell), difference_pp,
    inside (True / False / NA without an interval)
    """
    if ours.empty:
        return pd.DataFrame()
    matches = pd.DataFrame(DATASET_MATCHES, columns=["dataset", "thesis_dataset", "analogue"])
    ours = ours.merge(matches, on="dataset")
    joined = ours.merge(thesis.rename(columns={"dataset": "thesis_dataset", "model": "thesis_model"}),
                        on=["thesis_dataset", *keys], suffixes=("", "_thesis"))
    # The same dataset must run the thesis's model; an analogue stands beside whichever model it ran.
    joined = joined[joined["analogue"] | (joined["model"] == joined["thesis_model"])].reset_index(drop=True)
    if joined.empty:
        return pd.DataFrame()
    extras = [k for k in setting if k not in CORE]
    joined["configuration"] = joined["pipeline"] if "pipeline" in joined else ""
    for extra in extras:
        separator = (joined["configuration"] != "").map({True: ", ", False: ""})
        joined["configuration"] += separator + heading(extra) + " " + joined[extra].map(format_value)
    long = []
    for name, thesis_column, prefix, counts in metrics:
        rows = joined[joined[thesis_column].notna() & joined[f"{prefix}_mean"].notna()].copy()
        if rows.empty:
            continue
        rows["metric"] = name
        rows["thesis"] = rows[thesis_column].astype(float)
        rows["ours_mean"] = rows[f"{prefix}_mean"] * 100
        # A share cannot leave 0–100 %, though a t-interval over three seeds near 100 % does.
        rows["ours_lo"] = (rows[f"{prefix}_lo"] * 100).clip(0, 100)
        rows["ours_hi"] = (rows[f"{prefix}_hi"] * 100).clip(0, 100)
        if counts:
            rows["ours_n"] = rows[f"{prefix}_n"]
            rows["shown_ours"] = [cell + f" · pooled {int(k)}/{int(n)}" if cell != "–" else cell for cell, k, n in zip(
                rate_cells(rows.assign(rate=rows[f"{prefix}_mean"], rate_lo=rows[f"{prefix}_lo"],
                                       rate_hi=rows[f"{prefix}_hi"], rate_n=rows[f"{prefix}_n"]), "rate"),
                rows[counts[0]], rows[counts[1]])]
        else:
            rows["ours_n"] = rows[f"{prefix}_n"]
            rows["shown_ours"] = estimate_cells(rows, prefix)
        long.append(rows)
    if not long:
        return pd.DataFrame()
    result = pd.concat(long, ignore_index=True)
    result["difference_pp"] = result["ours_mean"] - result["thesis"]
    has_interval = result["ours_lo"].notna() & result["ours_hi"].notna()
    inside = (result["thesis"] >= result["ours_lo"] - 1e-9) & (result["thesis"] <= result["ours_hi"] + 1e-9)
    result["inside"] = inside.astype("boolean").where(has_interval, pd.NA)
    result = result.rename(columns={"model_id": "thesis_row"})
    order = {model_id: index for index, model_id in enumerate(thesis["model_id"].drop_duplicates())}
    result["_order"] = result["thesis_row"].map(order)
    result = result.sort_values(["_order", "thesis_table", "analogue", "dataset", "model", "configuration"],
                                kind="stable")
    return result[["thesis_table", "thesis_row", "dataset", "model", "configuration", "analogue", "metric", "thesis",
                   "ours_mean", "ours_lo", "ours_hi", "ours_n", "shown_ours", "difference_pp", "inside"]
                  ].reset_index(drop=True)


def _table(name: str, title: str, rows: pd.DataFrame) -> Table:
    ours_on = rows["dataset"] + " / " + rows["model"]
    ours_on = ours_on.where(~rows["analogue"].astype(bool), "ANALOGUE: " + ours_on)
    ours_on = ours_on + rows["configuration"].map(lambda text: f" · {text}" if text else "")
    inside = rows["inside"].map(lambda value: "no interval (n = 1)" if pd.isna(value) else ("yes" if value else "no"))
    shown = pd.DataFrame({
        "Thesis": rows["thesis_row"] + " (" + rows["thesis_table"] + ")",
        "Ours on": ours_on,
        "Metric": rows["metric"],
        "Thesis (%)": rows["thesis"].map(lambda value: f"{value:.2f}"),
        "Ours (%)": rows["shown_ours"],
        "Difference (pp)": rows["difference_pp"].map(_signed),
        "Thesis inside our CI": inside,
    })
    data = rows.drop(columns=["shown_ours"]).astype({"analogue": bool})
    return Table(file_stem("thesis", name), title, shown, data,
                 "Thesis values as printed (percent); ours ×100; difference = ours − thesis.")


def _signed(value: float) -> str:
    text = f"{value:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def _select(keys: list[str]) -> str:
    return ", ".join(quote(k) for k in keys)

