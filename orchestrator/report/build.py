"""Run the section functions over a sweep's rows and write the report's files."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from orchestrator.report.model import Figure, ReportContext, Section, Table
from orchestrator.report.render import FIGURES, SUMMARY, render_html, render_markdown, write_figures, write_summaries

SectionFunction = Callable[[ReportContext], Section | None]


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote, all under ``directory``."""

    directory: Path
    html: Path
    markdown: Path
    figures: list[Path]
    summaries: list[Path]
    sections: list[str]  # ids of the sections the report holds, in order


def build_sections(context: ReportContext, sections: Sequence[SectionFunction] | None = None) -> list[Section]:
    """Call each section function in order and keep the sections it returns (None: no rows for it).

    A section function that raises is a bug and its exception propagates. Raises ValueError when two
    sections share an id, or two tables (or two figures) a name: their files would overwrite each other.
    """
    if sections is None:
        from orchestrator.report.sections import report_sections

        sections = report_sections()
    built = [section for function in sections if (section := function(context)) is not None]
    _check_unique("section id", [section.id for section in built])
    for kind in (Table, Figure):
        _check_unique(f"{kind.__name__.lower()} name",
                      [block.name for section in built for block in section.blocks if isinstance(block, kind)])
    return built


def write_report(context: ReportContext, out_dir: str | Path, sections: Sequence[SectionFunction] | None = None,
                 written_at: datetime | None = None) -> ReportFiles:
    """Write the report of ``context``'s sweep under ``out_dir`` (a local directory, made if missing).

    Files: ``index.html`` (self-contained), ``report.md`` with ``figures/<name>.svg``, and
    ``summary/<table>.parquet`` per table. Figures and summaries of an earlier report in ``out_dir``
    are removed first, so every file there belongs to this report.

    Parameters
    ----------
    sections : section functions in order; :func:`orchestrator.report.sections.report_sections` by default
    written_at : the time the header shows (now by default)
    """
    built = build_sections(context, sections)
    out_dir = Path(out_dir)
    figure_dir, summary_dir = out_dir / FIGURES, out_dir / SUMMARY
    for directory, suffix in ((figure_dir, ".svg"), (summary_dir, ".parquet")):
        if directory.is_dir():
            for stale in directory.glob(f"*{suffix}"):
                stale.unlink()
    figures = write_figures(built, figure_dir)
    summaries = write_summaries(built, summary_dir)
    markdown = _write_text(out_dir / "report.md", render_markdown(built, context.facts, written_at))
    html = _write_text(out_dir / "index.html", render_html(built, context.facts, written_at))
    return ReportFiles(out_dir, html, markdown, figures, summaries, [section.id for section in built])


def _write_text(path: Path, text: str) -> Path:
    # Whole or not at all: a reader never opens half a report.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
    return path


def _check_unique(what: str, names: list[str]) -> None:
    seen, repeated = set(), []
    for name in names:
        if name in seen:
            repeated.append(name)
        seen.add(name)
    if repeated:
        raise ValueError(f"two report blocks share a {what}: {', '.join(sorted(set(repeated)))}")
