"""Section "Master table": every defense configuration on every attack setting — clean accuracy and
ASR after the defense, and DER.

A few configurations fit as column groups beside the attack settings; they are split into tables of
:func:`per_table` configurations each. With more than ``MAX_WIDE`` configurations that would be dozens of
tables, so the table turns: one per attack setting, a row per configuration.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator.report.model import Paragraph, ReportContext, Section, Table
from orchestrator.report.sections.settings import (
    DER_FORMULA,
    der_cells,
    estimate_cells,
    file_stem,
    heading,
    panel_title,
    pipeline_order,
    setting_columns,
    shown_keys,
)
from orchestrator.report.stats import aggregate

METRICS = {"clean_acc_after": "Clean acc. (%)", "asr_after": "ASR (%)", "der": "DER",
           "defense_seconds": "Defense compute (s)"}
METRIC_COLUMNS = 6  # two-line cells a table holds beside the attack setting's columns in the 960 px text
MAX_WIDE = 12  # more configurations than this: one table per attack setting instead

DEFINITION = (f"Cells: mean [95 % CI] n = seeds after the defense; clean accuracy and ASR in percent. {DER_FORMULA}; "
              "– where there is no defense. Defense compute: seconds the defense's stages took per model (a stage "
              "reused from the cache counts what it took when computed), with an input filter's screening of the "
              "test inputs.")
NOTE = ("Cells: mean [95 % CI] n = seeds after the defense; clean accuracy and ASR in percent, DER from 0 to 1 "
        "(0.5 = no effect, 1 = backdoor gone at no cost), defense compute in seconds per model.")


def section(context: ReportContext) -> Section | None:
    """None when the rows have no after-defense metrics."""
    columns = context.columns("results")
    metrics = [m for m in METRICS if m in columns]
    if "asr_after" not in columns:
        return None
    keys = setting_columns(context)
    stats = aggregate(context.connection, "results", [*keys, "pipeline"], metrics)
    if stats.empty:
        return None
    pipelines = pipeline_order(stats["pipeline"])
    if len(pipelines) <= MAX_WIDE:
        tables = wide_tables(stats, keys, metrics, pipelines)
        n = per_table(len(metrics))
        how = (f"Rows are attack settings; each group of columns is one defense configuration "
               f"({n} per table, so that a table fits the page).")
    else:
        tables = per_setting_tables(stats, keys, metrics, pipelines)
        how = (f"The sweep has {len(pipelines)} defense configurations, too many to set side by side: each table is "
               f"one attack setting, with a row per configuration, always in the same order: no defense first, then "
               f"the controls, single defenses and combinations.")
    served = ("" if "served_asr" not in columns else
              " Where a configuration ends in an input filter, 'after' is what it serves: a rejected input counts "
              "as neither correct nor a backdoor success, so its ASR, clean accuracy and DER are the filter's, not "
              "the model's (which it leaves unchanged).")
    intro = Paragraph(f"Every defense configuration on every attack setting. {how} {DEFINITION}{served}")
    return Section("master", "Master table: every defense on every attack", [intro, *tables])


def per_table(n_metrics: int) -> int:
    """Configurations a wide table sets side by side when each shows ``n_metrics`` columns: as many
    as ``METRIC_COLUMNS`` allows, at least one (2 with clean accuracy, ASR and DER; 1 with defense
    compute beside them, which made two groups 1,290-1,400 px wide)."""
    return max(1, METRIC_COLUMNS // n_metrics)


def wide_tables(stats: pd.DataFrame, keys: list[str], metrics: list[str], pipelines: list[str]) -> list[Table]:
    """Rows = attack settings, column groups = configurations, :func:`per_table` configurations a table."""
    settings = stats[keys].drop_duplicates().reset_index(drop=True)
    row_keys = shown_keys(settings, keys)
    n = per_table(len(metrics))
    chunks = [pipelines[i:i + n] for i in range(0, len(pipelines), n)]
    tables = []
    for number, chunk in enumerate(chunks, start=1):
        shown = {(title, ""): values for title, values in row_keys.items()}
        for pipeline in chunk:
            per_setting = settings.merge(stats[stats["pipeline"] == pipeline], on=keys, how="left")
            for metric in metrics:
                filled = per_setting.fillna({f"{metric}_n": 0})
                shown[(pipeline, METRICS[metric])] = _cells(filled, metric)
        frame = pd.DataFrame(shown)
        frame.columns = pd.MultiIndex.from_tuples(frame.columns)
        data = stats[stats["pipeline"].isin(chunk)].reset_index(drop=True)
        part = f" (part {number} of {len(chunks)})" if len(chunks) > 1 else ""
        tables.append(Table(f"master_{number}" if len(chunks) > 1 else "master",
                            f"Defenses by attack setting{part}: " + ", ".join(chunk), frame, data, NOTE))
    return tables


def per_setting_tables(stats: pd.DataFrame, keys: list[str], metrics: list[str], pipelines: list[str]) -> list[Table]:
    """One table per attack setting, a row per configuration (in ``pipelines`` order)."""
    rank = {pipeline: i for i, pipeline in enumerate(pipelines)}
    tables = []
    shown_setting = [k for k in keys if stats[k].nunique() > 1 or k in ("trigger", "poison_pct")]
    for setting, part in stats.groupby(keys, sort=True):
        part = part.sort_values("pipeline", key=lambda p: p.map(rank)).reset_index(drop=True)
        shown = pd.DataFrame({heading("pipeline"): part["pipeline"]})
        for metric in metrics:
            shown[METRICS[metric]] = _cells(part, metric)
        values = dict(zip(keys, setting if isinstance(setting, tuple) else (setting,)))
        title = "Defenses on " + panel_title(values, shown_setting)
        tables.append(Table(file_stem("master", *[values[k] for k in shown_setting]), title, shown, part, NOTE))
    return tables


def _cells(frame: pd.DataFrame, metric: str) -> list[str]:
    if metric == "defense_seconds":
        return estimate_cells(frame, metric, scale=1.0, digits=0, bounds=(0.0, np.inf))
    return der_cells(frame) if metric == "der" else estimate_cells(frame, metric)
