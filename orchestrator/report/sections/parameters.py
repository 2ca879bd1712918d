"""Section "Parameters": what each defense's grid does, as heatmaps over its parameters.

Every defense that ran alone (``n_defenses = 1``) gets its grid, whatever its name: the parameters
its registry entry declares (its own first, then those of its kind, :mod:`orchestrator.report.methods`)
that take more than one value in the sweep are the grid's axes — the first down, the next two across,
any further ones a figure each. Cells are the mean ASR after over the attack settings and seeds of one
dataset and model, beside the detection rates of a training-set filter (per model, averaged over
models, counts summed) or the channels pruned of a method that declares them. A table gives the
means of the metrics each defense declares of its own. A method that declares a tuning-accuracy curve
(``tune_acc_curve``, ``layer_width``, ``pruned_channels``) over a ``layer`` and a ``threshold``
(Fine-Pruning) gets its curves. Only single-defense pipelines feed this section: in a chain, a
defense's numbers depend on what ran before it. The controls are left out: they have no grid to read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestrator.report import figures
from orchestrator.report.methods import TRAINING_SET_FILTER, DefenseInfo, defenses
from orchestrator.report.model import Figure, Paragraph, ReportContext, Section, Table
from orchestrator.report.sections.settings import (
    defenses_in_role,
    POOLED_INTERVAL,
    estimate_cells,
    file_stem,
    heading,
    pooled_cells,
    quote,
    rate_cells,
    setting_columns,
    shown_keys,
)
from orchestrator.report.stats import aggregate, detection_rates, format_estimate, t_interval

FULL_TABLE_CELLS = 24  # a grid with more cells shows only its best ones in the table
BEST_SHOWN = 12
MAX_AXES = 3  # parameters on a heatmap's axes: one down, two across; further ones get a figure each
THRESHOLD_STYLES = (":", "--", "-.", (0, (5, 1, 1, 1, 1, 1)))  # one line style per FP threshold, grey
COUNT_COLUMNS = ("d1_removed_poisoned", "d1_removed_clean", "d1_n_seen", "d1_n_poisoned")
CURVE_METRICS = {"tune_acc_curve", "layer_width", "pruned_channels"}
CURVE_PARAMETERS = {"layer", "threshold"}
NUMERIC_TYPES = ("int", "float")  # declared metrics whose means the metrics table shows


@dataclass(frozen=True)
class Grid:
    """A defense's parameter grid as a heatmap: ``rows`` down, ``columns`` (none, one or two) across."""

    defense: str
    title: str
    rows: str | None  # None: no parameter varies, the grid is one cell
    columns: tuple[str, ...]
    filtering: bool  # True: detection rates (TPR, FPR) beside asr; False: clean accuracy (and channels pruned)
    pruning: bool = False  # the method declares pruned_channels

    @property
    def axes(self) -> list[str]:
        return [self.rows, *self.columns] if self.rows else []


def section(context: ReportContext) -> Section | None:
    """None when no defense but the controls ran alone."""
    columns = context.columns("results")
    if not {"n_defenses", "d1_name", "asr_after", "clean_acc_after"} <= columns:
        return None
    keys = setting_columns(context)
    known = defenses()
    ran = set(context.frame("SELECT DISTINCT d1_name AS name FROM results WHERE n_defenses = 1")["name"].dropna())
    blocks: list = []
    for name, info in known.items():
        if name not in ran or name in defenses_in_role("control", "oracle"):
            continue
        grid = grid_of(context, info)
        blocks += _grid_blocks(context, grid, info, keys)
        blocks += _metrics_blocks(context, info)
        if CURVE_METRICS <= {metric[0] for metric in info.metrics} and CURVE_PARAMETERS <= set(info.parameters):
            blocks += _tuning_curve_blocks(context, keys, name)
    if not blocks:
        return None
    intro = Paragraph(
        "Each defense's grid, from trials that ran it alone (in a chain, a defense's numbers depend on what ran "
        "before it): the parameters that take more than one value in the sweep are its axes. Heatmap cells pool "
        "the attack settings (trigger × poison %) and seeds of one dataset and model: mean ASR after in percent; "
        "for a training-set filter TPR and FPR (removed poisoned / poisoned, removed clean / clean) computed per "
        "backdoored model and averaged over models. Tables give mean [95 % CI] n for means and for rates, "
        "n = trials or models (a rate's interval is over models, not samples, whose counts stand beside it, "
        f"summed); blank heatmap cells were not in the sweep. {POOLED_INTERVAL}")
    return Section("parameters", "Parameters: what each defense's grid does", [intro, *blocks])


def grid_of(context: ReportContext, info: DefenseInfo) -> Grid:
    """``info``'s grid in this sweep: its parameters that vary among its single-defense rows, the first
    :data:`MAX_AXES` on the heatmap's axes."""
    columns = context.columns("results")
    varying = [p for p in _parameters(info, columns)
               if context.frame(f"SELECT count(DISTINCT coalesce({quote('d1_' + p)}::VARCHAR, 'None')) AS n FROM results "
                                f"WHERE n_defenses = 1 AND d1_name = ?", info.name)["n"].iloc[0] > 1]
    axes = varying[:MAX_AXES]
    filtering = info.kind == TRAINING_SET_FILTER and set(COUNT_COLUMNS) <= columns
    pruning = "pruned_channels" in {metric[0] for metric in info.metrics} and "d1_pruned_channels" in columns
    return Grid(info.name, info.name, axes[0] if axes else None, tuple(axes[1:]), filtering, pruning)


def _parameters(info: DefenseInfo, columns: set[str]) -> list[str]:
    """The defense's parameters the rows hold, as its registry entry declares them."""
    return [p for p in info.parameters if f"d1_{p}" in columns]


def _source(grid: Grid, parameters: list[str], keys: list[str]) -> str:
    """Single-defense rows of ``grid.defense`` with its parameters as text labels (NULL → ``None``)."""
    labels = "".join(f", coalesce(CAST(d1_{p} AS VARCHAR), 'None') AS {quote(p)}" for p in parameters)
    counts = (", d1_removed_poisoned AS removed_poisoned, d1_n_poisoned AS n_poisoned, "
              "d1_removed_clean AS removed_clean, d1_n_seen AS n_seen" if grid.filtering else "")
    pruned = ", d1_pruned_channels AS pruned_channels" if grid.pruning else ""
    name = grid.defense.replace("'", "''")
    return (f"(SELECT {', '.join(quote(k) for k in keys)}, seed, pipeline, asr_after, clean_acc_after{labels}{counts}"
            f"{pruned} FROM results WHERE n_defenses = 1 AND d1_name = '{name}')")


def _grid_blocks(context: ReportContext, grid: Grid, info: DefenseInfo, keys: list[str]) -> list:
    """Heatmaps, the grid-cell table and the best cell per attack setting, per dataset and model."""
    columns = context.columns("results")
    parameters = _parameters(info, columns)
    source = _source(grid, parameters, keys)
    if not context.frame(f"SELECT count(*) AS n FROM {source}")["n"].iloc[0]:
        return []
    axes = grid.axes
    facets = [p for p in parameters if p not in axes
              and context.frame(f"SELECT count(DISTINCT {quote(p)}) AS n FROM {source}")["n"].iloc[0] > 1]
    cell = [*facets, *axes] or ["pipeline"]  # no parameter varies: the one configuration is the one cell
    cells = _cells(context, source, ["dataset", "model", *cell], grid)
    best = _best_per_setting(context, source, keys, cell)
    blocks: list = []
    for (dataset, model), group in cells.groupby(["dataset", "model"], sort=True):
        if grid.rows is not None:
            facet_groups = group.groupby(facets, sort=True) if facets else [((), group)]
            for facet_values, facet_cells in facet_groups:
                facet_values = facet_values if isinstance(facet_values, tuple) else (facet_values,)
                facet_text = ", ".join(f"{p}={v}" for p, v in zip(facets, facet_values))
                name = file_stem("parameters", grid.defense, dataset, model, *facet_values)
                blocks.append(_heatmap_figure(grid, facet_cells, name, f"{grid.title} on {dataset} / {model}"
                                              + (f" ({facet_text})" if facet_text else "")))
        blocks.append(_cell_table(grid, group, cell, dataset, model))
        setting_best = best[(best["dataset"] == dataset) & (best["model"] == model)]
        if not setting_best.empty and grid.rows is not None:
            blocks.append(_best_table(grid, setting_best, keys, cell, dataset, model))
    return blocks


def _metrics_blocks(context: ReportContext, info: DefenseInfo) -> list:
    """The means of the numeric metrics ``info`` declares of its own, per configuration run alone, per
    dataset and model; [] when it declares none or the rows hold none of them."""
    columns = context.columns("results")
    declared = [(name, kind, meaning) for name, kind, meaning in info.metrics
                if kind in NUMERIC_TYPES and f"d1_{name}" in columns]
    if not declared:
        return []
    name = info.name.replace("'", "''")
    values = ", ".join(f"{quote('d1_' + metric)} AS {quote(metric)}" for metric, _, _ in declared)
    source = f"(SELECT dataset, model, pipeline, {values} FROM results WHERE n_defenses = 1 AND d1_name = '{name}')"
    means = aggregate(context.connection, source, ["dataset", "model", "pipeline"], [m for m, _, _ in declared])
    blocks = []
    for (dataset, model), rows in means.groupby(["dataset", "model"], sort=True):
        rows = rows.reset_index(drop=True)
        if not any(rows[f"{metric}_n"].sum() for metric, _, _ in declared):
            continue
        shown = pd.DataFrame({"Defense configuration": rows["pipeline"]})
        for metric, kind, _ in declared:
            shown[metric] = [format_estimate(m, lo, hi, int(n), scale=1.0, digits=_digits(m, kind))
                             for m, lo, hi, n in zip(rows[f"{metric}_mean"], rows[f"{metric}_lo"],
                                                     rows[f"{metric}_hi"], rows[f"{metric}_n"])]
        meanings = "; ".join(f"{metric}: {meaning}" for metric, _, meaning in declared)
        blocks.append(Table(file_stem("parameters", info.name, "metrics", dataset, model),
                            f"{info.name}: its own metrics on {dataset} / {model}", shown, rows,
                            f"As {info.name} declares them ({meanings}). Mean [95 % CI] n = trials, in the metric's "
                            f"own unit. {POOLED_INTERVAL}"))
    return blocks


def _digits(value: float, kind: str) -> int:
    """Decimals for a declared metric's mean: three for a float below 10 (a share, a score), one otherwise."""
    return 3 if kind == "float" and (pd.isna(value) or abs(value) < 10) else 1


def _cells(context: ReportContext, source: str, keys: list[str], grid: Grid) -> pd.DataFrame:
    """Per grid cell: means of asr / clean accuracy after (and pruned channels), and the detection
    rates per model averaged over models, with the counts summed (:func:`detection_rates`)."""
    metrics = ["asr_after", "clean_acc_after"] + (["pruned_channels"] if grid.pruning else [])
    cells = aggregate(context.connection, source, keys, metrics)
    if grid.filtering:
        models = [column for column in context.frame(f"SELECT * FROM {source} LIMIT 0").columns
                  if column in setting_columns(context) or column == "seed"]
        cells = cells.merge(detection_rates(context.connection, source, keys, models), on=keys, how="left")
    return cells


def _best_per_setting(context: ReportContext, source: str, keys: list[str], cell: list[str]) -> pd.DataFrame:
    """Per attack setting (``keys``), the grid cell (``cell``) with the lowest mean ASR after (ties:
    first in parameter order)."""
    means = aggregate(context.connection, source, [*keys, *cell], ["asr_after", "clean_acc_after"])
    means = means[means["asr_after_n"] > 0]
    return means.sort_values([*keys, "asr_after_mean", *cell]).drop_duplicates(keys, keep="first")


def _heatmap_figure(grid: Grid, cells: pd.DataFrame, name: str, title: str) -> Figure:
    # (column, title, scale, colour limits, decimals shown in the cells)
    panels = [("asr_after_mean", "asr after (%)", 100.0, (0, 100), 0)]
    if grid.filtering and "tpr" in cells:
        panels += [("tpr", "TPR (%)", 100.0, (0, 100), 0), ("fpr", "FPR (%)", 100.0, (0, 100), 0)]
    else:
        if grid.pruning:
            panels.append(("pruned_channels_mean", "channels pruned", 1.0, None, 0))
        panels.append(("clean_acc_after_mean", "clean accuracy after (%)", 100.0, None, 1))
    row_labels = ordered(cells[grid.rows].unique())
    if grid.columns:
        column_keys = cells[list(grid.columns)].drop_duplicates()
        column_keys = list(column_keys.sort_values(list(grid.columns), key=lambda s: s.map(
            {label: rank for rank, label in enumerate(ordered(s.unique()))})).itertuples(index=False, name=None))
    else:
        column_keys = [()]
    column_labels = [_column_label(grid, key) for key in column_keys]
    # Room for the tick labels: a cell as wide as its longest label line, the rows' labels at the left,
    # the colour bar at the right; as many panels side by side as the page width takes.
    cell_width = max(0.5, 0.075 * max(len(line) for label in column_labels for line in label.split("\n")))
    width = cell_width * len(column_labels) + 0.075 * max(len(label) for label in row_labels) + 1.6
    lines = max(label.count("\n") + 1 for label in column_labels)
    height = 0.32 * len(row_labels) + 1.0 + 0.16 * lines
    per_row = max(1, min(3, int(figures.MAX_WIDTH_IN // width)))
    with figures.panels(len(panels), max_columns=per_row, panel_size=(width, height), name=name) as (figure, axes_list):
        for axes, (column, label, scale, limits, decimals) in zip(axes_list, panels):
            matrix = _matrix(cells, grid, row_labels, column_keys, column) * scale
            figures.annotated_heatmap(figure, axes, matrix, row_labels, column_labels, label, limits, decimals)
            axes.set_ylabel(grid.rows)
            axes.set_xlabel(" / ".join(grid.columns))
        svg = figures.to_svg(figure)
    rates = "; TPR and FPR from counts summed over the trials" if grid.filtering else ""
    return Figure(name=name, title=title, svg=svg, caption=(
        f"Cells: mean over the attack settings and seeds of this dataset and model{rates}. Darker is lower; a "
        "lower ASR after is better. Blank cells were not run."))


def _matrix(cells: pd.DataFrame, grid: Grid, row_labels: list[str], column_keys: list[tuple], value: str) -> np.ndarray:
    """``value`` as a (rows × columns) float array, NaN where the grid has no cell."""
    if not grid.columns:
        table = cells.set_index(grid.rows)[value]
        return table.reindex(row_labels).to_numpy(dtype=float).reshape(len(row_labels), 1)
    table = cells.set_index([grid.rows, *grid.columns])[value]
    index = pd.MultiIndex.from_tuples([(row, *key) for row in row_labels for key in column_keys])
    return table.reindex(index).to_numpy(dtype=float).reshape(len(row_labels), len(column_keys))


def _column_label(grid: Grid, key: tuple) -> str:
    """A column's tick: its values one per line (the axis's label names the parameters)."""
    return "\n".join(_number_text(value) for value in key)


def ordered(values) -> list[str]:
    """Labels in their natural order: numerically when every one but ``None`` is a number (``None``
    first), else alphabetically."""
    values = [str(v) for v in values]
    numbers = pd.to_numeric(pd.Series([v for v in values if v != "None"]), errors="coerce")
    head = ["None"] if "None" in values else []
    rest = [v for v in values if v != "None"]
    if numbers.notna().all():
        return head + [v for _, v in sorted(zip(numbers, rest))]
    return head + sorted(rest)


def _number_text(value: str) -> str:
    number = pd.to_numeric(value, errors="coerce")
    return f"{number:g}" if pd.notna(number) else value


def _cell_table(grid: Grid, group: pd.DataFrame, keys: list[str], dataset: str, model: str) -> Table:
    """The grid's cells (all, or the :data:`BEST_SHOWN` with the lowest mean ASR after)."""
    rows = group.sort_values(["asr_after_mean", *keys]).reset_index(drop=True)
    total = len(rows)
    if total > FULL_TABLE_CELLS:
        rows = rows.head(BEST_SHOWN)
    else:
        rows = rows.sort_values(keys, key=lambda s: s.map({v: i for i, v in enumerate(ordered(s.unique()))}))
        rows = rows.reset_index(drop=True)
    shown = pd.DataFrame({heading(key) if key == "pipeline" else key: rows[key].map(_number_text) for key in keys})
    shown["ASR after (%)"] = estimate_cells(rows, "asr_after")
    shown["Clean acc. after (%)"] = estimate_cells(rows, "clean_acc_after")
    if "tpr" in rows:
        shown["TPR (%)"] = rate_cells(rows, "tpr")
        shown["TP / poisoned, pooled"] = pooled_cells(rows, "tpr")
        shown["FPR (%)"] = rate_cells(rows, "fpr")
        shown["FP / clean, pooled"] = pooled_cells(rows, "fpr")
    if "pruned_channels_mean" in rows:
        shown["Channels pruned"] = estimate_cells(rows, "pruned_channels", scale=1.0, bounds=None)
    title = f"{grid.title} grid on {dataset} / {model}"
    if total > FULL_TABLE_CELLS:
        title += f": the {BEST_SHOWN} of {total} cells with the lowest mean ASR after"
    return Table(name=file_stem("parameters", grid.defense, "cells", dataset, model), title=title,
                 shown=shown, data=rows.drop(columns=["dataset", "model"]).assign(dataset=dataset, model=model),
                 note="Pooled over attack settings and seeds: mean [95 % CI] n = trials; TPR and FPR per model, "
                      "mean [95 % CI] n = models; pooled: counts summed over the models, hits / total. "
                      f"{POOLED_INTERVAL}")


def _best_table(grid: Grid, best: pd.DataFrame, keys: list[str], cell: list[str], dataset: str, model: str) -> Table:
    rows = best.reset_index(drop=True)
    shown = shown_keys(rows, keys)
    shown["Best cell"] = [", ".join(f"{k}={_number_text(v)}" for k, v in zip(cell, values))
                          for values in rows[cell].itertuples(index=False, name=None)]
    shown["ASR after (%)"] = estimate_cells(rows, "asr_after")
    shown["Clean acc. after (%)"] = estimate_cells(rows, "clean_acc_after")
    return Table(name=file_stem("parameters", grid.defense, "best", dataset, model),
                 title=f"{grid.title}: the grid cell with the lowest mean ASR after, per attack setting, "
                       f"{dataset} / {model}",
                 shown=shown, data=rows, note="Mean [95 % CI] n = seeds.")


def _tuning_curve_blocks(context: ReportContext, keys: list[str], defense: str) -> list:
    """``defense``'s tuning accuracy against the share of channels pruned (Fine-Pruning's, or any method
    declaring the same curve), per dataset and model, a panel per layer, a line per trigger, the
    thresholds' mean stopping points marked."""
    columns = context.columns("results")
    if not {"d1_tune_acc_curve", "d1_layer_width", "d1_layer", "d1_threshold", "d1_pruned_channels"} <= columns:
        return []
    model_key = ", ".join(quote(k) for k in [*keys, "seed"])
    fine_pruned = "n_defenses = 1 AND d1_name = '" + defense.replace("'", "''") + "'"
    n_triggers = context.frame(f"SELECT count(DISTINCT trigger) AS n FROM results WHERE {fine_pruned}")["n"].iloc[0]
    # More triggers than distinguishable colours: one line over all of them.
    line = "trigger" if n_triggers <= len(figures.PALETTE) else "'all triggers'"
    # A pruning curve belongs to a backdoored model and a layer, whatever the threshold: one per model.
    curves = f"""(SELECT dataset, model, {line} AS trigger, d1_layer AS layer, d1_layer_width AS width,
                        d1_tune_acc_curve AS curve
                 FROM results WHERE {fine_pruned} AND d1_tune_acc_curve IS NOT NULL
                 QUALIFY row_number() OVER (PARTITION BY {model_key}, d1_layer ORDER BY d1_threshold) = 1)"""
    points = context.frame(f"""
        SELECT dataset, model, layer, trigger, width, k, avg(acc) AS mean, stddev_samp(acc) AS sd, count(acc) AS n
        FROM (SELECT *, unnest(curve) AS acc, unnest(range(len(curve))) AS k FROM {curves})
        GROUP BY ALL ORDER BY dataset, model, layer, trigger, k""")
    if points.empty:
        return []
    stops = context.frame(f"""
        SELECT dataset, model, d1_layer AS layer, d1_threshold AS threshold,
               avg(d1_pruned_channels / d1_layer_width) AS share, count(*) AS n
        FROM results WHERE {fine_pruned} AND d1_layer_width > 0 GROUP BY ALL""")
    points["lo"], points["hi"] = t_interval(points["mean"], points["sd"].fillna(0.0), points["n"])
    blocks = []
    for (dataset, model), group in points.groupby(["dataset", "model"], sort=True):
        name = file_stem("parameters", defense, "tuning", dataset, model)
        blocks.append(_curve_figure(name, defense, dataset, model, group,
                                    stops[(stops["dataset"] == dataset) & (stops["model"] == model)]))
    return blocks


def _curve_figure(name: str, defense: str, dataset: str, model: str, points: pd.DataFrame, stops: pd.DataFrame) -> Figure:
    layers = ordered(points["layer"].unique())
    pooled = (points["trigger"] == "all triggers").all()
    # The flat start of a curve says little: the axis begins 30 points before the earliest stop.
    left = max(0.0, 10 * np.floor((stops["share"].min() * 100 - 30) / 10)) if len(stops) else 0.0
    with figures.panels(len(layers), max_columns=2, panel_size=(4.6, 3.0), sharey=True,
                        name=name) as (figure, axes_list):
        for axes, layer in zip(axes_list, layers):
            layer_points = points[points["layer"] == layer]
            for index, (trigger, line) in enumerate(layer_points.groupby("trigger", sort=True)):
                share = line["k"] / line["width"]
                figures.line_with_band(axes, share * 100, line["mean"] * 100, line["lo"] * 100, line["hi"] * 100,
                                       label=trigger, colour_=figures.colour(index), marker="")
            layer_stops = stops[stops["layer"] == layer].sort_values("threshold").reset_index(drop=True)
            for index, stop in layer_stops.iterrows():
                axes.axvline(stop["share"] * 100, color="#444444", linewidth=1.0,
                             linestyle=THRESHOLD_STYLES[index % len(THRESHOLD_STYLES)],
                             label=f"stop at threshold {stop['threshold'] * 100:g} %")
            axes.set_title(layer)
            axes.set_xlabel("channels pruned (% of the layer)")
            axes.set_xlim(left, 100)
        axes_list[0].set_ylabel("tuning accuracy (%)")
        for axes in axes_list:
            axes.legend(loc="lower left")
        svg = figures.to_svg(figure)
    return Figure(name=name, title=f"{defense}: tuning accuracy as channels are pruned, {dataset} / {model}", svg=svg, caption=(
        "Tuning-set accuracy as the layer's channels are pruned in increasing order of mean activation: mean "
        "over backdoored models" + (" (all triggers)" if pooled else " per trigger") + ", band: 95 % "
        "t-interval over those models (where they come from several attack settings, it mixes seed-to-seed with "
        "setting-to-setting spread). Vertical lines: mean share pruned at each threshold (pruning stops before "
        "the tuning accuracy drops by more than the threshold)" + (f"; the axis starts at {left:g} %." if left else ".")))

