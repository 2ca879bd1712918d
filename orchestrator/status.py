"""Where a sweep stands: trials done, running, errored and pending, read from the storage root."""

from __future__ import annotations

import json
import time
from pathlib import Path

from orchestrator.errors import StorageError
from orchestrator.results import finished_trial_ids
from orchestrator.storage import StorageRoot, open_storage
from orchestrator.sweep import TRIALS_FILE, require_sweep
from orchestrator.trainable import HEARTBEAT_SECONDS


def trial_states(storage: str | Path | StorageRoot, name: str, now: float | None = None,
                 done: set[str] | None = None) -> dict[str, set[str]]:
    """Trial ids of a sweep by state: ``done`` (a readable row), ``running`` (a fresh heartbeat),
    ``errored`` (a traceback from its last attempt), ``pending`` (none of these).

    ``done`` gives the trials with rows when the caller has just read them (so the counts match
    those rows); else they are read.
    """
    storage = open_storage(storage)
    trial_ids = {t["trial_id"] for t in json.loads(storage.read_text(name, TRIALS_FILE))}
    now = time.time() if now is None else now
    done = (finished_trial_ids(storage, name, warn=False) if done is None else done) & trial_ids
    running = {
        _stem(info) for info in storage.files(name, "running", suffix=".json")
        if now - info.mtime.timestamp() < 3 * HEARTBEAT_SECONDS
    }
    running &= trial_ids - done
    errored = {_stem(info) for info in storage.files(name, "errors", suffix=".txt")} & trial_ids - done - running
    return {"done": done, "running": running, "errored": errored, "pending": trial_ids - done - running - errored}


def _stem(info) -> str:
    return info.base_name.rsplit(".", 1)[0]


def sweep_status(storage: str | Path | StorageRoot, name: str) -> str:
    """A short report: trials done, running, errored and pending, stages computed versus reused, and
    the row files that cannot be read (their trials count as not done)."""
    from orchestrator.results import open_results, scan_rows

    storage = open_storage(storage)
    require_sweep(storage, name)
    try:
        results = open_results(storage, name, warn=False)  # read once: the counts match the rows
    except StorageError:  # no readable row yet
        results = None
    damaged = results.damaged if results else scan_rows(storage, [name]).damaged
    states = trial_states(storage, name, done=results.trial_ids if results else set())
    counts = ", ".join(f"{len(ids)} {state}" for state, ids in states.items())
    lines = [f"sweep {name!r}: {sum(map(len, states.values()))} trials: {counts}"]
    if damaged:
        lines.append(f"{len(damaged)} row file(s) cannot be read; their trials count as not done and "
                     f"`bdsweep resume {name}` runs them again: {', '.join(damaged)}")
    if results:
        frame = results.connection.execute("SELECT * FROM results").df()
        results.connection.close()
        computed = [c for c in frame.columns if c.endswith("_computed") and c != "n_stages_computed"]
        n_computed = int(frame[computed].fillna(False).astype(bool).to_numpy().sum())
        n_total = int(frame[computed].notna().to_numpy().sum())
        lines.append(f"stages: {n_computed} computed, {n_total - n_computed} reused across finished trials")
    if states["errored"]:
        lines.append(f"errored trials' tracebacks: {storage.display(name, 'errors')}; `bdsweep resume {name}` retries them")
    return "\n".join(lines)
