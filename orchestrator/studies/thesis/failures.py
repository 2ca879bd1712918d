"""Section "Why the thesis's Spectral Signatures and Data Provenance failed, shown" (the thesis study).

The thesis (§4.2.2–4.2.3) found that neither defense worked on any model. Both failures came from
the library, not the idea, and this section lets the rows show it:

- Spectral Signatures: the thesis ran ART ≤ 1.7.0, whose ``SpectralSignatureDefense`` flagged every
  sample (ART issue #1188, fixed in 1.7.1; the thesis's Table 4.4). ART 1.20 scores ``|⟨r, v⟩|`` on
  the *un-centred* features ``r`` (``v``: the top right singular vector of the centred ones), so the
  poisons score low whenever they sit on the origin's side of their class mean along ``v``.
  Per backdoored model, the AUROC of ART's score stands beside the centred score of Tran et al.'s
  Algorithm 1; below 0.5, the flagged tail is the clean one.
- Data Provenance: ART's ``ProvenanceDefense`` cannot judge image segments with a Keras model
  (SPEC §2), so the thesis saw no segment condemned. Per backdoored model and mode, the accuracy
  gained by leaving each camera's segment out stands beside the ``eps`` values the sweep tried,
  so a reader sees for which ``eps`` the attacker's segment (camera 3) goes, and whether clean
  segments go with it.

Only steps run on the backdoored model itself (position 1: alone or first in a chain) are shown:
a later step judges another model.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from orchestrator.report import figures
from orchestrator.report.model import Figure, Paragraph, ReportContext, Section, Table
from orchestrator.report.sections.settings import (
    file_stem,
    format_value,
    heading,
    panel_title,
    quote,
    select_panel,
    setting_columns,
    shown_keys,
)
from orchestrator.report.stats import aggregate, format_estimate

# The camera the attacker's (poisoned) images come from: tasks.defenses.data_provenance.ATTACKER_CAMERA
# (not imported: that module loads TensorFlow, which a report does not need).
ATTACKER_CAMERA = 3
LAST_HIDDEN = "last hidden"  # SS's layer when its parameter is left at None
WRONG_TAIL = 0.5  # an AUROC below it ranks a class's clean samples above its poisons
MAX_PANELS = 6
SCORES = (("art", "ART score (un-centred)"), ("centered", "centred score (Tran et al.)"))

SS_EXPLANATION = (
    "Spectral Signatures scores each sample of a class by its projection on the top singular vector v of the "
    "class's activations and removes the highest-scoring share of every class. The thesis ran ART ≤ 1.7.0, "
    "whose SpectralSignatureDefense flagged every training sample and put all of them in class 0 (ART issue "
    "#1188, fixed in 1.7.1): that is what the thesis's Table 4.4 shows (§4.2.2), so its numbers measure the "
    "bug, not the defense. ART 1.20 no longer does that, but it still projects the un-centred activations r: "
    "its score is |⟨r, v⟩| = |⟨μ, v⟩ + ⟨r − μ, v⟩| with μ the class mean, and activations after a ReLU lie "
    "far from the origin, so the score ranks samples by their signed offset from the mean along v, pointing "
    "away from the origin. When the poisons sit on the origin's side of the mean, they score lowest and the "
    "clean tail is flagged. Tran et al.'s Algorithm 1 (score = centered) squares the projection of the "
    "centred activations, which has no such side. Per backdoored model (attack setting and seed): the area "
    "under SS's ROC as the share removed per class grows from 0 to 1, with each score (every SS "
    "configuration of a model shares that ROC). An AUROC below 0.5 means the score ranks the poisons below "
    "the clean samples: the wrong tail is flagged.")

DP_EXPLANATION = (
    "Data Provenance (Baracaldo et al.) trains with and without each provenance segment (here: the camera "
    "an image came from; the attacker's images come from camera 3, clean ones from cameras 0–2) and condemns "
    "a segment whose removal raises accuracy by more than eps (trusted mode: on the clean tuning set; "
    "untrusted: on a held-out share of the other segments). The thesis saw no segment condemned (§4.2.3), "
    "with ART's ProvenanceDefense, which on image data with a Keras model matches points by pixel value, "
    "scores probabilities with accuracy_score and fine-tunes copies instead of retraining; bdsweep "
    "implements the algorithm itself. Below: the accuracy each segment's removal gained, per attack setting "
    "and mode, against the eps values the sweep tried. A segment is condemned at every eps below its gain; "
    "the defense works at an eps below the attacker's gain and above every clean segment's.")


def section(context: ReportContext) -> Section | None:
    """None when the sweep has neither SS run with both scores on one model nor a Data Provenance step."""
    keys = setting_columns(context)
    scores = ss_scores(context, keys)
    gains = dp_gains(context, keys)
    if scores.empty and gains.empty:
        return None
    blocks: list = [Paragraph(SS_EXPLANATION)]
    if scores.empty:
        blocks.append(Paragraph("This sweep ran Spectral Signatures with both scores (art and centered) on no "
                                "backdoored model, so there is nothing to set side by side."))
    else:
        blocks += _ss_blocks(context, keys, scores)
    blocks.append(Paragraph(DP_EXPLANATION))
    if gains.empty:
        blocks.append(Paragraph("This sweep ran no Data Provenance step on a backdoored model, so there are no "
                                "segment gains to show."))
    else:
        blocks += _dp_blocks(context, keys, gains)
    return Section("failures", "Why the thesis's Spectral Signatures and Data Provenance failed, shown", blocks)


# Spectral Signatures ------------------------------------------------------------------------------

def ss_scores(context: ReportContext, keys: list[str]) -> pd.DataFrame:
    """One row per backdoored model on which SS ran with both scores: (``keys``, ``seed``,
    ``ss_layer``) with ``auroc_art`` and ``auroc_centered`` (in [0, 1]) and ``wrong_tail_art``,
    ``wrong_tail_centered`` (AUROC < 0.5), sorted by the keys. ``ss_layer`` is SS's ``layer``
    parameter (``last hidden`` for its default); models without poison (AUROC NaN) are left out."""
    query = _ss_models_sql(context, keys)
    if query is None:
        return pd.DataFrame()
    frame = context.frame(f"SELECT * FROM {query} ORDER BY ALL")
    for score, _ in SCORES:
        frame[f"wrong_tail_{score}"] = frame[f"auroc_{score}"] < WRONG_TAIL
    return frame


def _ss_models_sql(context: ReportContext, keys: list[str]) -> str | None:
    """:func:`ss_scores`' rows (without the wrong-tail flags) as a parenthesised query; None when
    the stages view has no SS score or AUROC."""
    columns = context.columns("stages")
    if not {"defense", "position", "score", "auroc"} <= columns:
        return None
    # SS's layer parameter; NULL means the last hidden layer
    layer = f"coalesce({quote('layer')}::VARCHAR, '{LAST_HIDDEN}')" if "layer" in columns else f"'{LAST_HIDDEN}'"
    by = ", ".join(quote(k) for k in [*keys, "seed"])
    per_score = ", ".join(f"any_value(auroc) FILTER (WHERE score = '{score}') AS auroc_{score}" for score, _ in SCORES)
    return (f"(SELECT * FROM (SELECT {by}, {layer} AS ss_layer, {per_score} FROM stages "
            f"WHERE defense = 'ss' AND position = 1 AND auroc IS NOT NULL AND NOT isnan(auroc) "
            f"GROUP BY {by}, ss_layer) WHERE auroc_art IS NOT NULL AND auroc_centered IS NOT NULL)")


def _ss_blocks(context: ReportContext, keys: list[str], scores: pd.DataFrame) -> list:
    model_keys = [k for k in keys if k not in ("trigger", "poison_pct")]
    setting = [*keys, "ss_layer"]
    means = aggregate(context.connection, _ss_models_sql(context, keys), setting, ["auroc_art", "auroc_centered"])
    wrong_seed = scores["seed"].astype(str).where(scores["wrong_tail_art"])
    counted = scores.assign(wrong_seed=wrong_seed).groupby(setting, dropna=False, sort=False).agg(
        models=("seed", "size"), wrong_art=("wrong_tail_art", "sum"), wrong_centered=("wrong_tail_centered", "sum"),
        wrong_seeds=("wrong_seed", lambda seeds: ", ".join(seeds.dropna())))
    summary = means.merge(counted.reset_index(), on=setting, how="left")
    for column in ("models", "wrong_art", "wrong_centered"):
        summary[column] = summary[column].astype("int64")
    layers_vary = scores["ss_layer"].nunique(dropna=False) > 1
    total, wrong = len(scores), int(scores["wrong_tail_art"].sum())
    blocks: list = [Paragraph(
        f"Over the {total} backdoored model{'s' if total != 1 else ''} on which SS ran with both scores, ART's "
        f"score flagged the wrong tail (AUROC < 0.5) on {wrong} and the centred score on "
        f"{int(scores['wrong_tail_centered'].sum())}. Mean AUROC: ART "
        f"{scores['auroc_art'].mean():.2f}, centred {scores['auroc_centered'].mean():.2f}.")]
    shown = shown_keys(summary, keys)
    if layers_vary:
        shown["SS layer"] = summary["ss_layer"]
    for score, title in SCORES:
        shown[f"AUROC, {title}"] = [
            format_estimate(m, max(lo, 0.0), min(hi, 1.0), int(n), scale=1.0, digits=2) if not np.isnan(lo) else
            format_estimate(m, lo, hi, int(n), scale=1.0, digits=2)
            for m, lo, hi, n in zip(summary[f"auroc_{score}_mean"], summary[f"auroc_{score}_lo"],
                                    summary[f"auroc_{score}_hi"], summary[f"auroc_{score}_n"])]
    shown["ART flags the wrong tail"] = [_seeds_out_of(k, n, seeds) for k, n, seeds in
                                         zip(summary["wrong_art"], summary["models"], summary["wrong_seeds"])]
    shown["Centred flags the wrong tail"] = [f"{k} of {n} seeds" for k, n in
                                             zip(summary["wrong_centered"], summary["models"])]
    blocks.append(Table("failures_ss_settings", "Spectral Signatures' AUROC per attack setting: ART's score against the "
                        "centred one", shown, summary,
                        "AUROC: mean [95 % CI] n = seeds, one model per seed. Wrong tail: AUROC < 0.5, the score ranks "
                        "the poisons below the clean samples; the seeds where ART's did are named."))
    for values, rows in scores.groupby(model_keys, sort=True, dropna=False):
        rows = rows.reset_index(drop=True)
        where = dict(zip(model_keys, values if isinstance(values, tuple) else (values,)))
        label = " / ".join(format_value(where[k]) for k in model_keys)
        shown = shown_keys(rows, keys)
        if layers_vary:
            shown["SS layer"] = rows["ss_layer"]
        shown[heading("seed")] = rows["seed"].astype(str)
        for score, title in SCORES:
            shown[f"AUROC, {title}"] = [f"{value:.2f}" for value in rows[f"auroc_{score}"]]
        shown["ART flags the wrong tail"] = rows["wrong_tail_art"].map({True: "yes (AUROC < 0.5)", False: "no"})
        blocks.append(Table(file_stem("failures_ss_seeds", *(where[k] for k in model_keys)),
                            f"Spectral Signatures' AUROC per seed on {label}: ART's score against the centred one",
                            shown, rows, "One row per backdoored model (attack setting and seed); AUROC of the ROC over "
                            "the share removed per class."))
    blocks.append(_ss_figure(scores, model_keys))
    return blocks


def _seeds_out_of(wrong: int, models: int, seeds: str) -> str:
    return f"{wrong} of {models} seeds" + (f" (seed{'s' if wrong > 1 else ''} {seeds})" if wrong else "")


def _ss_figure(scores: pd.DataFrame, model_keys: list[str]) -> Figure:
    """A panel per (dataset, model): each backdoored model's AUROC with ART's score (x) against the
    centred score (y), coloured by trigger; left of the dashed line ART flagged the wrong tail."""
    panels = scores[model_keys].drop_duplicates().reset_index(drop=True)
    drawn = panels.iloc[:MAX_PANELS]
    triggers = sorted(scores["trigger"].unique())
    with figures.panels(len(drawn), max_columns=2, panel_size=(4.2, 3.6), name="failures_ss_scores") as (figure, axes):
        for axis, (_, panel) in zip(axes, drawn.iterrows()):
            mine = select_panel(scores, panel, model_keys)
            axis.axvspan(0, WRONG_TAIL, color=figures.PALETTE[3], alpha=0.07, linewidth=0)
            axis.text(0.02, 0.03, "ART flags\nthe wrong tail", fontsize=7.5, color=figures.PALETTE[3],
                      transform=axis.transAxes)
            for index, trigger in enumerate(triggers):
                points = mine[mine["trigger"] == trigger]
                if not points.empty:
                    axis.scatter(points["auroc_art"], points["auroc_centered"], s=22, color=figures.colour(index),
                                 marker=figures.MARKERS[index % len(figures.MARKERS)], label=trigger,
                                 edgecolors="white", linewidths=0.4, zorder=3)
            axis.axvline(WRONG_TAIL, color=figures.GREY, linestyle="--", linewidth=0.9)
            axis.axhline(WRONG_TAIL, color=figures.GREY, linestyle="--", linewidth=0.9)
            axis.plot([0, 1], [0, 1], color=figures.GREY, linestyle=":", linewidth=0.8)
            axis.set_xlim(-0.03, 1.03)
            axis.set_ylim(-0.03, 1.03)
            axis.set_xlabel("AUROC, ART score (un-centred)")
            axis.set_ylabel("AUROC, centred score")
            axis.set_title(panel_title(panel, model_keys), fontsize=9.5)
            axis.legend(loc="lower right", fontsize=7.5)
        svg = figures.to_svg(figure)
    caption = ("One point per backdoored model (attack setting and seed). Dashed: AUROC 0.5; left of it (shaded) "
               "ART's un-centred score ranks the poisons below the clean samples and flags the wrong tail. Dotted: "
               "both scores equal.")
    if len(panels) > MAX_PANELS:
        caption += f" Only the first {MAX_PANELS} of {len(panels)} panels are drawn."
    return Figure("failures_ss_scores", "Spectral Signatures per model: ART's score against the centred one", svg, caption)


# Data Provenance ----------------------------------------------------------------------------------

def gain_cameras(columns: set[str]) -> list[int]:
    """Camera ids with a ``gain_camera_<id>`` column, ascending."""
    return sorted(int(match[1]) for column in columns if (match := re.fullmatch(r"gain_camera_(\d+)", column)))


def judge_columns(columns: set[str]) -> list[str]:
    """Data Provenance's parameters besides ``mode`` that change its judging models (not ``eps``)."""
    return [c for c in ("detection_epochs", "holdout") if c in columns]


def dp_gains(context: ReportContext, keys: list[str]) -> pd.DataFrame:
    """One row per judged backdoored model: (``keys``, ``mode``, judging parameters, ``seed``) with
    ``gain_camera_<c>`` per camera (fractions of accuracy; NaN where a camera has no samples), sorted.

    Every ``eps`` of one model shares its judging models, so the gains are taken once per model."""
    query = _dp_models_sql(context, keys)
    return pd.DataFrame() if query is None else context.frame(f"SELECT * FROM {query} ORDER BY ALL")


def _dp_models_sql(context: ReportContext, keys: list[str]) -> str | None:
    """:func:`dp_gains`' rows as a parenthesised query; None without Data Provenance's columns."""
    columns = context.columns("stages")
    cameras = gain_cameras(columns)
    if not cameras or not {"defense", "position", "mode", "eps"} <= columns:
        return None
    by = ", ".join(quote(k) for k in [*keys, "mode", *judge_columns(columns), "seed"])
    gains = ", ".join(f"any_value(gain_camera_{c}) AS gain_camera_{c}" for c in cameras)
    return f"(SELECT {by}, {gains} FROM stages WHERE defense = 'dp' AND position = 1 GROUP BY {by})"


def dp_condemned(context: ReportContext, keys: list[str]) -> pd.DataFrame:
    """Per (``keys``, ``mode``, judging parameters, ``eps``): ``models`` judged, and in how many the
    attacker's segment (``attacker``) and at least one clean segment (``clean``) were condemned.

    Read from ``removed_cameras`` (what the defense removed) where rows carry it, else from the gains
    (a segment goes when its gain exceeds ``eps``)."""
    columns = context.columns("stages")
    cameras = gain_cameras(columns)
    clean = [c for c in cameras if c != ATTACKER_CAMERA]
    if "removed_cameras" in columns:
        removed = "string_split(coalesce(removed_cameras, ''), ',')"
        attacker = f"list_contains({removed}, '{ATTACKER_CAMERA}')"
        any_clean = f"list_has_any({removed}, [{', '.join(repr(str(c)) for c in clean)}]::VARCHAR[])"
    else:
        attacker = f"coalesce(gain_camera_{ATTACKER_CAMERA} > eps, FALSE)" if ATTACKER_CAMERA in cameras else "FALSE"
        any_clean = "coalesce(" + " OR ".join(f"gain_camera_{c} > eps" for c in clean) + ", FALSE)" if clean else "FALSE"
    by = ", ".join(quote(k) for k in [*keys, "mode", *judge_columns(columns), "eps"])
    frame = context.frame(
        f"SELECT {by}, count(DISTINCT seed) AS models, count(DISTINCT seed) FILTER (WHERE attacker) AS attacker, "
        f"count(DISTINCT seed) FILTER (WHERE any_clean) AS clean FROM (SELECT *, {attacker} AS attacker, "
        f"{any_clean} AS any_clean FROM stages WHERE defense = 'dp' AND position = 1) GROUP BY {by} ORDER BY {by}")
    frame[["models", "attacker", "clean"]] = frame[["models", "attacker", "clean"]].astype("int64")
    return frame


def _dp_blocks(context: ReportContext, keys: list[str], gains: pd.DataFrame) -> list:
    columns = context.columns("stages")
    cameras = gain_cameras(columns)
    judges = [c for c in judge_columns(columns) if gains[c].nunique(dropna=False) > 1]
    group = [*keys, "mode", *judge_columns(columns)]
    metrics = [f"gain_camera_{c}" for c in cameras]
    means = aggregate(context.connection, _dp_models_sql(context, keys), group, metrics)
    condemned = dp_condemned(context, keys)
    model_keys = [k for k in keys if k not in ("trigger", "poison_pct")]
    blocks: list = [_eps_table(condemned, model_keys, group, judges)]
    blocks += _eps_sentences(condemned, model_keys, judges)
    for values, rows in means.groupby(model_keys, sort=True, dropna=False):
        rows = rows.reset_index(drop=True)
        where = dict(zip(model_keys, values if isinstance(values, tuple) else (values,)))
        label = " / ".join(format_value(where[k]) for k in model_keys)
        mine = select_panel(condemned, pd.Series(where), model_keys)
        blocks.append(_gains_table(rows, mine, keys, group, judges, cameras, label,
                                   file_stem("failures_dp_gains", *(where[k] for k in model_keys))))
    blocks.append(_dp_figure(means, condemned, model_keys, judges, cameras))
    return blocks


def _eps_table(condemned: pd.DataFrame, model_keys: list[str], group: list[str], judges: list[str]) -> Table:
    """Per (dataset, model, mode, eps): the attacker's segment condemned in k of the poisoned models,
    a clean segment in k of all models."""
    by = [*model_keys, "mode", *[c for c in group if c in judges], "eps"]
    poisoned = condemned[condemned["poison_pct"] > 0]
    attacker = poisoned.groupby(by, dropna=False)[["models", "attacker"]].sum().rename(
        columns={"models": "poisoned_models"})
    clean = condemned.groupby(by, dropna=False)[["models", "clean"]].sum()
    data = clean.join(attacker, how="left").reset_index()
    data[["poisoned_models", "attacker"]] = data[["poisoned_models", "attacker"]].fillna(0).astype("int64")
    data["eps"] = data["eps"].astype(float)
    shown = shown_keys(data, by, keep=("mode", "eps"))
    shown = shown.rename(columns={"mode": "Mode", "eps": "eps"})
    shown["Attacker's segment condemned"] = [f"{k} of {n} poisoned models" if n else "– (no poisoned model)"
                                             for k, n in zip(data["attacker"], data["poisoned_models"])]
    shown["A clean segment condemned"] = [f"{k} of {n} models" for k, n in zip(data["clean"], data["models"])]
    return Table("failures_dp_eps", "Data Provenance: what each eps condemned", shown, data,
                 "A model: one attack setting and seed. eps is an accuracy gain (a fraction: 0.01 = 1 pp). The "
                 "defense works at an eps that condemns the attacker's segment in every poisoned model and a clean "
                 "segment in none.")


def _eps_sentences(condemned: pd.DataFrame, model_keys: list[str], judges: list[str]) -> list[Paragraph]:
    """Per (dataset, model, mode): the eps values at which the attacker's segment went in every poisoned
    model and the ones at which a clean segment went in some model."""
    sentences = []
    for values, rows in condemned.groupby([*model_keys, "mode", *judges], sort=True, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        label = " / ".join(format_value(v) for v in values[:len(model_keys)]) + f", {values[len(model_keys)]} mode"
        if judges:
            label += " (" + ", ".join(f"{j} {format_value(v)}" for j, v in zip(judges, values[len(model_keys) + 1:])) + ")"
        per_eps = rows.groupby("eps").agg(models=("models", "sum"), clean=("clean", "sum"))
        poisoned = rows[rows["poison_pct"] > 0].groupby("eps")[["models", "attacker"]].sum()
        always = [eps for eps, row in poisoned.iterrows() if row["models"] and row["attacker"] == row["models"]]
        never = [eps for eps, row in poisoned.iterrows() if row["models"] and row["attacker"] == 0]
        clean = [eps for eps, row in per_eps.iterrows() if row["clean"]]
        text = f"{label}: "
        if poisoned.empty:
            text += "no poisoned model was judged"
        else:
            text += ("the attacker's segment was condemned in every poisoned model at eps = " + _eps_list(always)
                     if always else "at no eps tried was the attacker's segment condemned in every poisoned model")
            if never:
                text += f", in none at eps = {_eps_list(never)}"
        text += ("; a clean segment was condemned in some model at eps = " + _eps_list(clean) if clean else
                 "; no clean segment was condemned at any eps tried") + "."
        sentences.append(Paragraph(text))
    return sentences


def _eps_list(values: list[float]) -> str:
    return ", ".join(f"{value:g}" for value in sorted(values))


def _gains_table(means: pd.DataFrame, condemned: pd.DataFrame, keys: list[str], group: list[str], judges: list[str],
                 cameras: list[int], label: str, stem: str) -> Table:
    """A row per (attack setting, mode): each camera's mean gain, and per eps tried how many seeds lost
    the attacker's segment and how many a clean one."""
    eps_values = sorted(condemned["eps"].dropna().unique())
    wide = means.copy()
    for eps in eps_values:
        at = condemned[condemned["eps"] == eps][[*group, "models", "attacker", "clean"]]
        at = at.rename(columns={c: f"{c}_eps_{eps:g}" for c in ("models", "attacker", "clean")})
        wide = wide.merge(at, on=group, how="left")
    shown = {(title, ""): values for title, values in shown_keys(wide, [*keys, "mode", *judges],
                                                                  keep=("trigger", "poison_pct", "mode")).items()}
    shown = {(("Mode", "") if key == ("mode", "") else key): values for key, values in shown.items()}
    gain_title = "Gain from leaving the segment out (pp)"
    for camera in cameras:
        name = f"camera {camera}" + (" (attacker)" if camera == ATTACKER_CAMERA else "")
        shown[(gain_title, name)] = [
            format_estimate(m, lo, hi, int(n), scale=100.0, digits=2) for m, lo, hi, n in
            zip(wide[f"gain_camera_{camera}_mean"], wide[f"gain_camera_{camera}_lo"], wide[f"gain_camera_{camera}_hi"],
                wide[f"gain_camera_{camera}_n"])]
    for eps in eps_values:
        title = f"Condemned at eps = {eps:g}"
        models, attacker, clean = (wide[f"{c}_eps_{eps:g}"] for c in ("models", "attacker", "clean"))
        shown[(title, "attacker")] = [
            "–" if pd.isna(n) else ("– (no poison)" if pct == 0 else f"{int(k)} of {int(n)}")
            for k, n, pct in zip(attacker, models, wide["poison_pct"])]
        shown[(title, "clean")] = ["–" if pd.isna(n) else f"{int(k)} of {int(n)}" for k, n in zip(clean, models)]
    shown_frame = pd.DataFrame(shown)
    shown_frame.columns = pd.MultiIndex.from_tuples(shown_frame.columns)
    return Table(stem, f"Data Provenance on {label}: each segment's gain against eps", shown_frame, wide,
                 f"Gain: accuracy with the segment left out minus with it, in percentage points, mean [95 % CI] "
                 f"n = seeds; camera {ATTACKER_CAMERA} holds the attacker's images (none at 0 % poison). Condemned: "
                 "in how many seeds the segment went at that eps (attacker: camera 3; clean: any of the others); "
                 "– where the sweep did not try that eps there.")


def _dp_figure(means: pd.DataFrame, condemned: pd.DataFrame, model_keys: list[str], judges: list[str],
               cameras: list[int]) -> Figure:
    """A panel per (dataset, model, mode): per attack setting, each camera's mean gain with its t
    interval (the attacker's camera larger, in vermilion), and a line at each eps tried."""
    panel_keys = [*model_keys, "mode", *judges]
    panels = means[panel_keys].drop_duplicates().reset_index(drop=True)
    drawn = panels.iloc[:MAX_PANELS]
    widest = max(len(select_panel(means, panel, panel_keys)) for _, panel in drawn.iterrows())
    wide_panels = widest > 8
    size = (9.6, 3.4) if wide_panels else (4.7, 3.4)
    clean_colours = [figures.PALETTE[i] for i in (0, 2, 5, 4, 6)]
    offsets = np.linspace(-0.3, 0.3, len(cameras)) if len(cameras) > 1 else np.zeros(1)
    shown_panel_keys = [k for k in panel_keys if panels[k].nunique(dropna=False) > 1]
    with figures.panels(len(drawn), max_columns=1 if wide_panels else 2, panel_size=size,
                        name="failures_dp_gains") as (figure, axes):
        for axis, (_, panel) in zip(axes, drawn.iterrows()):
            rows = select_panel(means, panel, panel_keys).reset_index(drop=True)
            x = np.arange(len(rows), dtype=float)
            clean_index = 0
            for offset, camera in zip(offsets, cameras):
                attacker = camera == ATTACKER_CAMERA
                colour = figures.PALETTE[3] if attacker else clean_colours[clean_index % len(clean_colours)]
                clean_index += not attacker
                column = f"gain_camera_{camera}"
                figures.points_with_error_bars(
                    axis, x + offset, 100 * rows[f"{column}_mean"], ([np.nan] * len(rows), [np.nan] * len(rows)),
                    (100 * rows[f"{column}_lo"], 100 * rows[f"{column}_hi"]), colour,
                    label=f"camera {camera}" + (" (attacker)" if attacker else ""),
                    marker="D" if attacker else "o", emphasis=attacker)
            tried = sorted(select_panel(condemned, panel, panel_keys)["eps"].dropna().unique())
            for eps in tried:
                axis.axhline(100 * eps, color="#555555", linestyle="--", linewidth=0.8, zorder=1)
                axis.annotate(f"eps {eps:g}", (1.0, 100 * eps), xycoords=("axes fraction", "data"), xytext=(2, 0),
                              textcoords="offset points", fontsize=7.5, va="center", color="#555555")
            axis.axhline(0, color=figures.GREY, linewidth=0.8)
            slanted = len(rows) > 4
            axis.set_xticks(x, [f"{trigger}{' · ' if slanted else chr(10)}{pct:g} %"
                                for trigger, pct in zip(rows["trigger"], rows["poison_pct"])],
                            fontsize=7.5, rotation=30 if slanted else 0, ha="right" if slanted else "center",
                            rotation_mode="anchor")
            axis.set_xlim(-0.6, len(rows) - 0.4)
            axis.set_ylabel("Gain from leaving out (pp)")
            others = [k for k in shown_panel_keys if k != "mode"]
            axis.set_title(" · ".join(([panel_title(panel, others)] if others else []) + [f"{panel['mode']} mode"]),
                           fontsize=9.5)
            axis.legend(loc="best", fontsize=7.5, ncols=2)
        svg = figures.to_svg(figure)
    caption = ("Accuracy gained by training without each camera's segment (percentage points; mean over seeds with its "
               "95 % t interval; no bar: one seed). Vermilion diamonds: camera 3, the attacker's images (absent at "
               "0 % poison). Dashed: the eps values tried; a segment whose gain lies above a line is condemned at "
               "that eps.")
    if len(panels) > MAX_PANELS:
        caption += f" Only the first {MAX_PANELS} of {len(panels)} panels are drawn."
    return Figure("failures_dp_gains", "Data Provenance: each segment's accuracy gain against eps", svg, caption)

