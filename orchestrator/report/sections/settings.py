"""What identifies an attack setting in a sweep's rows, and how sections show settings and estimates.

An attack setting is (dataset, model, trigger, poison_pct), plus source and target when the sweep
varies them, plus every ``dataset_*`` and ``train_*`` configuration column that takes more than one
value (a sweep may grid over epochs, say): rows that differ there come from different models and
must never share a mean.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from orchestrator.report.model import ReportContext
from orchestrator.report.stats import format_estimate
from orchestrator.results import quote_identifier

CORE = ("dataset", "model", "trigger", "poison_pct")
NO_DEFENSE = "none"


def defenses_in_role(*roles: str) -> tuple[str, ...]:
    """Names of the registered defenses (plugins too) that declare one of ``roles``
    (:attr:`tasks.methods.Defense.role`: ``control``, ``oracle``)."""
    from tasks.registry import registry

    return tuple(sorted(name for name, method in registry().defenses.items() if getattr(method, "role", "defense") in roles))


def without_oracle_sql() -> str:
    """SQL: the row's pipeline names no oracle. An oracle knows the poison, so never a recommendation;
    a control copying its count (``random_filter(same_as=perfect_filter)``), or a chain holding it,
    names it and knows the poison as well."""
    return " AND ".join(f"pipeline NOT LIKE '%{name}%'" for name in defenses_in_role("oracle")) or "TRUE"
# Columns of a row that start like configuration columns but record cost or provenance.
_NOT_CONFIG = re.compile(r".*_(seconds|computed|key)$|dataset_fingerprint$")  # results.STEP_SUFFIXES

HEADINGS = {"dataset": "Dataset", "model": "Model", "source": "Source class", "target": "Target class",
            "trigger": "Trigger", "poison_pct": "Poison %", "pipeline": "Defense configuration", "seed": "Seed"}


quote = quote_identifier  # short, since sections quote many columns

# DER is a score from 0 to 1, not a share: every section shows it on that scale with these decimals.
DER_DIGITS = 3
DER_FORMULA = ("DER (defense effectiveness rating) = [max(0, asr_before − asr_after) − max(0, clean_acc_before − "
               "clean_acc_after) + 1] / 2, from 0 to 1: 0.5 = no effect, 1 = backdoor removed at no cost")


# Said under every interval that pools trials of different attack settings (a poison percentage, a
# trigger): such an interval is no measure of seed-to-seed sampling error alone.
POOLED_INTERVAL = ("Intervals over pooled trials mix seed-to-seed with setting-to-setting spread: they say how "
                   "much the pooled trials differ, not only how much a mean would move with other seeds.")


def setting_columns(context: ReportContext) -> list[str]:
    """Columns of ``results`` that together identify one attack setting (one model per seed).

    Always :data:`CORE`; ``source`` and ``target`` and configuration columns (``dataset_*``,
    ``train_*``) only when they take more than one value in the sweep.
    """
    if "setting_columns" not in context.memo:
        context.memo["setting_columns"] = _setting_columns(context)
    return list(context.memo["setting_columns"])


def _setting_columns(context: ReportContext) -> list[str]:
    described = context.connection.execute("DESCRIBE results").fetchall()
    candidates = [name for name, kind, *_ in described
                  if (name in ("source", "target") or name.startswith(("dataset_", "train_")))
                  and not _NOT_CONFIG.fullmatch(name) and "[]" not in kind and not kind.startswith(("STRUCT", "MAP"))]
    if not candidates:
        return list(CORE)
    counts = context.connection.execute(
        "SELECT " + ", ".join(f"count(DISTINCT {quote(c)})" for c in candidates) + " FROM results").fetchone()
    varying = [column for column, count in zip(candidates, counts) if count > 1]
    classes = [c for c in ("source", "target") if c in varying]
    config = [c for c in varying if c not in ("source", "target")]
    return ["dataset", "model", *classes, "trigger", "poison_pct", *config]


def backdoored_models_sql(keys: Iterable[str], values: Mapping[str, str] | Iterable[str], where: str = "TRUE") -> str:
    """A parenthesised query over ``results`` with one row per backdoored model — (``keys``, seed) —
    and its before-defense ``values``.

    Every pipeline of one (setting, seed) starts from the same model, so its before-values repeat on
    each of them; one row per model keeps a model from counting several times in n. A value is taken
    from the ``none`` row where the model has one.

    Parameters
    ----------
    keys : the attack-setting columns (:func:`setting_columns`, or fewer where the section pools)
    values : output name → column of ``results`` (``{"asr": "asr_before"}``), or columns kept by name
    where : SQL condition on the rows of ``results``
    """
    values = dict(values) if isinstance(values, Mapping) else {column: column for column in values}
    group = ", ".join(quote(k) for k in [*keys, "seed"])
    selected = ", ".join(
        f"coalesce(any_value({quote(column)}) FILTER (WHERE pipeline = '{NO_DEFENSE}'), any_value({quote(column)})) "
        f"AS {quote(name)}" for name, column in values.items())
    return f"(SELECT {group}, {selected} FROM results WHERE {where} GROUP BY {group})"


def heading(column: str) -> str:
    """A column's heading in a table: ``poison_pct`` → ``Poison %``, ``train_epochs`` → ``train epochs``."""
    return HEADINGS.get(column, column.replace("_", " "))


def format_value(value: object) -> str:
    """A key value as shown: ``4.0`` → ``4``, ``0.5`` → ``0.5``, None → ``–``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def shown_keys(frame: pd.DataFrame, columns: Iterable[str], keep: Iterable[str] = ("trigger", "poison_pct")) -> pd.DataFrame:
    """The key columns of ``frame`` as display strings under their headings.

    Columns other than ``keep`` that hold one value throughout ``frame`` are left out (a table of
    one dataset does not repeat its name on every row).
    """
    keep = set(keep)
    shown = {}
    for column in columns:
        if column not in keep and frame[column].nunique(dropna=False) <= 1:
            continue
        shown[heading(column)] = [format_value(v) for v in frame[column].tolist()]
    return pd.DataFrame(shown, index=frame.index)


def estimate_cells(frame: pd.DataFrame, metric: str, scale: float = 100.0, digits: int = 1,
                   bounds: tuple[float, float] | None = (0.0, 1.0)) -> list[str]:
    """``format_estimate`` of each row's ``<metric>_mean/_lo/_hi/_n`` (one call per group, not per trial row).

    ``bounds`` cuts the interval at the metric's range (a fraction cannot pass 0 or 1, though a
    t interval of three seeds near 100 % does); None leaves it, for differences.
    """
    lower, upper = frame[f"{metric}_lo"].to_numpy(dtype=float), frame[f"{metric}_hi"].to_numpy(dtype=float)
    if bounds is not None:
        lower, upper = np.clip(lower, *bounds), np.clip(upper, *bounds)
    return [format_estimate(mean, low, high, int(n), scale=scale, digits=digits) for mean, low, high, n in
            zip(frame[f"{metric}_mean"], lower, upper, frame[f"{metric}_n"])]


def spread(frame: pd.DataFrame, keys: list[str], by: str, levels: Sequence[str], values: Sequence[str]) -> pd.DataFrame:
    """Long to wide: one row per distinct ``keys`` of ``frame``, a column ``<level>_<value>`` per level of
    column ``by`` (in ``levels`` order) and per ``values`` column; counts (``*_n``) are 0 where a level
    has no row for those keys, other values NaN.

    ``frame`` holds at most one row per (``keys``, ``by``), such as :func:`aggregate`'s answer.
    """
    # unstack, not pivot_table: only the keys some level has, never the product of the key values
    wide = frame.set_index([*keys, by])[list(values)].unstack(by)
    wide.columns = [f"{level}_{column}" for column, level in wide.columns]
    spread_columns = [f"{level}_{value}" for level in levels for value in values]
    wide = wide.reindex(columns=spread_columns).reset_index()
    counts = [c for c in spread_columns if c.endswith("_n")]
    wide[counts] = wide[counts].fillna(0).astype("int64")
    return wide


def der_cells(frame: pd.DataFrame) -> list[str]:
    """:func:`estimate_cells` of ``der`` on its own 0–1 scale (``0.734 [0.712, 0.756] n=3``)."""
    return estimate_cells(frame, "der", scale=1.0, digits=DER_DIGITS)


def pipeline_order(pipelines: Iterable[str]) -> list[str]:
    """Defense configurations in reading order: no defense, the controls, single defenses, then
    combinations; alphabetical within each."""
    def rank(label: str) -> tuple[int, str]:
        if label == NO_DEFENSE:
            return 0, label
        if ">" in label:
            return 3, label
        return (1 if label.split("(")[0] in controls else 2), label

    controls = defenses_in_role("control", "oracle")

    return sorted(set(pipelines), key=rank)


def uses_oracle(label: str) -> bool:
    """Whether a defense configuration knows which samples are poisoned (see :func:`without_oracle_sql`)."""
    return any(name in label for name in defenses_in_role("oracle"))


def defense_family(label: str) -> str:
    """The defense a configuration is made of (``ac``, ``fp``, ...), or ``combination`` for a chain."""
    return "combination" if ">" in label else label.split("(")[0]


def file_stem(*parts: object) -> str:
    """A name usable for a summary or figure file: letters, digits and ``_`` only."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", "_".join(format_value(p) for p in parts)).strip("_").lower()


def panel_title(row: pd.Series | dict, columns: Iterable[str]) -> str:
    """``gtsrb · gtsrb_cnn · yellow_square · 4 % poison · train epochs 10``: the values of ``columns`` in
    one row, for a panel's title; a value that does not name itself (a class, a configuration) gets
    its heading."""
    def part(column: str) -> str:
        if column == "poison_pct":
            return f"{format_value(row[column])} % poison"
        if column in ("dataset", "model", "trigger", "pipeline"):
            return format_value(row[column])
        return f"{heading(column).lower()} {format_value(row[column])}"

    return " · ".join(part(c) for c in columns)


def select_panel(frame: pd.DataFrame, panel: pd.Series | dict, keys: list[str]) -> pd.DataFrame:
    """The rows of ``frame`` whose ``keys`` equal ``panel``'s (one figure panel's data)."""
    return frame[np.logical_and.reduce([frame[key] == panel[key] for key in keys])]


def rate_cells(frame: pd.DataFrame, rate: str) -> list[str]:
    """``75.0 [60.1, 86.0] n=3`` per row: a detection rate in percent, the mean of the models' rates with
    its 95 % t interval and n = models (:func:`~orchestrator.report.stats.detection_rates`), ``75.0 (n = 1)``
    for one model (no interval), ``–`` without a rate. :func:`pooled_cells` writes the counts beside it."""
    return [format_estimate(value, low, high, int(n)) for value, low, high, n in
            zip(frame[rate], frame[f"{rate}_lo"], frame[f"{rate}_hi"], frame[f"{rate}_n"].fillna(0))]


# The summed counts each detection rate is a ratio of, as columns of detection_rates' frames.
POOLED_COUNTS = {"tpr": (("tp",), ("tp", "fn")), "fpr": (("fp",), ("fp", "tn")),
                 "removed_share": (("tp", "fp"), ("seen",))}


def pooled_cells(frame: pd.DataFrame, rate: str) -> list[str]:
    """``37/42`` per row: the counts of every model summed, hits over total, that ``rate`` is the
    ratio of when pooled (TP / (TP + FN) for ``tpr``); ``–`` where the total is 0 or missing."""
    hits_columns, total_columns = POOLED_COUNTS[rate]
    hits = sum(frame[column].fillna(0) for column in hits_columns)
    totals = sum(frame[column].fillna(0) for column in total_columns)
    return [f"{int(k):,}/{int(n):,}" if n > 0 else "–" for k, n in zip(hits, totals)]
