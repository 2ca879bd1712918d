"""The report's sections, in display order: each module exposes ``section(context) -> Section | None``."""

from orchestrator.report.sections import attacks, detection, master, sweep, tradeoff

SECTIONS = [sweep.section, attacks.section, master.section, tradeoff.section, detection.section]
