"""The report's files: a self-contained index.html, report.md with figures/*.svg, summary/*.parquet."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.report.build import build_sections, write_report
from orchestrator.report.model import Figure, Paragraph, ReportContext, Section, SweepFacts, Table
from orchestrator.report.render import breakable, header_rows, render_html, render_markdown
from orchestrator.report.sections import attacks, detection, master, sweep, tradeoff
from orchestrator.results import connect
from tests.report_rows import PIPELINES, connect_rows, synthetic_rows, write_rows

WRITTEN_AT = datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc)
# Sections 1-5; the default list (orchestrator.report.sections.report_sections()) holds these and more.
CORE = [sweep.section, attacks.section, master.section, tradeoff.section, detection.section]
CORE_IDS = ["sweep", "attacks", "master", "tradeoff", "detection"]
SPACE = "name: demo\nattack: {trigger: [yellow_square, big_yellow_square]}\n"


def generated_context(seeds=(0, 1, 2), states: dict[str, int] | None = None, **facts) -> ReportContext:
    rows = synthetic_rows(["yellow_square", "big_yellow_square"], [2, 4, 10], list(seeds), PIPELINES)
    return ReportContext(connect_rows(rows), SweepFacts("demo", SPACE, states or {"done": len(rows)},
                                                        command="bdsweep report demo", **facts))


def generated_report_context(storage: Path) -> ReportContext:
    """Generated rows of a sweep still running, with an errored trial and a damaged row file: the rows
    written as row files under ``storage`` and read back through :func:`orchestrator.results.connect`,
    as ``bdsweep report`` reads them."""
    rows = synthetic_rows(["yellow_square", "big_yellow_square"], [2, 4, 10], [0, 1, 2], PIPELINES)
    write_rows(storage, "demo", rows)
    facts = SweepFacts("demo", SPACE, {"done": 288, "running": 3, "errored": 1, "pending": 4},
                       errored=[("a1b2", "yellow_square 4 % ac(cluster_analysis=smaller)", "MemoryError")],
                       damaged=["runs/demo/results/dataset=synthetic_signs/model=gtsrb_cnn/ff00.parquet"],
                       command="bdsweep report demo")
    return ReportContext(connect(storage, "demo"), facts)


def built_once(sections: list[Section]) -> list:
    """Section functions that return ``sections`` as built: a test that reads the built sections
    writes them without building them a second time."""
    return [lambda context, section=section: section for section in sections]


def test_report_over_generated_sweep(tmp_path):
    out = tmp_path / "report"
    context = generated_report_context(tmp_path / "runs")
    sections = build_sections(context)
    files = write_report(context, out, sections=built_once(sections), written_at=WRITTEN_AT)
    html = files.html.read_text()
    markdown = files.markdown.read_text()
    assert [s for s in files.sections if s in CORE_IDS] == CORE_IDS

    # Self-contained: nothing is fetched (no URL in src or href), every figure inline as SVG.
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, flags=re.IGNORECASE)
    assert "<link" not in html and "<script" not in html and "@import" not in html
    figures = [b for s in sections for b in s.blocks if isinstance(b, Figure)]
    assert {"dose_response", "tradeoff", "ss_roc"} <= {f.name for f in figures}
    assert html.count("<svg") == len(figures)
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids)) > 100  # matplotlib's ids made unique across the inlined figures
    references = set(re.findall(r'(?:url\(#|href="#)([^")]+)', html))
    assert references <= set(ids)
    assert {p.name for p in files.figures} == {f"{f.name}.svg" for f in figures}
    for figure in figures:
        assert (out / "figures" / f"{figure.name}.svg").read_text().count("<svg") == 1
        assert f"figures/{figure.name}.svg" in markdown

    # The partial banner names what is not done and lists the damaged file and errored trial.
    assert 'class="banner"' in html and "8 of 296 trials are not done" in html
    assert "ff00.parquet" in html and "MemoryError" in html
    assert "> **Partial report.** 8 of 296 trials are not done" in markdown

    # The same tables in HTML, Markdown and Parquet.
    tables = [b for s in sections for b in s.blocks if isinstance(b, Table)]
    assert {p.stem for p in files.summaries} == {t.name for t in tables}
    for table in tables:
        assert f'id="table-{table.name}"' in html
        assert table.title in markdown
        for row in table.shown.itertuples(index=False):
            assert "| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" in markdown
        read = pd.read_parquet(out / "summary" / f"{table.name}.parquet")
        pd.testing.assert_frame_equal(read, table.data.reset_index(drop=True), check_dtype=False)
    # The table of contents links every section.
    for section in sections:
        assert f'<a href="#{section.id}">' in html and f'<section id="{section.id}">' in html


def test_complete_sweep_has_no_partial_banner(tmp_path):
    # The banner is the header's, whichever sections the report holds.
    context = generated_context(seeds=(0,))
    files = write_report(context, tmp_path, sections=CORE, written_at=WRITTEN_AT)
    assert 'class="banner"' not in files.html.read_text()
    assert "Partial report" not in files.markdown.read_text()


def test_every_aggregated_cell_in_the_html_shows_its_interval_and_n(tmp_path):
    files = write_report(generated_context(), tmp_path, sections=CORE, written_at=WRITTEN_AT)
    html = files.html.read_text()
    intervals = re.findall(r'<span class="ci">([^<]*)</span>', html)
    assert len(intervals) > 300
    seeds = [i for i in intervals if i.endswith("n=3")]
    pooled = [i for i in intervals if i.endswith("n=9")]  # trade-off front: 3 seeds × 3 poison percentages
    # Detection rates: one value per backdoored model, n = models (2 triggers × 3 poison % × 3 seeds, less
    # the models without a rate, e.g. no precision where nothing was removed).
    models = [i for i in intervals if (found := re.fullmatch(r"\[\d+\.\d, \d+\.\d\] n=(\d+)", i))
              and 10 <= int(found[1]) <= 18]
    assert len(seeds) + len(pooled) + len(models) == len(intervals) and models


def test_one_seed_cells_say_so_in_html_and_markdown(tmp_path):
    files = write_report(generated_context(seeds=(0,)), tmp_path, sections=CORE, written_at=WRITTEN_AT)
    assert '<span class="ci">(n = 1)</span>' in files.html.read_text()
    assert "(n = 1)" in files.markdown.read_text()
    # Attacks and the master table aggregate seeds only (the trade-off pools poison percentages too).
    assert " n=" not in files.markdown.read_text().split("## 2.")[1].split("## 4.")[0]


def test_a_bug_in_a_section_propagates(tmp_path):
    def broken(context):
        raise KeyError("a column the section expected")

    with pytest.raises(KeyError):
        write_report(generated_context(seeds=(0,)), tmp_path, sections=[broken])
    assert not (tmp_path / "index.html").exists()


def test_sections_without_rows_are_left_out_and_names_must_be_unique(tmp_path):
    def empty(context):
        return None

    def one(context):
        table = pd.DataFrame({"a": [1]})
        return Section("one", "One", [Paragraph("text"), Table("same", "T", table.astype(str), table)])

    def two(context):
        table = pd.DataFrame({"b": [2]})
        return Section("two", "Two", [Table("same", "T", table.astype(str), table)])

    context = generated_context(seeds=(0,))
    files = write_report(context, tmp_path, sections=[empty, one], written_at=WRITTEN_AT)
    assert files.sections == ["one"]
    with pytest.raises(ValueError, match="same"):
        write_report(context, tmp_path, sections=[one, two])


def test_a_second_report_removes_the_first_ones_files(tmp_path):
    context = generated_context(seeds=(0,))
    write_report(context, tmp_path, sections=CORE, written_at=WRITTEN_AT)
    assert (tmp_path / "figures" / "tradeoff.svg").exists()

    def only(context):
        table = pd.DataFrame({"a": [1]})
        return Section("only", "Only", [Table("only", "T", table.astype(str), table)])

    files = write_report(context, tmp_path, sections=[only], written_at=WRITTEN_AT)
    assert sorted(p.name for p in (tmp_path / "summary").iterdir()) == ["only.parquet"]
    assert not list((tmp_path / "figures").iterdir()) and files.figures == []


def test_html_escapes_labels_and_lets_long_ones_wrap():
    table = pd.DataFrame({"Defense configuration": ["ac(cluster_analysis=smaller)>fp(layer=last_conv)", "<b>"]})
    section = Section("s", "S", [Table("t", "T", table, table)])
    html = render_html([section], SweepFacts("x", "", {"done": 1}), WRITTEN_AT)
    assert "<b>" not in html.split("<main>")[1]
    assert "&lt;b&gt;" in html
    assert str(breakable("ac(cluster_analysis=smaller)>fp")) == "ac(<wbr>cluster_<wbr>analysis=smaller)&gt;<wbr>fp"
    assert str(breakable("Clean acc. (%)")) == "Clean acc. (%)"  # short: never wraps


def test_column_groups_become_a_two_row_header():
    columns = pd.MultiIndex.from_tuples([("Trigger", ""), ("ac", "ASR (%)"), ("ac", "DER (%)"), ("fp", "ASR (%)")])
    top, bottom = header_rows(columns)
    assert [(c.text, c.colspan, c.rowspan) for c in top] == [("Trigger", 1, 2), ("ac", 2, 1), ("fp", 1, 1)]
    assert [c.text for c in bottom] == ["ASR (%)", "DER (%)", "ASR (%)"]
    markdown = render_markdown([Section("s", "S", [Table("t", "T", pd.DataFrame([["y", "1", "2", "3"]], columns=columns),
                                                        pd.DataFrame({"a": [1]}))])],
                               SweepFacts("x", "", {"done": 1}), WRITTEN_AT)
    assert "| Trigger | ac · ASR (%) | ac · DER (%) | fp · ASR (%) |" in markdown



def test_inline_svg_ids_are_unique_even_for_identical_images():
    from orchestrator.report import figures

    with figures.panels(2, name="twins") as (figure, axes):
        for axis in axes:
            axis.imshow([[0, 1], [1, 0]])
        svg = figures.to_svg(figure)
    ids = re.findall(r'\sid="([^"]+)"', svg)
    assert len(ids) == len(set(ids)) and all(i.startswith("twins-") for i in ids)
    assert set(re.findall(r'(?:url\(#|href="#)([^")]+)', svg)) <= set(ids)
    assert svg.startswith("<svg") and "<metadata" not in svg and "<?xml" not in svg
