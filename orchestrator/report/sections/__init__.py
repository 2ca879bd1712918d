"""The report's sections, in display order: each module exposes ``section(context) -> Section | None``."""

from orchestrator.report.sections import (
    attacks,
    combinations,
    controls,
    detection,
    guidelines,
    master,
    parameters,
    provenance,
    sweep,
    thesis,
    tradeoff,
)

SECTIONS = [
    sweep.section, attacks.section, master.section, tradeoff.section, detection.section, parameters.section,
    combinations.section, controls.section, guidelines.section, thesis.section, provenance.section,
]
