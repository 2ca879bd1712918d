"""The whole report, opened in a real browser (Debian's headless Chromium): every section heading, every
figure drawn with a size, no console error, no request leaving the file, nothing wider than the page."""

from __future__ import annotations

import os
import shutil

import pytest

from orchestrator.report.build import build_sections, write_report
from tests.browser import assert_reads_well, inspect_page
from tests.orchestrator.report.test_render import built_once, generated_report_context


@pytest.mark.slow
def test_the_report_reads_in_chromium_offline_with_every_section_and_figure(tmp_path):
    context = generated_report_context(tmp_path / "runs")
    sections = build_sections(context)
    files = write_report(context, tmp_path / "report", sections=built_once(sections))
    assert len(sections) >= 10, "the generated sweep has rows for (nearly) every section"
    page = inspect_page(files.html, screenshot=tmp_path / "report.png")
    if preview := os.environ.get("BDSWEEP_REPORT_PREVIEW"):  # a developer's look at the screenshot
        shutil.copy(tmp_path / "report.png", preview)

    assert_reads_well(page, sections)
    assert (tmp_path / "report.png").stat().st_size > 50_000
