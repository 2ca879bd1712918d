"""The sweep driver: plan a search space against the storage root, then run the missing trials on Ray Tune.

A trial is one Tune trial running :func:`orchestrator.pipeline.execute_trial`; all logic lives in
plain functions so tests can call them without a cluster.

What is done lives in the storage root, not in the driver: a trial is finished when its result
file exists, a stage when its artifact does. So a sweep whose driver died is resumed by restoring
Tune's experiment (errored trials restarted) and then running whatever still has no row, and a
trial that Tune runs twice finds its row and stops at once.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from contextlib import contextmanager
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow.fs as pafs
import yaml

from orchestrator.errors import StorageError
from orchestrator.pipeline import stage_keys
from orchestrator.results import RESULTS, finished_trial_ids, read_row
from orchestrator.search_space import Resources, TrialSpec
from orchestrator.storage import StorageRoot, heartbeat, open_storage
from orchestrator.store import artifact_store

# Ray would otherwise report usage to its servers; bdsweep sends no traffic off the machine.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Tune's newer console output prints its own tables whatever the verbosity; bdsweep prints progress itself.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

REPORTED_METRICS = ("clean_acc_before", "asr_before", "clean_acc_after", "asr_after", "n_stages_computed")
# A running trial touches its marker this often (seconds); a marker three beats old is a dead trial's.
HEARTBEAT_SECONDS = 10.0


@dataclass(frozen=True)
class SweepPlan:
    """What running a search space against a storage root would do.

    Attributes
    ----------
    trials : all trials of the space
    pending : trials with no result file yet (the ones that will run), shortest pipelines first
    stages : Counter of unique stages the sweep needs at most, by stage name (see :func:`stage_keys`)
    cached : Counter of those already in the artifact store
    resources : what Ray reserves for each trial
    """

    name: str
    storage: StorageRoot
    trials: list[TrialSpec]
    pending: list[TrialSpec]
    stages: Counter
    cached: Counter
    resources: Resources

    def describe(self) -> str:
        done = len(self.trials) - len(self.pending)
        stage_list = ", ".join(f"{name} {self.stages[name]}" for name in self.stages)
        return (
            f"sweep {self.name!r}: {len(self.trials)} trials ({len(self.pending)} to run, {done} already have results)\n"
            f"unique stages: at most {sum(self.stages.values())} ({stage_list}); "
            f"{sum(self.cached.values())} already in the cache\n"
            "(an upper bound: a stage keyed by what an earlier one decided, a retraining by the samples a detection "
            "kept, is counted once per detection; configurations that keep the same samples share it when they run)"
        )


TRIALS_FILE = "trials.json"


def plan_sweep(trials: list[TrialSpec], storage: str | Path | StorageRoot, name: str,
               resources: Resources = Resources()) -> SweepPlan:
    """Compare ``trials`` with the results and artifacts already under ``storage``; computes nothing."""
    storage = open_storage(storage)
    _check_same_space(storage, name, trials)
    done = finished_trial_ids(storage, name)
    unique: dict[str, str] = {}
    for trial in trials:
        for stage, key in stage_keys(trial).values():
            unique[key] = stage
    stored = artifact_store(storage).stored_keys()
    cached = Counter(stage for key, stage in unique.items() if (stage, key) in stored)
    return SweepPlan(
        name=name,
        storage=storage,
        trials=trials,
        # Undefended trials first: each trains a different model, so the first trials to run in
        # parallel do not queue on one model's lock, and every later trial finds its model cached.
        pending=sorted((t for t in trials if t.trial_id not in done), key=lambda t: len(t.defenses)),
        stages=Counter(unique.values()),
        cached=cached,
        resources=resources,
    )


def sweep_exists(storage: str | Path | StorageRoot, name: str) -> bool:
    """Whether a sweep of that name was started under ``storage`` (its trials were recorded)."""
    return open_storage(storage).exists(name, TRIALS_FILE)


def check_not_started(storage: str | Path | StorageRoot, name: str) -> None:
    """Refuse to start a sweep under a name that already has one: it is resumed, not started again."""
    if sweep_exists(storage, name):
        raise StorageError(
            open_storage(storage).display(name), None,
            f"sweep {name!r} already exists; continue it with `bdsweep resume {name}` (or `run --resume`), "
            "or choose another --name",
        )


def _check_same_space(storage: StorageRoot, name: str, trials: list[TrialSpec]) -> None:
    """Refuse to mix two different search spaces' rows under one sweep name."""
    try:
        before = {t["trial_id"] for t in json.loads(storage.read_text(name, TRIALS_FILE))}
    except FileNotFoundError:
        return
    if before != {t.trial_id for t in trials}:
        raise StorageError(
            storage.display(name), None,
            f"sweep {name!r} already exists with a different search space; choose another --name",
        )


def record_sweep(plan: SweepPlan, space_file: str | Path) -> None:
    """Keep the search space and its expansion beside the results, for ``resume`` and ``status``."""
    trials = [{"trial_id": t.trial_id, **t.model_dump(mode="json")} for t in plan.trials]
    plan.storage.write_text(plan.name, "space.yaml", text=Path(space_file).read_text())
    # Written last: its presence is what makes the sweep exist (see sweep_exists).
    plan.storage.write_text(plan.name, TRIALS_FILE, text=json.dumps(trials, indent=1))


def require_sweep(storage: StorageRoot, name: str) -> None:
    if not sweep_exists(storage, name):
        raise StorageError(storage.display(), None, f"no sweep named {name!r} (expected {storage.display(name, TRIALS_FILE)})")


def recorded_sweep(storage: str | Path | StorageRoot, name: str) -> SweepPlan:
    """The plan of a sweep that was started before, rebuilt from what :func:`record_sweep` kept."""
    storage = open_storage(storage)
    require_sweep(storage, name)
    trials = [
        TrialSpec.model_validate({k: v for k, v in t.items() if k != "trial_id"})
        for t in json.loads(storage.read_text(name, TRIALS_FILE))
    ]
    # Only the resources are read back from the space: its paths may be relative to where it was.
    space = yaml.safe_load(storage.read_text(name, "space.yaml"))
    return plan_sweep(trials, storage, name, Resources.model_validate(space.get("resources") or {}))


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

    from orchestrator.pipeline import execute_trial, row_types
    from orchestrator.results import write_row
    from tasks.runtime import configure_tensorflow

    configure_tensorflow(resources["cpu"], resources.get("gpu_memory_mb"))
    clear_keras_session()
    node = {"node_ip": ray.util.get_node_ip_address(), "node_id": ray.get_runtime_context().get_node_id()}
    with running_marker(storage, sweep, trial.trial_id, **node), _trial_store(storage, shared_cache) as store:
        try:
            row = execute_trial(trial, store, sweep)
        except Exception:
            # Tune writes its own error file only after its callbacks ran; this one the driver can read.
            write_error(storage, sweep, trial.trial_id, traceback.format_exc())
            raise
        write_row(storage, sweep, {**row, **node, "worker_pid": os.getpid()}, types=row_types(trial))
    storage.delete(*error_file(sweep, trial.trial_id))
    tune.report({key: row[key] for key in REPORTED_METRICS})


@contextmanager
def _trial_store(storage: StorageRoot, shared: bool):
    """The sweep's artifact store, or with ``shared`` False a private one in a temporary directory."""
    if shared:
        yield artifact_store(storage)
        return
    import tempfile

    from orchestrator.store import ArtifactStore

    with tempfile.TemporaryDirectory(prefix="bdsweep-no-cache-") as directory:
        yield ArtifactStore(directory)


def trial_label(trial: TrialSpec) -> str:
    return f"{trial.attack.trigger} {trial.attack.poison_pct:g}% seed={trial.attack.seed} {trial.pipeline}"


def keep_local_ray_on_loopback() -> None:
    """Make a local Ray instance listen on 127.0.0.1 only.

    Ray replaces a node address of 127.0.0.1 with the machine's reachable IP and binds its servers
    there, unless clusters are switched off with this variable (its name says Windows/OSX; it is
    read on every platform). Must be set before ``ray`` is imported; not for ``--address`` runs,
    where other nodes must reach this driver.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def error_file(sweep: str, trial_id: str) -> tuple[str, str, str]:
    return sweep, "errors", f"{trial_id}.txt"


def write_error(storage: str | Path | StorageRoot, sweep: str, trial_id: str, text: str) -> None:
    """Keep the traceback of a failed trial at ``<storage>/<sweep>/errors/<trial_id>.txt``."""
    open_storage(storage).write_text(*error_file(sweep, trial_id), text=text)


def last_line(text: str | None) -> str:
    """The exception line of a traceback (``tasks.errors.DatasetError: /data/x: directory not found``)."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no error text)"


def start_ray(address: str | None = None) -> None:
    """Connect to the cluster at ``address``, or start a local Ray bound to 127.0.0.1."""
    import ray

    if ray.is_initialized():
        return
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **quiet)
    else:
        # "local": a new instance of our own; without it Ray joins the last cluster `ray start` made on
        # this machine (/tmp/ray/ray_current_cluster), even one that is gone.
        ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", **quiet)
    logging.getLogger("ray.tune").setLevel(logging.WARNING)


TUNE_EXPERIMENT = "tune"


def tune_location(plan: SweepPlan) -> tuple[str, pafs.FileSystem | None]:
    """Ray Tune's experiment directory of the sweep, and the filesystem to give Tune for it (None: local)."""
    return plan.storage.path(plan.name, TUNE_EXPERIMENT), None if plan.storage.is_local else plan.storage.filesystem


def launch(plan: SweepPlan, max_concurrent: int | None = None, address: str | None = None,
           echo: Callable[[str], None] = print, max_failures: int = 2, resume: bool = False,
           shared_cache: bool = True) -> int:
    """Run ``plan.pending`` as Tune trials; returns the number of trials that failed.

    With ``resume``, Tune's experiment from an earlier launch is restored first (unfinished trials
    continued, errored ones restarted); trials it does not cover then run in a new experiment.
    ``max_failures`` retries a trial whose worker or node died (and one that raised).
    """
    if not plan.pending:
        return 0
    if address is None:
        keep_local_ray_on_loopback()
    import ray
    from ray import tune

    # Imported here: they import Ray (only after the loopback setting above), and progress imports
    # from this module.
    from orchestrator.progress import SweepProgress
    from orchestrator.ray_watch import RayWatch
    from orchestrator.trial_searcher import TrialIdSearcher

    started_here = not ray.is_initialized()
    start_ray(address)
    _scale_tune_to(len(plan.pending), max_concurrent, plan.resources)
    try:
        trials = {t.trial_id: t.model_dump(mode="json") for t in plan.trials}
        labels = {t.trial_id: trial_label(t) for t in plan.trials}
        trainable = tune.with_resources(
            tune.with_parameters(
                run_trial_in_tune, trials=trials, storage=plan.storage, sweep=plan.name,
                resources=plan.resources.model_dump(), shared_cache=shared_cache,
            ),
            {"cpu": plan.resources.cpu, "gpu": plan.resources.gpu},
        )
        experiment, filesystem = tune_location(plan)
        pending = plan.pending
        if resume and tune.Tuner.can_restore(experiment, storage_filesystem=filesystem):
            # Restored trials keep the run and retry settings of the launch that started them.
            echo(f"restoring Tune's experiment {plan.storage.display(plan.name, TUNE_EXPERIMENT)}")
            restored = {result.config["trial_id"] for result in tune.Tuner.restore(
                experiment, trainable, restart_errored=True, storage_filesystem=filesystem).fit()}
            pending = [t for t in pending if t.trial_id not in restored]
            if pending:
                echo(f"{len(pending)} trials were not in Tune's experiment; running them")
        if not pending:
            return _count_failed(plan)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=TrialIdSearcher([t.trial_id for t in pending]), num_samples=len(pending),
                max_concurrent_trials=max_concurrent, reuse_actors=reuse_workers(),
            ),
            run_config=tune.RunConfig(
                name=TUNE_EXPERIMENT,
                storage_path=plan.storage.path(plan.name),
                storage_filesystem=filesystem,
                verbose=0,
                callbacks=[SweepProgress(plan.storage, plan.name, labels, echo), RayWatch(plan.name)],
                failure_config=tune.FailureConfig(max_failures=max_failures),
            ),
        )
        tuner.fit()
        return _count_failed(plan)
    finally:
        if started_here:
            ray.shutdown()


def _scale_tune_to(n_trials: int, max_concurrent: int | None, resources: Resources) -> None:
    """Tune's settings for ``n_trials`` trials, set before the Tuner reads them.

    - Its per-trial CSV/JSON/TensorBoard loggers are off: bdsweep writes its own rows, and the
      loggers' files and memory grow with the trial count.
    - Experiment snapshots are spaced by the sweep's size (10 s per 1,000 trials, at least 10 s):
      a snapshot serialises every trial, and resume reads what is done from the rows anyway.
    - Pending placement groups are bounded by the cluster's slots (at least 16, so an autoscaler
      still sees demand for workers it has not started); with a searcher Tune would keep only one.
    """
    import ray

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = str(max(10, n_trials // 100))
    cluster = ray.cluster_resources()
    slots = int(cluster.get("CPU", 1) // max(resources.cpu, 1e-9))
    if resources.gpu:
        slots = min(slots, int(cluster.get("GPU", 0) // resources.gpu))
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(max_concurrent or max(16, slots))


def _count_failed(plan: SweepPlan) -> int:
    """How many of the trials ``plan`` meant to run still have no row."""
    return len({t.trial_id for t in plan.pending} - finished_trial_ids(plan.storage, plan.name))


def results_location(plan: SweepPlan) -> str:
    return plan.storage.display(plan.name, RESULTS)


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
