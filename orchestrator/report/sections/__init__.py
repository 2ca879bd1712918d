"""The report's sections, in display order: the generic ones, and those a study registers.

Each section module exposes ``section(context) -> Section | None``. The generic sections read any
sweep and know methods only through the registry; a study (a package under :mod:`orchestrator.studies`,
such as the thesis's) adds sections of its own with :func:`register_section`, placing each after a
generic one, and each of its sections decides itself whether a sweep's rows are its study's (returning
None otherwise). A new study is a new package, not an edit of these sections.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.report.model import ReportContext, Section
from orchestrator.report.sections import (
    attacks,
    benign,
    combinations,
    controls,
    detection,
    guidelines,
    master,
    parameters,
    provenance,
    sweep,
    tradeoff,
)

SectionFunction = Callable[[ReportContext], Section | None]

# The generic sections by name, in display order.
GENERIC: dict[str, SectionFunction] = {
    "sweep": sweep.section, "attacks": attacks.section, "master": master.section, "tradeoff": tradeoff.section,
    "detection": detection.section, "parameters": parameters.section, "combinations": combinations.section,
    "controls": controls.section, "benign": benign.section, "guidelines": guidelines.section,
    "provenance": provenance.section,
}
_REGISTERED: list[tuple[str, SectionFunction]] = []  # (the generic section it follows, the section)


def register_section(function: SectionFunction, after: str) -> SectionFunction:
    """Show ``function``'s section after the generic section ``after`` (a key of :data:`GENERIC`); sections
    registered after the same one keep the order they were registered in. Registering twice is a no-op.
    Returns ``function``, so that it can decorate."""
    if after not in GENERIC:
        raise KeyError(f"no generic section {after!r}; there are {', '.join(GENERIC)}")
    if (after, function) not in _REGISTERED:
        _REGISTERED.append((after, function))
    return function


def report_sections() -> list[SectionFunction]:
    """Every section function in display order: the generic ones, each followed by those the studies
    registered after it (the studies of :mod:`orchestrator.studies` are imported, so they register)."""
    import orchestrator.studies  # noqa: F401  (each study registers its sections when imported)

    ordered = []
    for name, function in GENERIC.items():
        ordered.append(function)
        ordered += [registered for after, registered in _REGISTERED if after == name]
    return ordered
