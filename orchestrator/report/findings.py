"""``bdsweep findings`` lives in the thesis study, :mod:`orchestrator.studies.thesis.findings`; this name
stays only for ``orchestrator/cli.py``, which imports it from here, until the CLI imports it from there."""

from orchestrator.studies.thesis.findings import write_findings

__all__ = ["write_findings"]
