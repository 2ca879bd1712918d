"""Studies: sections a report shows for sweeps of one study, beside the generic ones.

A study is a package here that registers its sections with
:func:`orchestrator.report.sections.register_section` when imported; each of its sections returns
None for rows that are not its study's. The thesis's ("Backdoor defenses", TU Wien 2021) is
:mod:`orchestrator.studies.thesis`, the leaderboard's (issue 20) :mod:`orchestrator.studies.leaderboard`;
a new study is a sibling package, imported below.
"""

from orchestrator.studies import leaderboard, thesis  # noqa: F401
