"""Studies: sections a report shows for sweeps of one study, beside the generic ones.

A study is a package here that registers its sections with
:func:`orchestrator.report.sections.register_section` when imported; each of its sections returns
None for rows that are not its study's. The thesis's ("Backdoor defenses", TU Wien 2021) is
:mod:`orchestrator.studies.thesis`, the leaderboard's (issue 20) :mod:`orchestrator.studies.leaderboard`;
a new study is a sibling package, imported below.
"""

from orchestrator.studies import leaderboard, thesis  # noqa: F401


def findings_writers() -> dict:
    """Each study's :class:`~orchestrator.studies.findings.FindingsWriter` by study name (imported
    here, not above: they import the report, which imports the studies)."""
    from orchestrator.studies.leaderboard import findings as leaderboard_findings
    from orchestrator.studies.thesis import findings as thesis_findings

    return {writer.study: writer for writer in (thesis_findings.WRITER, leaderboard_findings.WRITER)}
