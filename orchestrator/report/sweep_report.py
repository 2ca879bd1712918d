"""A sweep's report from its storage root: gather what the sections read, write the files, put them in place.

This is the edge between the report (which reads a DuckDB connection and :class:`SweepFacts`) and
the storage root (local or an object store), used by ``bdsweep report`` and at the end of ``run``.
"""

from __future__ import annotations

import json
import shlex
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestrator.report.build import ReportFiles, write_report
from orchestrator.report.model import ReportContext, SweepFacts
from orchestrator.results import open_results
from orchestrator.search_space import TrialSpec
from orchestrator.storage import StorageRoot
from orchestrator.store import artifact_store
from orchestrator.status import trial_states
from orchestrator.sweep import TRIALS_FILE, require_sweep, trial_label
from orchestrator.trainable import error_file, last_line

REPORT = "report"  # a sweep's report directory
DEFAULT_BUDGETS = (1.0, 2.0, 5.0)


def sweep_facts(storage: StorageRoot, name: str, done: set[str], damaged: list[str], command: str) -> SweepFacts:
    """What the report says about the sweep besides its rows: the space, trial states (``done``:
    the trials whose rows the report reads), errors."""
    require_sweep(storage, name)
    states = trial_states(storage, name, done=done)
    errored = []
    if states["errored"]:
        trials = {t["trial_id"]: t for t in json.loads(storage.read_text(name, TRIALS_FILE))}
        for trial_id in sorted(states["errored"]):
            spec = TrialSpec.model_validate({k: v for k, v in trials[trial_id].items() if k != "trial_id"})
            try:
                text = storage.read_text(*error_file(name, trial_id))
            except FileNotFoundError:  # retried and cleared since the listing
                text = None
            errored.append((trial_id, trial_label(spec), last_line(text)))
    return SweepFacts(
        name=name,
        space_yaml=storage.read_text(name, "space.yaml"),
        states={state: len(ids) for state, ids in states.items()},
        errored=errored,
        damaged=damaged,
        command=command,
    )


def regenerate_command(storage: StorageRoot, name: str, out: str | None, budgets: tuple[float, ...]) -> str:
    """The ``bdsweep report`` command line that writes this report again."""
    words = ["bdsweep", "report", name, "--storage", storage.uri]
    if out:
        words += ["--out", out]
    if tuple(budgets) != DEFAULT_BUDGETS:
        words += [part for budget in budgets for part in ("--budget", f"{budget:g}")]
    return shlex.join(words)


@dataclass(frozen=True)
class SweepReport:
    """A written report: ``files`` as written locally, ``location`` of its index.html for messages
    (a path or an ``s3://`` URI), and the ``facts`` it was written from (``facts.partial``)."""

    files: ReportFiles
    location: str
    facts: SweepFacts


def write_sweep_report(storage: StorageRoot, name: str, out: str | Path | None = None,
                       budgets: tuple[float, ...] = DEFAULT_BUDGETS) -> SweepReport:
    """Write the report of sweep ``name`` to ``out`` (a local directory) or ``<storage>/<name>/report/``.

    A sweep with trials not done, or with row files that cannot be read, gets a report marked
    partial. Raises :class:`~orchestrator.errors.StorageError` for an unknown sweep, or one without
    a readable row yet.
    """
    command = regenerate_command(storage, name, out and str(out), budgets)
    with sweep_context(storage, name, command, budgets) as context:
        facts = context.facts
        if out is not None or storage.is_local:
            files = write_report(context, out if out is not None else storage.local_path(name, REPORT))
            return SweepReport(files, str(files.html), facts)
        with tempfile.TemporaryDirectory(prefix="bdsweep-report-") as scratch:
            files = write_report(context, scratch)
            _replace_remote(storage, Path(scratch), name)
        return SweepReport(files, storage.display(name, REPORT, files.html.name), facts)


@contextmanager
def sweep_context(storage: StorageRoot, name: str, command: str = "",
                  budgets: tuple[float, ...] = DEFAULT_BUDGETS) -> Iterator[ReportContext]:
    """What the report's sections read of sweep ``name``: its rows (a DuckDB connection, closed on
    exit) and its facts. Raises :class:`~orchestrator.errors.StorageError` for an unknown sweep, or
    one without a readable row yet."""
    require_sweep(storage, name)
    results = open_results(storage, name)
    try:
        facts = sweep_facts(storage, name, results.trial_ids, results.damaged, command)
        yield ReportContext(results.connection, facts, tuple(budgets), artifact_store(storage).read_stored)
    finally:
        results.connection.close()


def _replace_remote(storage: StorageRoot, directory: Path, name: str) -> None:
    """Upload a report written to ``directory`` over the one under ``<name>/report/`` on an object store."""
    for stale in storage.files(name, REPORT, recursive=True):
        relative = storage.relative(stale, name, REPORT)
        if not (directory / relative).exists():
            storage.delete(name, REPORT, relative)
    storage.upload(directory, name, REPORT)



