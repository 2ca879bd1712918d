"""Section "Benign arm": what each defense configuration costs when nothing is poisoned.

On trials with ``poison_pct = 0`` every sample a filtering step removes is clean, so its removals
are pure false positives, and any clean-accuracy drop is the price of running the defense on an
innocent training set. Per (dataset, model) and defense configuration: the false-positive rate of
each filtering step, per model with a t interval over models and pooled counts beside it, and the clean-accuracy cost
(``clean_acc_before − clean_acc_after``), a mean with a Student-t interval over seeds. Fine-Pruning
removes no samples: it has a cost and no rate.

Trials at 0 % that differ only in their trigger train on the same clean data with the same seed, so
they are one model seen several times, not several models: their counts and accuracies are
averaged per seed first, and n counts seeds.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from orchestrator.report import figures
from orchestrator.report.methods import INPUT_FILTER, MODEL_INSPECTION, kind_sql
from orchestrator.report.model import Figure, Paragraph, ReportContext, Section, Table
from orchestrator.report.sections.settings import (
    NO_DEFENSE,
    defense_family,
    estimate_cells,
    file_stem,
    heading,
    pipeline_order,
    quote,
    rate_cells,
    setting_columns,
)
from orchestrator.report.stats import aggregate, detection_rates

BENIGN = "poison_pct = 0"
COUNTS = {"removed_poisoned", "removed_clean", "n_seen", "n_poisoned"}
MAX_FIGURES = 4  # one per (dataset, model); a sweep with more models keeps its tables
MAX_FIGURE_ROWS = 40  # configuration steps one figure shows; beyond, labels are unreadable (the table has all)
LABEL_WIDTH = 36  # characters per line of a configuration's label in the figure


def section(context: ReportContext) -> Section | None:
    """None when the sweep has no defended trial on 0 % poisoned data."""
    if not {"poison_pct", "pipeline", "clean_acc_before", "clean_acc_after"} <= context.columns("results"):
        return None
    keys = model_columns(context)
    benign = benign_table(context, keys)
    if benign.empty:
        return None
    blocks: list = [Paragraph(
        "Every defense configuration run on training sets with 0 % poison, where every sample removed is clean. "
        "FPR: the share of the clean training samples a filtering step removed, computed per model (a seed) and "
        "averaged over models, mean [95 % Student-t interval] n = models, since the samples of one model are not "
        "independent; the counts summed over models stand beside it (a configuration with two filtering steps has a row per step; "
        "the second sees only what the first kept). Clean-accuracy cost: clean accuracy before the defense "
        "minus after it, in percentage points, mean [95 % CI] n = seeds; a negative cost is a gain. "
        "A defense that removes no training samples (a model repair, an input filter) has a cost and no FPR; "
        "an input filter's false alarms are the clean test inputs it rejects (its cost is the clean accuracy it "
        "serves), a model inspection's the classes it flags on a clean model. "
        "Trials at 0 % that differ only in their "
        "trigger train on the same clean data with the same seed: they are averaged per seed first.")]
    # A colour per defense, the same in every figure of this section; combinations last.
    families = sorted({defense_family(p) for p in benign["pipeline"]}, key=lambda f: (f == "combination", f))
    colours = {family: index for index, family in enumerate(families)}
    groups = benign.groupby(keys, sort=True, dropna=False)
    for index, (values, rows) in enumerate(groups):
        rows = rows.reset_index(drop=True)
        where = dict(zip(keys, values if isinstance(values, tuple) else (values,)))
        label = " / ".join(str(where[k]) for k in ("dataset", "model"))
        extra = [k for k in keys if k not in ("dataset", "model")]
        if extra:
            label += " (" + ", ".join(f"{heading(k)} {where[k]}" for k in extra) + ")"
        blocks.append(_summary(label, rows))
        stem = file_stem("benign", *(where[k] for k in keys))
        blocks.append(_table(stem, label, rows))
        if index < MAX_FIGURES and len(rows) <= MAX_FIGURE_ROWS:
            blocks.append(_figure(stem, label, rows, colours))
        elif index < MAX_FIGURES:
            blocks.append(Paragraph(f"No figure for {label}: its {len(rows)} rows are more than one figure can label "
                                    f"legibly ({MAX_FIGURE_ROWS}); the table above holds them all."))
    return Section("benign", "Benign arm: false positives and clean-accuracy cost on clean data", blocks)


def model_columns(context: ReportContext) -> list[str]:
    """The setting columns that tell one clean model from another: :func:`setting_columns` without
    the trigger and the poison percentage (at 0 % neither changes the training set)."""
    return [k for k in setting_columns(context) if k not in ("trigger", "poison_pct")]


def benign_table(context: ReportContext, keys: list[str]) -> pd.DataFrame:
    """One row per (``keys``, pipeline, filtering step) of the defended trials at 0 % poison.

    Returns
    -------
    DataFrame with ``keys``, ``pipeline``; the clean-accuracy cost ``acc_cost_mean/_lo/_hi/_n`` and
    ``clean_acc_before_mean/_lo/_hi/_n`` (fractions; n = seeds); the filtering step's ``position``
    (0 where the configuration removes no samples) and ``defense`` (``""`` then), with
    :func:`detection_rates`' ``fp``, ``tn``, ``fpr``, ``fpr_lo``, ``fpr_hi``, ``fpr_n`` (NaN without a step) and
    ``seeds`` pooled. Configurations in reading order.
    """
    by = ", ".join(quote(k) for k in [*keys, "pipeline", "seed"])
    per_seed = (f"(SELECT {by}, avg(clean_acc_before - clean_acc_after) AS acc_cost, "
                f"avg(clean_acc_before) AS clean_acc_before FROM results "
                f"WHERE {BENIGN} AND pipeline <> '{NO_DEFENSE}' GROUP BY {by})")
    cost = aggregate(context.connection, per_seed, [*keys, "pipeline"], ["acc_cost", "clean_acc_before"])
    if cost.empty:
        return cost
    rates = _false_positives(context, keys)
    if rates.empty:
        merged = cost.assign(position=0, defense="")
    else:
        merged = cost.merge(rates, on=[*keys, "pipeline"], how="left")
        merged["position"] = merged["position"].fillna(0).astype("int64")
        merged["defense"] = merged["defense"].fillna("")
    alarms = _other_alarms(context, keys)
    if not alarms.empty:
        merged = merged.merge(alarms, on=[*keys, "pipeline"], how="left")
    for metric in ALARMS:
        for part in ("mean", "lo", "hi"):
            if f"{metric}_{part}" not in merged:
                merged[f"{metric}_{part}"] = np.nan
        merged[f"{metric}_n"] = merged[f"{metric}_n"].fillna(0).astype("int64") if f"{metric}_n" in merged else 0
    for column in ("fp", "tn", "seeds", "fpr_n"):
        merged[column] = merged[column].fillna(0).astype("int64") if column in merged else 0
    for column in ("fpr", "fpr_lo", "fpr_hi"):
        if column not in merged:
            merged[column] = np.nan
    rank = {p: i for i, p in enumerate(pipeline_order(merged["pipeline"]))}
    merged = merged.sort_values([*keys, "pipeline", "position"],
                                key=lambda c: c.map(rank) if c.name == "pipeline" else c)
    columns = [*keys, "pipeline", "position", "defense", "fp", "tn", "fpr", "fpr_lo", "fpr_hi", "fpr_n", "seeds",
               *(f"{m}_{p}" for m in ("acc_cost", "clean_acc_before", *ALARMS) for p in ("mean", "lo", "hi", "n"))]
    return merged[columns].reset_index(drop=True)


def _false_positives(context: ReportContext, keys: list[str]) -> pd.DataFrame:
    """:func:`detection_rates` of each filtering step at 0 % poison, a model per seed (its counts averaged
    over triggers: at 0 % a trigger changes nothing)."""
    if not COUNTS | {"defense", "position"} <= context.columns("stages"):
        return pd.DataFrame()
    by = ", ".join(quote(k) for k in [*keys, "pipeline", "position", "defense", "seed"])
    counts = ", ".join(f"avg({c}) AS {c}" for c in sorted(COUNTS))
    per_seed = (f"(SELECT {by}, {counts} FROM stages WHERE {BENIGN} AND removed_clean IS NOT NULL "
                f"AND n_seen IS NOT NULL GROUP BY {by})")
    rates = detection_rates(context.connection, per_seed, [*keys, "pipeline", "position", "defense"], ["seed"])
    if rates.empty:
        return rates
    rates = rates.rename(columns={"runs": "seeds"})
    return rates[[*keys, "pipeline", "position", "defense", "fp", "tn", "fpr", "fpr_lo", "fpr_hi", "fpr_n", "seeds"]]


ALARMS = ("input_frr", "n_flagged_classes")  # an input filter's clean rejections, an inspection's flags


def _other_alarms(context: ReportContext, keys: list[str]) -> pd.DataFrame:
    """Per (``keys``, pipeline) at 0 % poison, the false alarms of the steps that remove no samples:
    an input filter's share of clean test inputs rejected (``input_frr``) and a model inspection's
    classes flagged on a clean model (``n_flagged_classes``), averaged per seed first:
    ``<metric>_mean/_lo/_hi/_n``, n = seeds. Empty without such steps."""
    columns = context.columns("stages")
    if "position" not in columns or not set(ALARMS) & columns:
        return pd.DataFrame()
    kind = kind_sql(columns)
    values = {"input_frr": f"CASE WHEN {kind} = '{INPUT_FILTER}' THEN input_frr END",
              "n_flagged_classes": f"CASE WHEN {kind} = '{MODEL_INSPECTION}' THEN n_flagged_classes END"}
    present = [m for m in ALARMS if m in columns]
    by = ", ".join(quote(k) for k in [*keys, "pipeline", "seed"])
    per_seed = (f"(SELECT {by}, " + ", ".join(f"avg({values[m]}::DOUBLE) AS {m}" for m in present)
                + f" FROM stages WHERE {BENIGN} GROUP BY {by})")
    return aggregate(context.connection, per_seed, [*keys, "pipeline"], present)


def _alarm_cells(rows: pd.DataFrame) -> list[str]:
    """A step's false alarms other than removed samples: rejected clean inputs, flagged classes; – where none."""
    frr, flags = estimate_cells(rows, "input_frr"), estimate_cells(rows, "n_flagged_classes", scale=1.0,
                                                                     bounds=(0.0, np.inf))
    return [f"{f} % of clean inputs rejected" if n_frr else f"{g} classes flagged" if n_flags else "–"
            for f, g, n_frr, n_flags in zip(frr, flags, rows["input_frr_n"], rows["n_flagged_classes_n"])]


def _step(position: int, defense: str) -> str:
    return f"{position}:\u00a0{defense}" if position else "– (removes no samples)"


def _table(stem: str, label: str, rows: pd.DataFrame) -> Table:
    shown = pd.DataFrame({heading("pipeline"): rows["pipeline"]})
    shown["Filtering step"] = [_step(p, d) for p, d in zip(rows["position"], rows["defense"])]
    shown["FPR (%)"] = rate_cells(rows, "fpr")
    shown["Clean removed, pooled"] = ["–" if not position else f"{fp:,} of {fp + tn:,}"
                              for position, fp, tn in zip(rows["position"], rows["fp"], rows["tn"])]
    if (rows[[f"{m}_n" for m in ALARMS]] > 0).any(axis=None):
        shown["Other false alarms"] = _alarm_cells(rows)
    shown["Clean acc. before (%)"] = estimate_cells(rows, "clean_acc_before")
    shown["Clean-acc. cost (pp)"] = estimate_cells(rows, "acc_cost", bounds=None)
    return Table(stem, f"Benign arm on {label}: false positives and clean-accuracy cost at 0 % poison", shown, rows,
                 "FPR: clean samples removed over clean samples seen per model (counts averaged over triggers "
                 "first), mean [95 % Student-t interval] n = models (seeds). Clean removed, pooled: counts summed over the "
                 "models. Cost: before − after in percentage points, mean [95 % CI] n = seeds; for an input filter, "
                 "after is the accuracy it serves. Other false alarms: an input filter's clean test inputs rejected, a "
                 "model inspection's classes flagged on a clean model, mean [95 % CI] n = seeds.")


def _summary(label: str, rows: pd.DataFrame) -> Paragraph:
    """The configuration with the highest FPR and the one with the highest mean cost, in one sentence."""
    text = f"On {label}, {rows['pipeline'].nunique()} defense configurations ran on clean data"
    filtering = rows[rows["position"] > 0].dropna(subset=["fpr"])
    if not filtering.empty:
        worst = filtering.loc[filtering["fpr"].idxmax()]
        best = filtering.loc[filtering["fpr"].idxmin()]
        text += (f"; the filtering steps removed from {100 * best['fpr']:.1f} % ({best['pipeline']}) to "
                 f"{100 * worst['fpr']:.1f} % ({worst['pipeline']}) of the clean samples")
    costs = rows.drop_duplicates("pipeline").dropna(subset=["acc_cost_mean"])
    if not costs.empty:
        dearest = costs.loc[costs["acc_cost_mean"].idxmax()]
        text += (f"; the largest mean clean-accuracy cost is {100 * dearest['acc_cost_mean']:.1f} pp "
                 f"({dearest['pipeline']})")
    return Paragraph(text + ".")


def wrap_label(label: str, width: int = LABEL_WIDTH, after: str = ",>") -> str:
    """A label on lines of at most ``width`` characters, broken after any character of ``after``
    (a configuration's ``,`` and ``>`` by default; a part longer than ``width`` keeps its own line)."""
    parts = [part for part in re.sub(f"([{re.escape(after)}])", "\\1\n", label).split("\n") if part]
    lines = [""]
    for part in parts:
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)


def _figure(stem: str, label: str, rows: pd.DataFrame, colours: dict[str, int]) -> Figure:
    """Two panels sharing one row per table row: FPR with its t interval over models (filtering steps only),
    and the clean-accuracy cost with its t interval (once per configuration)."""
    several_steps = rows.groupby("pipeline")["position"].transform("size") > 1
    labels = [wrap_label(p) + (f"\n(step {pos})" if many else "")
              for p, pos, many in zip(rows["pipeline"], rows["position"], several_steps)]
    y = np.arange(len(rows))[::-1].astype(float)
    first_of_pipeline = ~rows["pipeline"].duplicated()
    height = 0.22 * sum(text.count("\n") + 1 for text in labels) + 0.9
    with figures.panels(2, max_columns=2, panel_size=(4.6, height), sharey=True, name=stem) as (figure, axes):
        fpr_axis, cost_axis = axes
        family = rows["pipeline"].map(lambda p: colours[defense_family(p)])
        for colour_index in sorted(family.unique()):
            colour = figures.colour(colour_index)
            rates = (family == colour_index) & (rows["position"] > 0) & rows["fpr"].notna()
            costs = (family == colour_index) & first_of_pipeline & (rows["acc_cost_n"] > 0)
            for axis, mask, value in ((fpr_axis, rates, "fpr"), (cost_axis, costs, "acc_cost_mean")):
                if mask.any():
                    metric = value.removesuffix("_mean")
                    nowhere = np.full(int(mask.sum()), np.nan)
                    figures.points_with_error_bars(axis, 100 * rows.loc[mask, value], y[mask.to_numpy()],
                                                   (100 * rows.loc[mask, f"{metric}_lo"], 100 * rows.loc[mask, f"{metric}_hi"]),
                                                   (nowhere, nowhere), colour)
        fpr_axis.set_yticks(y, labels, fontsize=8)
        fpr_axis.set_ylim(y.min() - 0.6, y.max() + 0.6)
        # a little room left of 0, where a step that removed nothing sits
        fpr_axis.set_xlim(left=-0.03 * max(fpr_axis.get_xlim()[1], 1.0))
        fpr_axis.set_xlabel("FPR: clean samples removed (%)")
        cost_axis.axvline(0, color=figures.GREY, linewidth=0.9, linestyle=":")
        cost_axis.set_xlabel("Clean-accuracy cost (pp)")
        svg = figures.to_svg(figure)
    return Figure(stem, f"Benign arm on {label}: FPR and clean-accuracy cost at 0 % poison", svg,
                  "Left: each filtering step's false-positive rate, mean over models (seeds) with its 95 % t interval "
                  "(no point: the configuration removes no samples). Right: clean accuracy before minus after, "
                  "mean with its 95 % t interval over seeds (no bar: one seed); dotted: no cost. Colour: the "
                  "defense, or a combination of several.")
