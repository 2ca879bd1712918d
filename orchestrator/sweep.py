"""The sweep driver: plan a search space against the storage root, then run the missing trials on Ray Tune.

A trial is one Tune trial running :func:`orchestrator.trainable.run_trial_in_tune`; all logic lives
in plain functions so tests can call them without a cluster. Beside this module: the trainable
(:mod:`orchestrator.trainable`), Ray start-up (:mod:`orchestrator.ray_runtime`), progress
(:mod:`orchestrator.progress`, :mod:`orchestrator.ray_watch`) and status (:mod:`orchestrator.status`).

What is done lives in the storage root, not in the driver: a trial is finished when its result
file exists, a stage when its artifact does. So a sweep whose driver died is resumed by restoring
Tune's experiment (errored trials restarted) and then running whatever still has no row, and a
trial that Tune runs twice finds its row and stops at once.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow.fs as pafs
import yaml

from orchestrator.errors import StorageError
from orchestrator.pipeline import StoredContents, stage_keys
from orchestrator.ray_runtime import keep_local_ray_on_loopback, start_ray
from orchestrator.results import RESULTS, finished_trial_ids
from orchestrator.search_space import Resources, TrialSpec
from orchestrator.storage import StorageRoot, open_storage
from orchestrator.store import artifact_store
from orchestrator.trainable import reuse_workers, run_trial_in_tune



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
    stored = StoredContents(artifact_store(storage))
    unique: dict[str, str] = {}
    for trial in trials:
        for stage, key in stage_keys(trial, stored).values():
            unique[key] = stage
    cached = Counter(stage for key, stage in unique.items() if (stage, key) in stored.stored)
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


def trial_label(trial: TrialSpec) -> str:
    return f"{trial.attack.label} {trial.attack.poison_pct:g}% seed={trial.attack.seed} {trial.pipeline}"


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

    # Imported here: they import Ray, which must come after the loopback setting above.
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


