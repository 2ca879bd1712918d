"""Section "Controls": each filtering defense beside random removal of as many samples and beside
perfect removal of exactly the poison.

A ``random_filter`` with ``same_as`` removes, at random, as many training samples as the named
defense configuration flags on the same model; ``perfect_filter`` removes exactly the poisoned ones.
Set beside the defense, per attack setting, they say how much of its effect removal alone explains:
``(asr_before − asr_random) / (asr_before − asr_defense)`` of the means, defined where the defense
lowered the mean ASR.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from orchestrator.report.model import Paragraph, ReportContext, Section, Table
from orchestrator.report.sections.settings import estimate_cells, file_stem, quote, setting_columns, shown_keys, spread
from orchestrator.report.stats import aggregate

ROLES = ("defense", "random", "perfect")
ROLE_TITLES = (("defense", "Defense"), ("random", "Random, same count"), ("perfect", "Perfect removal"))
METRICS = ("asr_before", "asr_after", "clean_acc_before", "clean_acc_after", "removed")


def section(context: ReportContext) -> Section | None:
    """None when no random_filter(same_as=...) names a defense configuration the sweep ran alone."""
    columns = context.columns("results")
    if not {"d1_name", "d1_same_as", "n_defenses", "asr_after", "clean_acc_after"} <= columns:
        return None
    keys = setting_columns(context)
    controls = context.frame(
        "SELECT DISTINCT d1_same_as AS same_as, d1_retrain AS retrain FROM results "
        "WHERE n_defenses = 1 AND d1_name = 'random_filter' AND d1_same_as IS NOT NULL ORDER BY 1, 2"
        if "d1_retrain" in columns else
        "SELECT DISTINCT d1_same_as AS same_as, NULL AS retrain FROM results "
        "WHERE n_defenses = 1 AND d1_name = 'random_filter' AND d1_same_as IS NOT NULL ORDER BY 1")
    blocks: list = []
    for index, control in enumerate(controls.itertuples(index=False), start=1):
        rows = _control_rows(context, keys, control.same_as, control.retrain)
        if rows is None:
            continue
        blocks += _control_blocks(context, keys, index, rows)
    if not blocks:
        return None
    intro = Paragraph(
        "Each filtering defense configuration named by a random_filter(same_as=...) stands beside that control "
        "(as many training samples removed at random, then the same retraining) and beside perfect_filter "
        "(exactly the poisoned samples removed, same retraining). 'Removal alone explains' is "
        "(ASR before − ASR after random) / (ASR before − ASR after defense), from the means over seeds; it is "
        "defined only where the defense lowered the mean ASR. 100 % means random removal of the same count "
        "did as well as the defense, so detection added nothing; 0 % means the whole drop came from what the "
        "defense chose to remove. Cells: mean [95 % CI] n = seeds, in percent.")
    return Section("controls", "Controls: random and perfect removal beside each filtering defense", [intro, *blocks])


def _control_rows(context: ReportContext, keys: list[str], same_as: str, retrain: Any) -> tuple[str, str] | None:
    """``(label, query)``: the defense configuration ``same_as`` names, and a parenthesised query of its
    rows, the control's and perfect removal's, tagged by ``role``; None when the sweep ran no
    single-defense configuration with those parameters."""
    columns = context.columns("results")
    (name, params), = json.loads(same_as).items()
    # ``same_as`` fixes retrain to none (only the count is used); the control's own retrain is what
    # the defense it is compared with must share.
    conditions = [f"d1_name = {_literal(name)}"]
    for param, value in sorted(params.items()):
        if param == "retrain":
            continue
        if f"d1_{param}" not in columns:
            return None
        conditions.append(f"{quote('d1_' + param)} IS NOT DISTINCT FROM {_literal(value)}")
    same_retrain = f"d1_retrain IS NOT DISTINCT FROM {_literal(retrain)}" if "d1_retrain" in columns else "TRUE"
    defense = " AND ".join(conditions + [same_retrain, "n_defenses = 1"])
    labels = context.frame(f"SELECT min(pipeline) AS label, count(*) AS n FROM results WHERE {defense}")
    if not labels["n"].iloc[0]:
        return None
    setting = ", ".join(quote(k) for k in keys)
    removed = "d1_removed_total" if "d1_removed_total" in columns else "NULL"
    select = (f"{setting}, seed, asr_before, asr_after, clean_acc_before, clean_acc_after, "
              f"{removed}::DOUBLE AS removed, pipeline")
    query = f"""(
        SELECT 'defense' AS role, * EXCLUDE (pipeline) FROM (SELECT {select} FROM results WHERE {defense})
        -- one configuration may carry several labels (parameters written out or left to defaults)
        QUALIFY row_number() OVER (PARTITION BY {setting}, seed ORDER BY pipeline) = 1
        UNION ALL
        SELECT 'random', * EXCLUDE (pipeline) FROM (SELECT {select} FROM results
            WHERE n_defenses = 1 AND d1_name = 'random_filter' AND d1_same_as = {_literal(same_as)} AND {same_retrain})
        UNION ALL
        SELECT 'perfect', * EXCLUDE (pipeline) FROM (SELECT {select} FROM results
            WHERE n_defenses = 1 AND d1_name = 'perfect_filter' AND {same_retrain}))"""
    return labels["label"].iloc[0], query


def _control_blocks(context: ReportContext, keys: list[str], index: int, rows: tuple[str, str]) -> list:
    label, query = rows
    means = aggregate(context.connection, query, [*keys, "role"], list(METRICS))
    wide = spread(means, keys, "role", ROLES, [f"{m}_{p}" for m in METRICS for p in ("mean", "lo", "hi", "n")])
    # Settings where the defense itself did not run have nothing to compare.
    wide = wide[wide["defense_asr_after_n"] > 0].reset_index(drop=True)
    if wide.empty:
        return []
    wide["explained"] = explained_share(wide["defense_asr_before_mean"], wide["defense_asr_after_mean"],
                                        wide["random_asr_after_mean"])
    blocks: list = [Paragraph(_summary(label, wide))]
    for (dataset, model), group in wide.groupby(["dataset", "model"], sort=True):
        group = group.reset_index(drop=True)
        setting = {(title, ""): values for title, values in shown_keys(group, keys).items()}
        asr_table = pd.DataFrame({
            **setting,
            ("ASR before (%)", ""): estimate_cells(group, "defense_asr_before"),
            **{("ASR after (%)", title): estimate_cells(group, f"{role}_asr_after") for role, title in ROLE_TITLES},
            ("Removed (samples)", ""): estimate_cells(group, "defense_removed", scale=1.0, digits=0, bounds=None),
            ("Removal alone explains", ""): group["explained"].map(describe_share),
        })
        clean = pd.DataFrame({
            **setting,
            ("Clean acc. before (%)", ""): estimate_cells(group, "defense_clean_acc_before"),
            **{("Clean acc. after (%)", title): estimate_cells(group, f"{role}_clean_acc_after")
               for role, title in ROLE_TITLES},
        })
        for frame in (asr_table, clean):
            frame.columns = pd.MultiIndex.from_tuples(frame.columns)
        data = group.assign(defense=label)
        blocks.append(Table(file_stem("controls", index, "asr", dataset, model),
                            f"{label} against its controls on {dataset} / {model}: ASR", asr_table, data,
                            "Mean [95 % CI] n = seeds. 'Removed' is the defense's own count, which the random "
                            "control copies."))
        blocks.append(Table(file_stem("controls", index, "clean", dataset, model),
                            f"{label} against its controls on {dataset} / {model}: clean accuracy", clean, data,
                            "Mean [95 % CI] n = seeds."))
    return blocks


def explained_share(asr_before: pd.Series, asr_defense: pd.Series, asr_random: pd.Series) -> pd.Series:
    """``(asr_before − asr_random) / (asr_before − asr_defense)``, NaN where the defense did not lower
    ASR (denominator ≤ 0) or a mean is missing. All arguments are mean asr fractions, elementwise."""
    drop = asr_before - asr_defense
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (asr_before - asr_random) / drop
    return share.where(drop > 0)


def describe_share(share: float) -> str:
    """The explained share in words: ``40 % of the drop``, or why it is undefined or beyond 0–100 %."""
    if pd.isna(share):
        return "– (the defense did not lower ASR)"
    if share < 0:
        return f"none: random removal raised ASR ({share * 100:.0f} %)"
    if share > 1:
        return f"all: random removal lowered ASR more ({share * 100:.0f} %)"
    return f"{share * 100:.0f} % of the drop"


def _summary(label: str, wide: pd.DataFrame) -> str:
    defined = wide["explained"].dropna()
    compared = int(wide["random_asr_after_n"].fillna(0).gt(0).sum())
    text = f"{label}: compared with random removal of the same count in {compared} attack settings"
    if defined.empty:
        return text + "; it lowered the mean ASR in none of them, so removal alone explains nothing to measure."
    low, median, high = (100 * value for value in (defined.min(), defined.median(), defined.max()))
    text += (f"; in the {len(defined)} where it lowered the mean ASR, removal alone explains a median of "
             f"{median:.0f} % of its drop (from {low:.0f} % to {high:.0f} %).")
    perfect = wide["perfect_asr_after_mean"].dropna()
    if not perfect.empty:
        text += f" Perfect removal of the poison reaches a mean ASR after of {100 * perfect.mean():.1f} %."
    return text


def _literal(value: Any) -> str:
    """``value`` (from JSON or a DataFrame) as a SQL literal."""
    if value is None or (not isinstance(value, (str, dict, list)) and pd.isna(value)):
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return repr(float(value)) if isinstance(value, (float, np.floating)) else str(int(value))
    return "'" + str(value).replace("'", "''") + "'"

