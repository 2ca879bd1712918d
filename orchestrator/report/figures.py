"""Matplotlib figures as inline SVG strings, in one style and a colour-blind-safe palette.

Figures are drawn on :class:`matplotlib.figure.Figure` objects (no pyplot, no global state, no GUI
backend), inside :func:`panels`, which applies the shared style, and turned into a bare ``<svg>``
element by :func:`to_svg`. Widths stay within ``MAX_WIDTH_IN`` so a figure fits the report's page.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

# Okabe & Ito's palette: distinguishable with every common colour-vision deficiency. Its yellow is
# last: it is faint on white, so only an eighth series gets it.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
GREY = "#9a9a9a"
REFERENCE_COLOUR, REFERENCE_MARKER = "#222222", "*"  # see reference_points
MAX_WIDTH_IN = 10.0  # 960 px at 96 px/in, the report's content width
HEATMAP_COLOURS = "cividis"  # perceptually uniform and readable with every common colour-vision deficiency

STYLE = {
    "font.size": 10.5,
    "axes.titlesize": 11,
    "axes.labelsize": 10.5,
    "xtick.labelsize": 9.5,
    "ytick.labelsize": 9.5,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "lines.linewidth": 1.6,
    "lines.markersize": 5,
    # Text stays text: smaller files, selectable and searchable in the browser.
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial", "Liberation Sans"],
}


def colour(index: int) -> str:
    """The palette's ``index``-th colour (cycling)."""
    return PALETTE[index % len(PALETTE)]


def grid_shape(n_panels: int, max_columns: int = 3) -> tuple[int, int]:
    """``(rows, columns)`` of a grid holding ``n_panels`` panels, at most ``max_columns`` wide."""
    columns = max(1, min(max_columns, n_panels))
    return math.ceil(n_panels / columns), columns


@contextmanager
def panels(n_panels: int, max_columns: int = 3, panel_size: tuple[float, float] = (3.3, 2.7),
           sharex: bool = False, sharey: bool = False, name: str = "figure") -> Iterator[tuple[Figure, list[Axes]]]:
    """A figure of ``n_panels`` axes in the report's style; draw and call :func:`to_svg` inside the block.

    Parameters
    ----------
    n_panels : number of axes wanted (unused grid cells are hidden)
    max_columns : grid columns at most
    panel_size : (width, height) of one panel in inches; the total width is capped at ``MAX_WIDTH_IN``
    name : unique among the report's figures; :func:`to_svg` prefixes the SVG's element ids with it,
        so that figures inlined in one HTML page never share an id

    Yields
    ------
    (figure, axes) with ``len(axes) == n_panels``, in reading order
    """
    rows, columns = grid_shape(n_panels, max_columns)
    width = min(MAX_WIDTH_IN, panel_size[0] * columns + 0.4)
    height = panel_size[1] * rows + 0.5
    with matplotlib.rc_context({**STYLE, "svg.hashsalt": name}):
        figure = Figure(figsize=(width, height), layout="constrained")
        figure.set_label(name)
        grid = figure.subplots(rows, columns, squeeze=False, sharex=sharex, sharey=sharey)
        axes = list(grid.flat)
        for unused in axes[n_panels:]:
            unused.set_visible(False)
        yield figure, axes[:n_panels]


def to_svg(figure: Figure) -> str:
    """The figure as one ``<svg>`` element: no XML declaration, DOCTYPE or metadata (nothing that
    names a URL besides the SVG namespace), its ids prefixed with the figure's name (see :func:`panels`)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.DOTALL)
    # Matplotlib numbers its ids from 1 in every file (figure_1, axes_1); inline, they must be unique.
    prefix = re.sub(r"\W", "_", figure.get_label() or "figure")
    svg = re.sub(r'(url\(#|href="#)([^")]+)', lambda match: f"{match[1]}{prefix}-{match[2]}", svg)
    seen: dict[str, int] = {}

    def unique(match: re.Match) -> str:
        # Two identical images (heatmap panels) share a content-hash id; only the first keeps it
        # (images are inline data, never referenced by id).
        seen[match[1]] = seen.get(match[1], 0) + 1
        suffix = f"-{seen[match[1]]}" if seen[match[1]] > 1 else ""
        return f'id="{prefix}-{match[1]}{suffix}"'

    return re.sub(r'\bid="([^"]+)"', unique, svg).strip()


def line_with_band(axes: Axes, x: Sequence[float], mean: Sequence[float], lower: Sequence[float],
                   upper: Sequence[float], label: str, colour_: str, marker: str = "o",
                   limits: tuple[float, float] | None = (0.0, 100.0)) -> None:
    """A mean line with its 95 % interval as a translucent band (gaps where the interval is NaN, n = 1),
    the band cut at ``limits`` (a percentage's range; None for none)."""
    x, mean, lower, upper = (np.asarray(a, dtype=float) for a in (x, mean, lower, upper))
    if limits is not None:
        lower, upper = np.clip(lower, *limits), np.clip(upper, *limits)
    axes.plot(x, mean, marker=marker, color=colour_, label=label, markersize=4)
    axes.fill_between(x, lower, upper, color=colour_, alpha=0.18, linewidth=0)


def points_with_error_bars(axes: Axes, x: Sequence[float], y: Sequence[float],
                           x_interval: tuple[Sequence[float], Sequence[float]],
                           y_interval: tuple[Sequence[float], Sequence[float]], colour_: str, label: str | None = None,
                           marker: str = "o", emphasis: bool = True) -> None:
    """Points with horizontal and vertical 95 % interval bars; NaN bounds (n = 1) draw no bar.

    ``emphasis`` False draws small, light points and bars, for the many points that are not the story.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    x_err = _error_lengths(x, *x_interval)
    y_err = _error_lengths(y, *y_interval)
    axes.errorbar(x, y, xerr=x_err, yerr=y_err, fmt=marker, color=colour_, label=label,
                  markersize=5 if emphasis else 3.2, elinewidth=1.0 if emphasis else 0.6,
                  alpha=1.0 if emphasis else 0.6, capsize=0, markeredgecolor="white" if emphasis else colour_,
                  markeredgewidth=0.5 if emphasis else 0)


def reference_points(axes: Axes, x: Sequence[float], y: Sequence[float],
                     x_interval: tuple[Sequence[float], Sequence[float]],
                     y_interval: tuple[Sequence[float], Sequence[float]], label: str | None = None) -> None:
    """Points that are a yardstick rather than a candidate (an oracle): large dark stars with thin
    95 % interval bars, above the other points."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    axes.errorbar(x, y, xerr=_error_lengths(x, *x_interval), yerr=_error_lengths(y, *y_interval), fmt=REFERENCE_MARKER,
                  color=REFERENCE_COLOUR, label=label, markersize=10, elinewidth=0.7, capsize=0,
                  markeredgecolor="white", markeredgewidth=0.6, zorder=4)


def _error_lengths(centre: np.ndarray, lower: Sequence[float], upper: Sequence[float]) -> np.ndarray:
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    return np.nan_to_num(np.vstack([centre - lower, upper - centre]), nan=0.0).clip(min=0.0)


def pareto_front(x: Sequence[float], y: Sequence[float]) -> np.ndarray:
    """Mask of the points no other point beats on both ``x`` and ``y`` (lower is better on both).

    A point is dominated when another is at most as high on both axes and lower on one. NaN points
    are never on the front.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    valid = ~(np.isnan(x) | np.isnan(y))
    no_worse = (x[None, :] <= x[:, None]) & (y[None, :] <= y[:, None])
    better = (x[None, :] < x[:, None]) | (y[None, :] < y[:, None])
    dominated = (no_worse & better & valid[None, :]).any(axis=1)
    return valid & ~dominated


def draw_front(axes: Axes, x: Sequence[float], y: Sequence[float]) -> None:
    """The Pareto front as a staircase through the front points (sorted by ``x``)."""
    order = np.argsort(np.asarray(x, dtype=float))
    axes.step(np.asarray(x)[order], np.asarray(y)[order], where="post", color="#333333", linewidth=1.0,
              linestyle="--", label="Pareto front", zorder=1)


def percent_axis(axes: Axes, which: str = "y", limits: tuple[float, float] | None = (0, 100)) -> None:
    """An axis in percent: 0–100 unless ``limits`` is None, with a little room at the ends."""
    if limits is not None:
        pad = (limits[1] - limits[0]) * 0.03
        (axes.set_ylim if which == "y" else axes.set_xlim)(limits[0] - pad, limits[1] + pad)


def poison_axis(axes: Axes, poison_pcts: Sequence[float]) -> bool:
    """The x axis of a dose-response plot: log-scaled when the percentages span a factor of 8 or
    more (2, 4, 6, 27 then spread evenly), ticks at the percentages the sweep used (at most ten).
    Returns whether the axis is logarithmic."""
    values = np.unique(np.asarray(poison_pcts, dtype=float))
    logarithmic = bool((values > 0).all() and len(values) > 1 and values.max() / values.min() >= 8)
    if logarithmic:
        axes.set_xscale("log")
        axes.minorticks_off()
    ticks = values if len(values) <= 10 else values[:: math.ceil(len(values) / 10)]
    axes.set_xticks(ticks, [f"{value:g}" for value in ticks])
    return logarithmic


def label_points(axes: Axes, x: Sequence[float], y: Sequence[float], labels: Sequence[str], fontsize: float = 8.5) -> None:
    """Short labels beside points, each moved to the first of a few offsets where it overlaps no
    label placed before it (greedy, in display space); call after everything else is drawn, so the
    axis limits are final."""
    offsets = ((4, 3), (4, -11), (-4, 3), (-4, -11), (4, 12), (4, -20))
    placed: list[tuple[float, float, float, float]] = []
    axes.get_xlim(), axes.get_ylim()  # settles autoscaling before positions are computed
    width_per_char, height = 0.62 * fontsize * 1.33, fontsize * 1.33  # pixels at 96 dpi, roughly
    for x_value, y_value, label in zip(x, y, labels):
        anchor_x, anchor_y = axes.transData.transform((x_value, y_value))
        width = width_per_char * len(label)
        for dx, dy in offsets:
            left = anchor_x + dx * 1.33 - (width if dx < 0 else 0)
            bottom = anchor_y + dy * 1.33
            box = (left, bottom, left + width, bottom + height)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                break
        placed.append(box)
        axes.annotate(label, (x_value, y_value), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                      fontweight="bold", ha="right" if dx < 0 else "left")


def annotated_heatmap(figure: Figure, axes: Axes, matrix: np.ndarray, row_labels: Sequence[str],
                      column_labels: Sequence[str], label: str, limits: tuple[float, float] | None,
                      decimals: int = 0, marked: np.ndarray | None = None) -> None:
    """One heatmap of ``matrix`` (rows x columns) with each cell's value written in it and a colour
    bar; NaN cells are left blank. ``marked`` (bool, the matrix's shape) hatches cells a caption
    explains (an interval that holds a reference value)."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    finite = matrix[np.isfinite(matrix)]
    low, high = limits if limits else ((finite.min(), finite.max()) if finite.size else (0.0, 1.0))
    if high <= low:
        high = low + 1.0
    norm = Normalize(low, high)
    cmap = colormaps[HEATMAP_COLOURS].with_extremes(bad="#f4f4f4")
    image = axes.imshow(np.ma.masked_invalid(matrix), cmap=cmap, norm=norm, aspect="auto")
    axes.grid(False)
    axes.set_xticks(range(len(column_labels)), column_labels)
    axes.set_yticks(range(len(row_labels)), row_labels)
    axes.set_title(label)
    font = 7.5 if matrix.shape[1] <= 6 else 6.5
    for (row, column), value in np.ndenumerate(matrix):
        if np.isfinite(value):
            red, green, blue, _ = cmap(norm(value))
            ink = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
            axes.text(column, row, f"{value:.{decimals}f}", ha="center", va="center", fontsize=font, color=ink,
                      in_layout=False)
            if marked is not None and marked[row, column]:
                axes.add_patch(Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, hatch="///", edgecolor=ink,
                                         linewidth=0, alpha=0.45))
    figure.colorbar(image, ax=axes, shrink=0.85, pad=0.02)
