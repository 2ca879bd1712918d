"""The in-process harness: a search-space YAML string -> its trials -> each trial's pipeline, no Ray.

Everything that is not Ray's behaviour is tested through here: what a pipeline computes, which
stages it shares, the rows it writes and what ``status``, ``query`` and the report read from them.
A trial runs :func:`orchestrator.trainable.run_trial`, the function a Tune worker runs (marker,
:func:`orchestrator.pipeline.execute_trial` through the artifact store, the row or the error file),
in this process, one trial after another, in the order a sweep would start them (undefended first).
Rows say ``node_id = "in-process"``.

The sweep is recorded as ``bdsweep run`` records it, so ``bdsweep status``, ``report`` and ``resume``
(which starts no Ray when every trial has a row) work on it.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from orchestrator.search_space import SearchSpace, TrialSpec, load_search_space
from orchestrator.storage import StorageRoot, open_storage
from orchestrator.store import ArtifactStore, artifact_store

IN_PROCESS = {"node_ip": "127.0.0.1", "node_id": "in-process"}


def write_space(text: str, directory: Path, file_name: str = "space.yaml") -> Path:
    """Write the search space ``text`` (dedented) into ``directory``; returns the file."""
    path = Path(directory) / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def load_trials(text: str, directory: Path) -> tuple[SearchSpace, list[TrialSpec]]:
    """The search space ``text`` and its trials, as ``load_search_space`` reads them from a file in ``directory``."""
    return load_search_space(write_space(text, directory))


@dataclass
class InProcessSweep:
    """A search space run in this process.

    Attributes
    ----------
    rows : the row of every trial that finished, by trial id (what was written, node and pid included)
    errors : the exception of every trial that raised, by trial id
    store : the artifact store every trial resolved its stages through
    """

    name: str
    space_file: Path
    storage: StorageRoot
    trials: list[TrialSpec]
    store: ArtifactStore
    rows: dict[str, dict] = field(default_factory=dict)
    errors: dict[str, Exception] = field(default_factory=dict)

    def frame(self) -> pd.DataFrame:
        """The sweep's rows as ``query`` reads them back from Parquet (DuckDB over every row file)."""
        from orchestrator.results import query

        return query(self.storage, "SELECT * FROM results", sweep=self.name)

    def manifests(self, stage: str) -> list[Path]:
        """The manifest of every stored artifact of ``stage`` (a local storage root)."""
        return sorted(Path(self.store.root).glob(f"{stage}/*/manifest.json"))


def run_space(text: str, directory: Path, *, storage: str | Path | StorageRoot | None = None, name: str | None = None,
              shared_cache: bool = True, record: bool = True) -> InProcessSweep:
    """Run every trial of the search space ``text`` in this process, rows written under ``storage``.

    ``storage`` defaults to ``directory/runs``; ``name`` to the space's name. With ``shared_cache``
    False each trial computes its whole pipeline in a private store (``--no-cache``). With
    ``record`` the sweep is recorded as ``bdsweep run`` records it. A trial that raises is kept in
    ``errors`` (with its traceback in the sweep's ``errors/``), and the others still run.
    """
    from orchestrator.sweep import plan_sweep, record_sweep
    from orchestrator.trainable import run_trial, trial_store

    space_file = write_space(text, directory)
    space, trials = load_search_space(space_file)
    storage = open_storage(storage if storage is not None else Path(directory) / "runs")
    name = name or space.name
    plan = plan_sweep(trials, storage, name, space.resources)
    if record:
        record_sweep(plan, space_file)
    sweep = InProcessSweep(name, space_file, storage, trials, artifact_store(storage))
    for trial in plan.pending:
        with trial_store(storage, shared_cache) as store:
            try:
                sweep.rows[trial.trial_id] = run_trial(trial, storage, name, store, IN_PROCESS)
            except Exception as error:  # noqa: BLE001 - a failed trial is a result here, as under Tune
                sweep.errors[trial.trial_id] = error
    return sweep


def mixed_column_types(row_files) -> dict[str, set[str]]:
    """The columns that have more than one Parquet type (nulls aside) across ``row_files``, with
    their types: empty when every column has one type in every row."""
    import pyarrow.parquet as pq

    types: dict[str, set[str]] = {}
    for path in row_files:
        for column in pq.read_schema(path):
            types.setdefault(column.name, set()).add(str(column.type))
    return {name: kinds for name, kinds in types.items() if len(kinds - {"null"}) > 1}
