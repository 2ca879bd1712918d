"""Section "Trade-off": what each defense configuration costs in clean accuracy against the backdoor
success it leaves, with the Pareto front of configurations no other beats on both.

The front is drawn over the configurations a defender can run: ``perfect_filter`` (and any
configuration that knows the poison through it) is drawn as a reference beside them, never on it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from orchestrator.report import figures
from orchestrator.report.model import Figure, Paragraph, ReportContext, Section, Table
from orchestrator.report.sections.settings import (
    POOLED_INTERVAL,
    backdoored_models_sql,
    defense_family,
    estimate_cells,
    panel_title,
    pipeline_order,
    quote,
    select_panel,
    setting_columns,
    shown_keys,
    defenses_in_role,
    uses_oracle,
)
from orchestrator.report.stats import aggregate

MAX_PANELS = 6  # (dataset, model, trigger) panels drawn; the front table lists every panel
MAX_BARRED = 40  # beyond this many configurations in a panel, only front points keep their bars
ORACLE_LABEL = "oracle (knows the poison)"

CAPTION = ("One point per defense configuration: mean clean-accuracy drop (percentage points, before − after) "
           "against mean ASR after the defense, over every seed and poison percentage of the trigger (n = seeds × "
           "poison percentages); bars are 95 % t intervals over those pooled trials. Lower left is better. The "
           "dashed staircase joins the Pareto front — configurations no other beats on both — labelled by their "
           "number in the table below; the grey line is the ASR with no defense.")
ORACLE_CAPTION = (" Stars are configurations that name an oracle ({names}): it reads which samples are poison, so it "
                  "is a yardstick, left out of the front.")


def section(context: ReportContext) -> Section | None:
    """None when the sweep has no defended trials."""
    columns = context.columns("results")
    if not {"clean_acc_before", "clean_acc_after", "asr_after", "n_defenses"} <= columns:
        return None
    keys = setting_columns(context)
    panel_keys = [k for k in keys if k != "poison_pct"]
    drops = (f"(SELECT {', '.join(quote(k) for k in panel_keys)}, pipeline, "
             f"clean_acc_before - clean_acc_after AS drop, asr_after FROM results WHERE n_defenses > 0)")
    points = aggregate(context.connection, drops, [*panel_keys, "pipeline"], ["drop", "asr_after"])
    if points.empty:
        return None
    baseline = aggregate(context.connection, backdoored_models_sql(keys, {"asr": "asr_before"}), panel_keys, ["asr"])
    numbers = {pipeline: i for i, pipeline in enumerate(pipeline_order(points["pipeline"]), start=1)}
    points["number"] = points["pipeline"].map(numbers)
    points["oracle"] = points["pipeline"].map(uses_oracle)
    points["on_front"] = False
    candidates = points[~points["oracle"]]
    for _, index in candidates.groupby(panel_keys, sort=False, dropna=False).groups.items():
        front = figures.pareto_front(points.loc[index, "drop_mean"], points.loc[index, "asr_after_mean"])
        points.loc[index, "on_front"] = front
    panels = points[panel_keys].drop_duplicates().reset_index(drop=True)
    blocks = [
        Paragraph("How much clean accuracy each defense configuration gives up for how much backdoor success it "
                  "leaves, one panel per trigger. A configuration on the Pareto front is one no other configuration "
                  "beats on both counts; which of them to pick depends on the accuracy one can spare."),
        tradeoff_figure(points, baseline, panels, panel_keys),
        front_table(points, panel_keys),
    ]
    return Section("tradeoff", "Trade-off: clean accuracy against backdoor success", blocks)


def tradeoff_figure(points: pd.DataFrame, baseline: pd.DataFrame, panels: pd.DataFrame, panel_keys: list[str]) -> Figure:
    """Drop (pp) against ASR after (%) per panel: points coloured by defense, front emphasised and numbered."""
    drawn = panels.iloc[:MAX_PANELS]
    families = sorted({defense_family(p) for p in points.loc[~points["oracle"], "pipeline"]},
                      key=lambda f: (f == "combination", f))
    family_colour = {family: figures.colour(i) for i, family in enumerate(families)}
    shown_keys_ = [k for k in panel_keys if panels[k].nunique() > 1] or ["trigger"]
    crowded = False
    with figures.panels(len(drawn), max_columns=2, panel_size=(4.7, 3.6), name="tradeoff") as (figure, axes):
        for axis, (_, panel) in zip(axes, drawn.iterrows()):
            mine = select_panel(points, panel, panel_keys)
            crowded |= len(mine) > MAX_BARRED
            oracle, mine = mine[mine["oracle"]], mine[~mine["oracle"]]
            if not oracle.empty:
                asr_interval = (100 * oracle["asr_after_lo"].clip(0, 1), 100 * oracle["asr_after_hi"].clip(0, 1))
                figures.reference_points(axis, 100 * oracle["drop_mean"], 100 * oracle["asr_after_mean"],
                                         (100 * oracle["drop_lo"], 100 * oracle["drop_hi"]), asr_interval)
            for family in families:
                for emphasis in (False, True):
                    subset = mine[(mine["pipeline"].map(defense_family) == family) & (mine["on_front"] == emphasis)]
                    if subset.empty:
                        continue
                    # Hundreds of bars would hide the points; a point without bars keeps its place.
                    barred = emphasis or len(mine) <= MAX_BARRED
                    figures.points_with_error_bars(
                        axis, 100 * subset["drop_mean"], 100 * subset["asr_after_mean"],
                        (100 * subset["drop_lo"], 100 * subset["drop_hi"]) if barred else (subset["drop_mean"] * 100,) * 2,
                        (100 * subset["asr_after_lo"].clip(0, 1), 100 * subset["asr_after_hi"].clip(0, 1)) if barred
                        else (subset["asr_after_mean"] * 100,) * 2,
                        family_colour[family], marker=figures.MARKERS[families.index(family) % len(figures.MARKERS)],
                        emphasis=emphasis)
            front = mine[mine["on_front"]]
            figures.draw_front(axis, 100 * front["drop_mean"], 100 * front["asr_after_mean"])
            reference = select_panel(baseline, panel, panel_keys)
            if not reference.empty:
                axis.axhline(100 * reference["asr_mean"].iloc[0], color=figures.GREY, linewidth=1.0, linestyle=":")
            axis.axvline(0, color="#bbbbbb", linewidth=0.8)
            figures.percent_axis(axis, "y")
            axis.set_xlabel("Clean-accuracy drop (pp)")
            axis.set_ylabel("ASR after defense (%)")
            axis.set_title(panel_title(panel, shown_keys_))
            figures.label_points(axis, 100 * front["drop_mean"], 100 * front["asr_after_mean"],
                                 [str(n) for n in front["number"]])
        handles = [Line2D([], [], color=family_colour[f], marker=figures.MARKERS[i % len(figures.MARKERS)],
                          linestyle="", label=f) for i, f in enumerate(families)]
        if points["oracle"].any():
            handles.append(Line2D([], [], color=figures.REFERENCE_COLOUR, marker=figures.REFERENCE_MARKER,
                                  markersize=10, linestyle="", label=ORACLE_LABEL))
        handles += [Line2D([], [], color="#333333", linestyle="--", label="Pareto front"),
                    Line2D([], [], color=figures.GREY, linestyle=":", label="no defense (ASR)")]
        figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5))
        svg = figures.to_svg(figure)
    caption = CAPTION + (ORACLE_CAPTION.format(names=", ".join(defenses_in_role("oracle"))) if points["oracle"].any() else "")
    if crowded:
        caption += (f" Panels with more than {MAX_BARRED} configurations draw bars on the front points only; "
                    "the master table has every interval.")
    if len(panels) > MAX_PANELS:
        caption += f" Only the first {MAX_PANELS} of {len(panels)} panels are drawn; the table lists every front."
    caption += " " + POOLED_INTERVAL
    return Figure("tradeoff", "Clean-accuracy drop against ASR after the defense", svg, caption)


def front_table(points: pd.DataFrame, panel_keys: list[str]) -> Table:
    """The configurations on each panel's Pareto front, by increasing accuracy drop."""
    front = points[points["on_front"]].sort_values([*panel_keys, "drop_mean"]).reset_index(drop=True)
    shown = shown_keys(front, panel_keys, keep=("trigger",))
    shown["No."] = front["number"].astype(str)
    shown["Defense configuration"] = front["pipeline"]
    shown["Clean-acc. drop (pp)"] = estimate_cells(front, "drop", bounds=None)
    shown["ASR after (%)"] = estimate_cells(front, "asr_after")
    data = front.drop(columns=["on_front", "oracle"])
    data["number"] = data["number"].astype(np.int64)
    return Table("tradeoff_front", "Configurations on the Pareto front", shown.reset_index(drop=True), data,
                 "No.: the configuration's number, as labelled in the figure. Over every seed and poison percentage "
                 f"of the trigger; cells: mean [95 % CI] n = trials. {POOLED_INTERVAL} perfect_filter (an oracle) is "
                 "never a candidate.")
