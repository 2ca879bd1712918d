"""The thesis study ("Backdoor defenses", TU Wien 2021): its reference tables (:mod:`.reference`), its
setup written once (:mod:`.setup`), and the sections that read a sweep against it — Answers (its four
research questions judged), Why SS and DP failed, Beside the thesis — plus ``bdsweep findings``
(:mod:`.findings`). Each section shows only where the sweep's rows hold the thesis's arms.
"""

from orchestrator.report.sections import register_section
from orchestrator.studies.thesis import answers, beside, failures

register_section(answers.section, after="sweep")
register_section(failures.section, after="detection")
register_section(beside.section, after="guidelines")
