"""Studies register their sections with the report; the generic report names no study and no method."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import orchestrator.studies  # noqa: F401  (the studies registered before this test adds one)
from orchestrator.report import sections
from orchestrator.report.model import Paragraph, Section

REPORT = Path(sections.__file__).resolve().parents[1]


def test_a_study_section_shows_after_the_generic_section_it_names(monkeypatch):
    monkeypatch.setattr(sections, "_REGISTERED", list(sections._REGISTERED))

    def leaderboard(context):
        return Section("leaderboard", "Leaderboard", [Paragraph("made up")])

    sections.register_section(leaderboard, after="guidelines")
    sections.register_section(leaderboard, after="guidelines")  # twice: once
    ordered = sections.report_sections()
    assert ordered.count(leaderboard) == 1
    # After guidelines and what studies registered there before it, before the next generic section.
    assert ordered.index(leaderboard) == ordered.index(sections.GENERIC["provenance"]) - 1
    assert ordered.index(leaderboard) > ordered.index(sections.GENERIC["guidelines"])
    with pytest.raises(KeyError, match="no generic section 'nowhere'"):
        sections.register_section(leaderboard, after="nowhere")


def test_the_studies_register_their_sections_where_the_report_shows_them():
    modules = [function.__module__.removeprefix("orchestrator.").replace("report.sections.", "")
               for function in sections.report_sections()]
    assert modules == ["sweep", "studies.leaderboard.answers", "studies.thesis.answers", "attacks", "master", "studies.leaderboard.board", "tradeoff",
                       "detection", "studies.thesis.failures", "parameters", "combinations", "controls", "benign",
                       "guidelines", "studies.leaderboard.beside", "studies.thesis.beside", "provenance"]


def test_the_generic_sections_name_no_built_in_defense_outside_the_controls():
    # The controls (perfect_filter, random_filter) are named in settings.py until the method protocol
    # declares a role; the controls section compares them by design. Nothing else names a defense.
    # ("fp" is also the false positives' column, so Fine-Pruning is caught by its comparisons only.)
    named = re.compile(r"""['"](ac|ss|dp|perfect_filter|random_filter)['"]|(d\d_name|defense) = '\w""")
    for path in (REPORT / "sections").glob("*.py"):
        if path.name in ("controls.py", "settings.py"):
            continue
        assert not named.search(path.read_text()), path.name
