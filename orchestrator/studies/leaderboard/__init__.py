"""The leaderboard study (issue 20): every attack against every defense, all-to-one as BackdoorBench
runs them, with seeds, intervals and rank ranges. Its sections: Leaderboard answers (:mod:`.answers`,
four claims judged by a stated rule), Leaderboard (:mod:`.board`), shown
for the all-to-one rows of any sweep with two seeds or more, and Beside BackdoorBench (:mod:`.beside`),
for the all-to-one rows of the attacks and defenses BackdoorBench also has.
"""

from orchestrator.report.sections import register_section
from orchestrator.studies.leaderboard import answers, beside, board

register_section(answers.section, after="sweep")
register_section(board.section, after="master")
register_section(beside.section, after="guidelines")
