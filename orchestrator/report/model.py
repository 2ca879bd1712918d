"""What a report is made of: sections holding tables, figures and paragraphs, and the context they read.

A section function takes a :class:`ReportContext` and returns a :class:`Section`, or None when the
sweep has no rows for it. Rendering (HTML, Markdown, ``summary/*.parquet``) reads only these
objects, so a section never formats for one output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import duckdb
import pandas as pd


@dataclass(frozen=True)
class Paragraph:
    """Plain text (no markup); rendered as a paragraph in HTML and Markdown."""

    text: str


@dataclass(frozen=True)
class Table:
    """A table of the report.

    Attributes
    ----------
    name : file stem of its data in ``summary/<name>.parquet`` (letters, digits, ``_``)
    title : shown above it
    shown : the formatted cells as strings, in display order (what HTML and Markdown show)
    data : the same rows as numbers (means, interval bounds, n, counts), saved as Parquet
    note : one line under it (how to read it), optional
    """

    name: str
    title: str
    shown: pd.DataFrame
    data: pd.DataFrame
    note: str = ""


@dataclass(frozen=True)
class Figure:
    """A figure: ``svg`` is a whole ``<svg>`` element (inline in HTML, ``figures/<name>.svg`` beside
    ``report.md``); ``caption`` says what is plotted and how to read it."""

    name: str
    title: str
    svg: str
    caption: str = ""


@dataclass(frozen=True)
class Code:
    """Preformatted text such as the search-space YAML: a collapsible block in HTML (open when
    ``collapsed`` is False), a fenced block in Markdown; ``language`` tags the fence (``yaml``)."""

    title: str
    text: str
    language: str = ""
    collapsed: bool = True


Block = Paragraph | Table | Figure | Code


@dataclass(frozen=True)
class Section:
    """One numbered section: ``id`` is its HTML anchor (``attacks``), ``title`` its heading."""

    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass(frozen=True)
class SweepFacts:
    """What a report knows about a sweep besides its rows.

    Attributes
    ----------
    name : the sweep's name
    space_yaml : the search-space file as recorded when the sweep started
    states : trial counts by state, ``{"done", "running", "errored", "pending"}``
    errored : ``(trial_id, label, last line of its traceback)`` per errored trial
    damaged : display paths of row files that could not be read
    command : the command line that writes this report again
    """

    name: str
    space_yaml: str
    states: dict[str, int]
    errored: list[tuple[str, str, str]] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    command: str = ""

    @property
    def partial(self) -> bool:
        """A sweep with trials not done, or rows that could not be read, gets a partial report."""
        return bool(self.damaged) or any(self.states.get(s, 0) for s in ("running", "errored", "pending"))

    @property
    def progress(self) -> str:
        """``8 of 16 trials done`` (with ``, 2 row file(s) unreadable`` when some are): how far a
        partial sweep is, in one clause for a command's output or a README."""
        damaged = f", {len(self.damaged)} row file(s) unreadable" if self.damaged else ""
        return f"{self.states.get('done', 0)} of {sum(self.states.values())} trials done{damaged}"


@dataclass(frozen=True)
class ReportContext:
    """What every section function reads.

    Attributes
    ----------
    connection : DuckDB with the sweep's ``results`` (a row per trial) and ``stages`` (a row per
        trial and defense position) views, as :func:`orchestrator.results.connect` makes them
    facts : the sweep's :class:`SweepFacts`
    budgets : clean-accuracy drops (percentage points) the guidelines keep within
    read_artifact : ``(stage, key) -> artifact or None``: a stored artifact the rows name (``<label>_key``),
        checksums verified, None when missing or damaged; None when the report cannot read the store
    """

    connection: duckdb.DuckDBPyConnection
    facts: SweepFacts
    budgets: tuple[float, ...] = (1.0, 2.0, 5.0)
    read_artifact: Callable[[Any, str], Any] | None = None
    # Answers that every section asks for and that the rows fix (the attack-setting columns): computed
    # once per report, not once per section and table.
    memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        # Every section reads a pipeline's defended outcome: for one that ends in an input filter,
        # what the filter serves (a rejected input is neither correct nor a backdoor success).
        from orchestrator.results import read_served_outcomes

        read_served_outcomes(self.connection)

    def frame(self, sql: str, *params) -> pd.DataFrame:
        """The answer of ``sql`` (over ``results`` and ``stages``) as a DataFrame."""
        return self.connection.execute(sql, list(params)).df()

    def columns(self, view: str) -> set[str]:
        """Column names of ``view`` (``results`` or ``stages``); sections test these before querying."""
        return {row[0] for row in self.connection.execute(f"DESCRIBE {view}").fetchall()}
