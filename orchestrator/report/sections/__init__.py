"""The report's sections, in display order: each module exposes ``section(context) -> Section | None``."""

from orchestrator.report.sections import (
    answers,
    attacks,
    benign,
    combinations,
    controls,
    detection,
    failures,
    guidelines,
    master,
    parameters,
    provenance,
    sweep,
    thesis,
    tradeoff,
)

SECTIONS = [
    sweep.section, answers.section, attacks.section, master.section, tradeoff.section, detection.section,
    failures.section, parameters.section,
    combinations.section, controls.section, benign.section, guidelines.section, thesis.section, provenance.section,
]
