"""Sections to files: one self-contained ``index.html``, ``report.md`` with ``figures/*.svg``, and
``summary/<table>.parquet``.

The HTML comes from a Jinja2 template (``templates/report.html.j2``) with the stylesheet and every
figure inline, so it reads offline and by email and no request leaves it. Tables and figures are
numbered across the report; a cell such as ``96.4 [95.1, 97.7] n=3`` shows its mean in bold with
the interval in small type beneath, which keeps columns narrow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup, escape

from orchestrator.report.model import Code, Figure, Paragraph, Section, SweepFacts, Table

FIGURES = "figures"
SUMMARY = "summary"
BREAK_LONGER_THAN = 20  # characters; shorter labels (a trigger's name) never wrap
BANNER_LIST_LIMIT = 20  # damaged files and errored trials named in the banner; section "Sweep" lists all

# "96.4 [95.1, 97.7] n=3", "96.4 (n = 1)", "12.5 [8.1, 18.7]" (no n): the estimate, then the rest.
_ESTIMATE = re.compile(r"(?P<estimate>[-+−]?\d[\d.,]*)\s(?P<interval>\[[^\]]*\](?:\sn=\d+)?|\(n = 1\))")
_NUMBER = re.compile(r"[-+−]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?\s?(%|pp|s|min|h)?|–|-")


@dataclass(frozen=True)
class HeaderCell:
    text: str
    colspan: int = 1
    rowspan: int = 1
    group: bool = False


@dataclass(frozen=True)
class BodyCell:
    text: str
    estimate: str = ""
    interval: str = ""
    numeric: bool = False


def render_html(sections: list[Section], facts: SweepFacts, written_at: datetime | None = None) -> str:
    """The whole report as one HTML document (CSS and SVG inline, no external reference).

    Parameters
    ----------
    sections : in display order; they are numbered 1, 2, ... here
    facts : the sweep's facts (name, partial banner)
    written_at : shown in the header; now (UTC) by default
    """
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("orchestrator.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["breakable"] = breakable
    css = resources.files("orchestrator.report").joinpath("templates", "report.css").read_text()
    return environment.get_template("report.html.j2").render(
        title=f"Sweep report: {facts.name}",
        written_at=_timestamp(written_at),
        facts=facts,
        partial=partial_summary(facts),
        css=Markup(css),
        sections=_numbered(sections, html=True),
    )


def render_markdown(sections: list[Section], facts: SweepFacts, written_at: datetime | None = None) -> str:
    """The report as Markdown: the same tables (pipe tables), figures as ``figures/<name>.svg`` links."""
    lines = [f"# Sweep report: {facts.name}", "", f"Written {_timestamp(written_at)}"
             + (f" by `{facts.command}`." if facts.command else "."), ""]
    if facts.partial:
        summary = partial_summary(facts)
        lines += [f"> **Partial report.** {summary['summary']}", ">"]
        lines += [f"> - damaged row file: `{path}`" for path in summary["damaged"]]
        lines += [f"> - errored trial `{trial_id}` {label}: {line}" for trial_id, label, line in summary["errored"]]
        if summary["more"]:
            lines.append(f"> - … and {summary['more']} more; section “{summary['listed_in']}” lists them all.")
        lines.append("")
    lines += ["Accuracies, attack success rates (ASR) and detection rates are percentages with one decimal; "
              "differences of percentages are in percentage points (pp). A number that aggregates seeds reads "
              "`mean [95 % confidence interval] n=seeds`; a cell from one run says `(n = 1)` and has no interval. "
              "Intervals of percentages are cut at 0 and 100. "
              "Detection rates are computed per model and averaged over models (n = models), their counts summed beside them.", "", "## Contents", ""]
    numbered = _numbered(sections, html=False)
    lines += [f"{section['number']}. [{section['title']}](#{section['id']})" for section in numbered]
    lines.append("")
    for section in numbered:
        lines += [f'<a id="{section["id"]}"></a>', "", f"## {section['number']}. {section['title']}", ""]
        for block in section["blocks"]:
            lines += _markdown_block(block) + [""]
    return "\n".join(lines).rstrip() + "\n"


def write_summaries(sections: list[Section], directory: Path) -> list[Path]:
    """Each table's ``data`` as ``directory/<name>.parquet``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for table in (block for section in sections for block in section.blocks if isinstance(block, Table)):
        path = directory / f"{table.name}.parquet"
        table.data.reset_index(drop=True).to_parquet(path, index=False)
        paths.append(path)
    return paths


def write_figures(sections: list[Section], directory: Path) -> list[Path]:
    """Each figure as ``directory/<name>.svg`` (a standalone SVG file); returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for figure in (block for section in sections for block in section.blocks if isinstance(block, Figure)):
        path = directory / f"{figure.name}.svg"
        path.write_text('<?xml version="1.0" encoding="utf-8" standalone="no"?>\n' + figure.svg + "\n")
        paths.append(path)
    return paths


def partial_summary(facts: SweepFacts) -> dict:
    """What the partial banner says: a sentence, and the damaged files and errored trials (at most
    ``BANNER_LIST_LIMIT`` of both together; ``more`` counts the rest)."""
    states = {state: facts.states.get(state, 0) for state in ("done", "running", "errored", "pending")}
    total = sum(states.values())
    not_done = total - states["done"]
    parts = [f"{states[state]} {state}" for state in ("running", "errored", "pending") if states[state]]
    summary = f"{not_done} of {total} trials are not done" + (f" ({', '.join(parts)})" if parts else "") + "."
    if facts.damaged:
        summary += f" {len(facts.damaged)} row file{'s' if len(facts.damaged) != 1 else ''} could not be read."
    summary += " Numbers below cover only the trials with readable rows."
    damaged = facts.damaged[:BANNER_LIST_LIMIT]
    errored = facts.errored[: BANNER_LIST_LIMIT - len(damaged)]
    more = len(facts.damaged) + len(facts.errored) - len(damaged) - len(errored)
    return {"summary": summary, "damaged": damaged, "errored": errored, "more": more, "listed_in": "Sweep"}


def breakable(text: object) -> Markup:
    """Escaped text with line-break opportunities after ``,``, ``>``, ``_``, ``/`` and a ``(`` that opens
    parameters (``ac(``; not ``(%)``) in text longer than ``BREAK_LONGER_THAN``, so that
    long configuration labels wrap inside a table column instead of widening it."""
    escaped = str(escape(str(text)))
    if len(str(text)) <= BREAK_LONGER_THAN:
        return Markup(escaped)
    return Markup(re.sub(r"(,|&gt;|(?<=[A-Za-z])\(|_|/)", r"\1<wbr>", escaped))


def header_rows(columns: pd.Index) -> list[list[HeaderCell]]:
    """Header rows of a table: one for flat columns; for two-level columns a group row (adjacent
    equal groups merged, ``colspan``) over a sub-column row, a column with an empty sub-level
    spanning both rows."""
    if not isinstance(columns, pd.MultiIndex):
        return [[HeaderCell(str(column)) for column in columns]]
    top: list[HeaderCell] = []
    bottom: list[HeaderCell] = []
    tuples = list(columns)
    index = 0
    while index < len(tuples):
        group, sub = str(tuples[index][0]), str(tuples[index][1])
        if sub == "":
            top.append(HeaderCell(group, rowspan=2))
            index += 1
            continue
        span = 1
        while index + span < len(tuples) and str(tuples[index + span][0]) == group and str(tuples[index + span][1]):
            span += 1
        top.append(HeaderCell(group, colspan=span, group=True))
        bottom += [HeaderCell(str(tuples[index + k][1])) for k in range(span)]
        index += span
    return [top, bottom]


def body_rows(shown: pd.DataFrame) -> list[list[BodyCell]]:
    """The cells of ``shown``, an estimate split from its interval; the cells of a column of numbers
    are marked for right alignment (a lone number in a column of words stays left)."""
    texts = [[_cell_text(value) for value in values] for values in shown.itertuples(index=False, name=None)]
    numeric = _numeric_columns(texts, len(shown.columns))
    rows = []
    for values in texts:
        row = []
        for column, text in enumerate(values):
            match = _ESTIMATE.fullmatch(text)
            if match:
                row.append(BodyCell(text, match["estimate"], match["interval"], numeric=True))
            else:
                row.append(BodyCell(text, numeric=numeric[column]))
        rows.append(row)
    return rows


def _numbered(sections: list[Section], html: bool) -> list[dict]:
    """Sections as template dicts, numbered, with tables and figures numbered across the report."""
    numbered, tables, figures = [], 0, 0
    for number, section in enumerate(sections, start=1):
        blocks, entries = [], []
        for block in section.blocks:
            if isinstance(block, Table):
                tables += 1
                anchor = f"table-{block.name}"
                entries.append({"anchor": anchor, "title": f"Table {tables}. {block.title}"})
                shown = block.shown
                blocks.append({"kind": "table", "number": tables, "anchor": anchor, "title": block.title,
                               "note": block.note, "shown": shown,
                               "header": header_rows(shown.columns) if html else None,
                               "rows": body_rows(shown) if html else None})
            elif isinstance(block, Figure):
                figures += 1
                anchor = f"figure-{block.name}"
                entries.append({"anchor": anchor, "title": f"Figure {figures}. {block.title}"})
                blocks.append({"kind": "figure", "number": figures, "anchor": anchor, "title": block.title,
                               "caption": block.caption, "svg": block.svg, "name": block.name})
            elif isinstance(block, Paragraph):
                blocks.append({"kind": "paragraph", "text": block.text})
            elif isinstance(block, Code):
                blocks.append({"kind": "code", "title": block.title, "text": block.text, "language": block.language,
                               "collapsed": block.collapsed})
            else:
                raise TypeError(f"section {section.id!r} holds a {type(block).__name__}, not a report block")
        numbered.append({"number": number, "id": section.id, "title": section.title, "blocks": blocks,
                         "entries": entries})
    return numbered


def _markdown_block(block: dict) -> list[str]:
    kind = block["kind"]
    if kind == "paragraph":
        return [block["text"]]
    if kind == "code":
        return [f"**{block['title']}**", "", f"```{block['language']}", block["text"].rstrip("\n"), "```"]
    if kind == "figure":
        lines = [f"![Figure {block['number']}. {block['title']}]({FIGURES}/{block['name']}.svg)", "",
                 f"*Figure {block['number']}. {block['title']}*" + (f" {block['caption']}" if block["caption"] else "")]
        return lines
    lines = [f"**Table {block['number']}. {block['title']}**", "", *markdown_table(block["shown"])]
    if block["note"]:
        lines += ["", f"*{block['note']}*"]
    return lines


def markdown_table(shown: pd.DataFrame) -> list[str]:
    """A table's shown cells as GitHub Markdown lines (header, rule, rows); numeric columns right-aligned."""
    if isinstance(shown.columns, pd.MultiIndex):
        headers = [" · ".join(str(level) for level in column if str(level)) for column in shown.columns]
    else:
        headers = [str(column) for column in shown.columns]
    cells = [[_markdown_cell(value) for value in row] for row in shown.itertuples(index=False, name=None)]
    aligned = ["---:" if rows_numeric else "---" for rows_numeric in _numeric_columns(cells, len(headers))]
    return ["| " + " | ".join(_markdown_cell(h) for h in headers) + " |", "| " + " | ".join(aligned) + " |",
            *("| " + " | ".join(row) + " |" for row in cells)]


def _numeric_columns(cells: list[list[str]], width: int) -> list[bool]:
    """Per column: every cell a number or an estimate (empty and ``–`` cells aside), and at least one."""
    def numeric(text: str) -> bool:
        return bool(_ESTIMATE.fullmatch(text) or _NUMBER.fullmatch(text))

    return [any(numeric(row[i]) for row in cells) and all(numeric(row[i]) or row[i] in ("", "–") for row in cells)
            for i in range(width)]


def _cell_text(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _markdown_cell(value: object) -> str:
    return _cell_text(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _timestamp(written_at: datetime | None) -> str:
    return (written_at or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
