"""The Tune trainable: one trial in a worker process, and what it leaves in the storage root.

A trial runs :func:`orchestrator.pipeline.execute_trial` and writes its Parquet row; while it runs,
a marker with a heartbeat says so (for ``status``); when it raises, its traceback is kept beside
the rows for the driver and ``status`` to read. Worker processes run trial after trial (see
:func:`reuse_workers`).
"""

from __future__ import annotations

import json
import os
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from orchestrator.results import read_row
from orchestrator.search_space import TrialSpec
from orchestrator.storage import StorageRoot, heartbeat, open_storage
from orchestrator.store import artifact_store


REPORTED_METRICS = ("clean_acc_before", "asr_before", "clean_acc_after", "asr_after", "n_stages_computed")


# A running trial touches its marker this often (seconds); a marker three beats old is a dead trial's.
HEARTBEAT_SECONDS = 10.0


@contextmanager
def running_marker(storage: str | Path | StorageRoot, sweep: str, trial_id: str, every: float = HEARTBEAT_SECONDS,
                   **where):
    """Mark ``trial_id`` as running for ``status``: ``<sweep>/running/<trial_id>.json``, rewritten every ``every`` s.

    The file holds the pid, the start time and ``where`` (the Ray node the trial runs on); its
    modification time is the heartbeat.
    """
    storage = open_storage(storage)
    marker = (sweep, "running", f"{trial_id}.json")
    text = json.dumps({"pid": os.getpid(), "started": time.time(), **where})
    storage.write_text(*marker, text=text)
    try:
        with heartbeat(every, lambda _: storage.write_text(*marker, text=text), f"heartbeat-{trial_id}"):
            yield
    finally:
        storage.delete(*marker)


def reuse_workers() -> bool:
    """Whether Tune runs trial after trial in one worker process (``BDSWEEP_REUSE_WORKERS``, default on).

    Importing TensorFlow and ART takes a fresh worker 6-8 s, more than a cached trial's work. Tune
    (``reuse_actors``) hands a finished trial's process to the next trial that needs the same
    resources, which every trial of a sweep does; it never reuses the process of a trial that
    raised or died, so a retry starts in a fresh one. ``BDSWEEP_REUSE_WORKERS=0`` gives every
    trial its own process again (the before of ``bench/bench_overhead.py``).
    """
    return os.environ.get("BDSWEEP_REUSE_WORKERS", "1") != "0"


def clear_keras_session() -> None:
    """Drop what earlier trials of this worker process left in Keras's and TensorFlow's global state.

    Keras keeps name counters and graph state per process; a reused worker would otherwise grow
    them trial after trial. Models that other code still holds (the store's loaded artifacts) keep
    working.
    """
    import keras

    # Without a full garbage collection: it took 0.3 s a trial here, and Python's own generational
    # collector frees the cycles a finished trial leaves anyway.
    keras.backend.clear_session(free_memory=False)


def run_trial_in_tune(config: dict, *, trials: dict, storage: StorageRoot | str, sweep: str, resources: dict,
                      shared_cache: bool = True) -> None:
    """Tune trainable: run one trial's pipeline and write its Parquet row (with the Ray node and
    the worker process it ran in).

    A trial that already has a row (Tune ran it again after a restore) reports that row and
    computes nothing. The worker process may have run other trials before (see
    :func:`reuse_workers`); what they loaded stays in the artifact store's in-process cache.
    Without ``shared_cache`` (``--no-cache``) the trial computes its whole pipeline alone, in a
    store of its own that is deleted after it: what an orchestrator without a cache would do.
    """
    import ray
    from ray import tune

    storage = open_storage(storage)
    trial = TrialSpec.model_validate(trials[config["trial_id"]])
    if (row := read_row(storage, sweep, trial.dataset.name, trial.train.model, trial.trial_id)) is not None:
        tune.report({**{key: row[key] for key in REPORTED_METRICS}, "had_row": True})
        return

    from tasks.runtime import configure_tensorflow

    configure_tensorflow(resources["cpu"], resources.get("gpu_memory_mb"))
    clear_keras_session()
    node = {"node_ip": ray.util.get_node_ip_address(), "node_id": ray.get_runtime_context().get_node_id()}
    with trial_store(storage, shared_cache) as store:
        row = run_trial(trial, storage, sweep, store, node)
    tune.report({key: row[key] for key in REPORTED_METRICS})


def run_trial(trial: TrialSpec, storage: StorageRoot, sweep: str, store, node: dict) -> dict:
    """Run ``trial``'s pipeline through ``store`` and write its row; returns the row.

    The row holds ``node`` (``node_ip``, ``node_id``: where it ran) and this process's pid as
    ``worker_pid``. While it runs, the trial's running marker beats; if it raises, its traceback is
    kept in ``<sweep>/errors/<trial_id>.txt`` (and the exception raised again); once its row is
    written, an error file of an earlier attempt is deleted. What a Tune worker runs, and what the
    tests' in-process harness runs without Ray.
    """
    from orchestrator.pipeline import execute_trial, row_types
    from orchestrator.results import write_row

    with running_marker(storage, sweep, trial.trial_id, **node):
        try:
            row = execute_trial(trial, store, sweep)
        except Exception:
            # Tune writes its own error file only after its callbacks ran; this one the driver can read.
            write_error(storage, sweep, trial.trial_id, traceback.format_exc())
            raise
        row = {**row, **node, "worker_pid": os.getpid()}
        write_row(storage, sweep, row, types=row_types(trial))
    storage.delete(*error_file(sweep, trial.trial_id))
    return row


@contextmanager
def trial_store(storage: StorageRoot, shared: bool):
    """The sweep's artifact store, or with ``shared`` False a private one in a temporary directory."""
    if shared:
        yield artifact_store(storage)
        return
    import tempfile

    from orchestrator.store import ArtifactStore

    with tempfile.TemporaryDirectory(prefix="bdsweep-no-cache-") as directory:
        yield ArtifactStore(directory)


def error_file(sweep: str, trial_id: str) -> tuple[str, str, str]:
    return sweep, "errors", f"{trial_id}.txt"


def write_error(storage: str | Path | StorageRoot, sweep: str, trial_id: str, text: str) -> None:
    """Keep the traceback of a failed trial at ``<storage>/<sweep>/errors/<trial_id>.txt``."""
    open_storage(storage).write_text(*error_file(sweep, trial_id), text=text)


def last_line(text: str | None) -> str:
    """The exception line of a traceback (``tasks.errors.DatasetError: /data/x: directory not found``)."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no error text)"
