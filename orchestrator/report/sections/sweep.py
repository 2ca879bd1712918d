"""Section "The sweep": its space, trial states, what it covers, versions, compute spent and saved,
errored trials and damaged row files."""

from __future__ import annotations

import math
import re

import pandas as pd

from orchestrator.report.model import Code, Paragraph, ReportContext, Section, Table
from orchestrator.report.sections.settings import CORE, format_value, heading, quote, setting_columns

STATES = ("done", "running", "errored", "pending")
AXIS_TITLES = {"source": "Source classes", "target": "Target classes"}
# Stage kinds in pipeline order; a result column's label maps to one (see stage_kind). ``defense``
# is the one stage of each defense in rows written before detection and retraining were split.
STAGE_KINDS = ("dataset", "poison", "train", "evaluate", "activations", "provenance_gains", "detection",
               "reclassification", "retrain", "pruning_curve", "pruning", "fine_tune", "defense")


def section(context: ReportContext) -> Section:
    """Always present: a report is of a sweep."""
    facts = context.facts
    blocks: list = [Paragraph(_states_sentence(facts.states))]
    if facts.space_yaml.strip():
        blocks.append(Code("The search space as recorded when the sweep started", facts.space_yaml, "yaml"))
    blocks.append(coverage_table(context))
    blocks.append(states_table(facts.states))
    if (versions := versions_table(context)) is not None:
        blocks.append(versions)
    if (compute := compute_table(context)) is not None:
        blocks.append(compute)
    if facts.errored:
        shown = pd.DataFrame(facts.errored, columns=["Trial", "Configuration", "Last line of the error"])
        data = pd.DataFrame(facts.errored, columns=["trial_id", "label", "last_line"])
        blocks.append(Table("errored_trials", f"Errored trials ({len(facts.errored)})", shown, data,
                            "bdsweep resume runs them again; their rows are missing from every number in this report."))
    if facts.damaged:
        blocks.append(Table("damaged_rows", f"Row files that could not be read ({len(facts.damaged)})",
                            pd.DataFrame({"File": facts.damaged}), pd.DataFrame({"path": facts.damaged}),
                            "Left out of every number in this report; bdsweep resume runs these trials again."))
    return Section("sweep", "The sweep", blocks)


def _states_sentence(states: dict[str, int]) -> str:
    total = sum(states.get(state, 0) for state in STATES)
    parts = ", ".join(f"{states.get(state, 0)} {state}" for state in STATES)
    return f"The sweep has {total} trials: {parts}."


def states_table(states: dict[str, int]) -> Table:
    """Trials per state, with the share of all trials."""
    counts = [int(states.get(state, 0)) for state in STATES]
    total = sum(counts)
    shares = [100.0 * count / total if total else float("nan") for count in counts]
    shown = pd.DataFrame({"State": list(STATES), "Trials": [str(c) for c in counts],
                          "Share of trials": [f"{share:.1f} %" if total else "–" for share in shares]})
    data = pd.DataFrame({"state": list(STATES), "trials": counts, "share_pct": shares})
    return Table("trial_states", "Trials by state", shown, data)


def coverage_table(context: ReportContext) -> Table:
    """The values each axis of the sweep takes among the rows read, and how many of their
    combinations the trials hold.

    Axes: dataset, model, trigger, poison %, the classes and configuration columns that vary
    (:func:`setting_columns`), seed and defense configuration.
    """
    varying = [c for c in setting_columns(context) if c not in CORE]
    axes = [("dataset", "Datasets"), ("model", "Models"), ("trigger", "Triggers"), ("poison_pct", "Poison % of source class"),
            *[(column, AXIS_TITLES.get(column, heading(column).capitalize())) for column in varying],
            ("seed", "Seeds"), ("pipeline", "Defense configurations")]
    columns = context.columns("results")
    axes = [(column, title) for column, title in axes if column in columns]
    names, counts, values = [], [], []
    for column, title in axes:
        distinct = [row[0] for row in context.connection.execute(
            f"SELECT DISTINCT {quote(column)} FROM results ORDER BY 1").fetchall()]
        names.append(title)
        counts.append(len(distinct))
        shown = [format_value(v) for v in distinct]
        # Dozens of configurations do not belong in one cell; the master table lists them.
        values.append(", ".join(shown) if len(shown) <= 12 else ", ".join(shown[:6]) + f", … ({len(shown) - 6} more)")
    n_rows, held = context.connection.execute(
        f"SELECT count(*), count(DISTINCT ({', '.join(quote(c) for c, _ in axes)})) FROM results").fetchone()
    shown = pd.DataFrame({"Axis": names, "Count": [str(c) for c in counts], "Values": values})
    data = pd.DataFrame({"axis": names, "count": counts, "values": values})
    return Table("coverage", "What the sweep covers", shown, data, coverage_note(n_rows, held, math.prod(counts),
                                                                                  context.facts.partial))


def coverage_note(n_trials: int, held: int, combinations: int, partial: bool) -> str:
    """How the trials read relate to the combinations of the axes' values: ``held`` of ``combinations``
    are among the ``n_trials`` trials."""
    note = (f"Over the {n_trials:,} trials with readable rows, which hold {held:,} of the {combinations:,} "
            "combinations of these values.")
    if held < combinations:
        reasons = ["the search space may pair some values with others only"]
        if partial:
            reasons.append("trials not done or not readable are missing (a partial report)")
        note += " Not every combination is a trial: " + "; ".join(reasons) + "."
    if n_trials > held:
        note += " Some combinations have more than one trial: they differ in a column not listed here."
    return note


def versions_table(context: ReportContext) -> Table | None:
    """Distinct code and library versions among the rows, with how many trials ran on each."""
    columns = sorted(c for c in context.columns("results") if c.endswith("_version"))
    if not columns:
        return None
    ordered = [c for c in columns if c == "code_version"] + [c for c in columns if c != "code_version"]
    # A package is named by its column's position, never by a name spliced into the SQL.
    sql = " UNION ALL ".join(f"SELECT {i} AS k, CAST({quote(c)} AS VARCHAR) AS version, count(*) AS trials "
                             "FROM results GROUP BY 2" for i, c in enumerate(ordered))
    data = context.frame(f"SELECT k, version, trials FROM ({sql}) ORDER BY k, trials DESC, version")
    data.insert(0, "package", [ordered[k].removesuffix("_version") for k in data.pop("k")])
    data["trials"] = data["trials"].astype("int64")
    mixed = sorted(set(data.loc[data.duplicated("package", keep=False), "package"]))
    shown = pd.DataFrame({"Package": data["package"].replace({"code": "bdsweep code (git)"}),
                          "Version": data["version"].fillna("–"), "Trials": data["trials"].astype(str)})
    note = ("Mixed versions: " + ", ".join(mixed) + " — trials ran on different code or libraries; compare with care."
            if mixed else "Every trial ran on the same code and library versions.")
    return Table("versions", "Code and library versions", shown, data, note)


def stage_kind(label: str) -> str:
    """The kind of stage a result-column label names: ``d2_activations`` → ``activations``,
    ``d1_judge_retrain`` → ``retrain``, ``evaluate_after`` → ``evaluate``; in older rows ``d1`` and
    ``d1_defense`` → ``defense``."""
    from tasks.plan import known_stages

    if re.fullmatch(r"d\d+(?:_defense)?", label):
        return "defense"
    if label.startswith("evaluate_"):
        return "evaluate"
    # A step's label ends with its stage's name (d1_judge_retrain: retrain); the longest match wins.
    for name in sorted(known_stages(), key=len, reverse=True):
        if label == name or label.endswith(f"_{name}"):
            return name
    return label


def compute_table(context: ReportContext) -> Table | None:
    """Seconds per stage kind, computed by this sweep's trials versus reused from the cache.

    A reused stage's seconds are what its artifact took when it was computed: the time reuse saved.
    """
    columns = context.columns("results")
    labels = [c.removesuffix("_seconds") for c in columns
              if c.endswith("_seconds") and c.removesuffix("_seconds") + "_computed" in columns]
    if not labels:
        return None
    union = " UNION ALL ".join(
        f"SELECT '{stage_kind(label)}' AS kind, {quote(label + '_seconds')} AS seconds, "
        f"{quote(label + '_computed')} AS computed FROM results WHERE {quote(label + '_seconds')} IS NOT NULL"
        for label in labels)
    data = context.frame(
        f"SELECT kind, count(*) FILTER (WHERE computed) AS n_computed, "
        f"coalesce(sum(seconds) FILTER (WHERE computed), 0) AS seconds_computed, "
        f"count(*) FILTER (WHERE NOT computed) AS n_reused, "
        f"coalesce(sum(seconds) FILTER (WHERE NOT computed), 0) AS seconds_reused FROM ({union}) GROUP BY kind")
    order = {kind: i for i, kind in enumerate(STAGE_KINDS)}
    data = data.sort_values("kind", key=lambda kinds: kinds.map(lambda k: order.get(k, len(order)))).reset_index(drop=True)
    total = data[["n_computed", "seconds_computed", "n_reused", "seconds_reused"]].sum()
    data = pd.concat([data, pd.DataFrame([{"kind": "total", **total.to_dict()}])], ignore_index=True)
    for column in ("n_computed", "n_reused"):
        data[column] = data[column].astype("int64")
    spent = data["seconds_computed"] + data["seconds_reused"]
    data["saved_pct"] = (100.0 * data["seconds_reused"] / spent.where(spent > 0)).astype(float)
    shown = pd.DataFrame({
        "Stage": data["kind"].str.replace("_", " "),
        "Computed": data["n_computed"].astype(str),
        "Compute time": [format_duration(s) for s in data["seconds_computed"]],
        "Reused": data["n_reused"].astype(str),
        "Time saved by reuse": [format_duration(s) for s in data["seconds_reused"]],
        "Saved": [f"{v:.1f} %" if pd.notna(v) else "–" for v in data["saved_pct"]],
    })
    trial_seconds = ""
    if "trial_seconds" in columns:
        total_wall = context.connection.execute("SELECT sum(trial_seconds) FROM results").fetchone()[0] or 0.0
        trial_seconds = f" Trials ran for {format_duration(total_wall)} in all (sum of trial times, overhead included)."
    note = ("Computed: stages this sweep's trials ran; reused: stages found in the cache (computed by an earlier "
            "trial or sweep), timed at what they took when computed — the time the cache saved. "
            "Saved: reused time as a share of computed plus reused." + trial_seconds)
    return Table("compute", "Compute per stage: computed versus reused from the cache", shown, data, note)


def format_duration(seconds: float) -> str:
    """``42 s``, ``12.5 min``, ``3.2 h``: seconds in the unit a reader takes in at a glance."""
    if seconds is None or pd.isna(seconds):
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
