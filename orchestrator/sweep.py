"""The sweep driver: plan a search space against the storage root, then run the missing trials on Ray Tune.

A trial is one Tune trial running :func:`orchestrator.pipeline.execute_trial`; all logic lives in
plain functions so tests can call them without a cluster.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from orchestrator.errors import StorageError
from orchestrator.pipeline import STAGES, stage_keys
from orchestrator.results import finished_trial_ids, results_dir
from orchestrator.search_space import TrialSpec
from orchestrator.store import ArtifactStore

# Ray would otherwise report usage to its servers; bdsweep sends no traffic off the machine.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Tune's newer console output prints its own tables whatever the verbosity; bdsweep prints progress itself.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

REPORTED_METRICS = ("clean_acc_before", "asr_before", "clean_acc_after", "asr_after", "n_stages_computed")


@dataclass(frozen=True)
class SweepPlan:
    """What running a search space against a storage root would do.

    Attributes
    ----------
    trials : all trials of the space
    pending : trials with no result file yet (the ones that will run), shortest pipelines first
    stages : Counter of unique stages the sweep needs, by stage name
    cached : Counter of those already in the artifact store
    """

    name: str
    storage: Path
    trials: list[TrialSpec]
    pending: list[TrialSpec]
    stages: Counter
    cached: Counter

    def describe(self) -> str:
        done = len(self.trials) - len(self.pending)
        stage_list = ", ".join(f"{name} {self.stages[name]}" for name in self.stages)
        return (
            f"sweep {self.name!r}: {len(self.trials)} trials ({len(self.pending)} to run, {done} already have results)\n"
            f"unique stages: {sum(self.stages.values())} ({stage_list}); "
            f"{sum(self.cached.values())} already in the cache"
        )


def sweep_dir(storage: str | Path, name: str) -> Path:
    return Path(storage) / name


def plan_sweep(trials: list[TrialSpec], storage: str | Path, name: str) -> SweepPlan:
    """Compare ``trials`` with the results and artifacts already under ``storage``; computes nothing."""
    storage = Path(storage)
    _check_same_space(storage, name, trials)
    store = ArtifactStore(storage / "cache")
    done = finished_trial_ids(storage, name)
    unique: dict[str, str] = {}
    for trial in trials:
        for stage, key in stage_keys(trial).values():
            unique[key] = stage
    cached = Counter(stage for key, stage in unique.items() if store.contains(STAGES[stage], key))
    return SweepPlan(
        name=name,
        storage=storage,
        trials=trials,
        # Undefended trials first: each trains a different model, so the first trials to run in
        # parallel do not queue on one model's lock, and every later trial finds its model cached.
        pending=sorted((t for t in trials if t.trial_id not in done), key=lambda t: len(t.defenses)),
        stages=Counter(unique.values()),
        cached=cached,
    )


def _trials_file(storage: Path, name: str) -> Path:
    return sweep_dir(storage, name) / "trials.json"


def _check_same_space(storage: Path, name: str, trials: list[TrialSpec]) -> None:
    """Refuse to mix two different search spaces' rows under one sweep name."""
    recorded = _trials_file(storage, name)
    if not recorded.is_file():
        return
    before = {t["trial_id"] for t in json.loads(recorded.read_text())}
    if before != {t.trial_id for t in trials}:
        raise StorageError(
            str(sweep_dir(storage, name)), None,
            f"sweep {name!r} already exists with a different search space; choose another --name",
        )


def record_sweep(plan: SweepPlan, space_file: str | Path) -> None:
    """Keep the search space and its expansion beside the results, for ``status``."""
    directory = sweep_dir(plan.storage, plan.name)
    directory.mkdir(parents=True, exist_ok=True)
    trials = [{"trial_id": t.trial_id, **t.model_dump(mode="json")} for t in plan.trials]
    for target, text in (("space.yaml", Path(space_file).read_text()), ("trials.json", json.dumps(trials, indent=1))):
        temporary = directory / f".{target}.tmp"
        temporary.write_text(text)
        os.replace(temporary, directory / target)


def run_trial_in_tune(config: dict, *, trials: dict, storage: str, sweep: str, cpus: float) -> None:
    """Tune trainable: run one trial's pipeline and write its Parquet row (with the Ray node it ran on)."""
    import ray
    from ray import tune

    from orchestrator.pipeline import execute_trial
    from orchestrator.results import write_row
    from tasks.runtime import configure_tensorflow

    configure_tensorflow(cpus)
    trial = TrialSpec.model_validate(trials[config["trial_id"]])
    try:
        row = execute_trial(trial, ArtifactStore(Path(storage) / "cache"), sweep)
    except Exception:
        # Tune writes its own error file only after its callbacks ran; this one the driver can read.
        write_error(storage, sweep, trial.trial_id, traceback.format_exc())
        raise
    row["node_ip"] = ray.util.get_node_ip_address()
    row["node_id"] = ray.get_runtime_context().get_node_id()
    write_row(storage, sweep, row)
    tune.report({key: row[key] for key in REPORTED_METRICS})


def _progress_callback(plan: SweepPlan, echo: Callable[[str], None]):
    from ray import tune

    labels = {
        t.trial_id: f"{t.attack.trigger} {t.attack.poison_pct:g}% seed={t.attack.seed} {t.pipeline}" for t in plan.pending
    }

    class Progress(tune.Callback):
        def __init__(self):
            self.finished = 0

        def on_trial_start(self, iteration, trials, trial, **info):
            echo(f"  started   {labels[trial.config['trial_id']]}")

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.finished += 1
            result = trial.last_result or {}
            echo(
                f"[{self.finished}/{len(plan.pending)}] done {labels[trial.config['trial_id']]}: "
                f"clean_acc {result.get('clean_acc_after', float('nan')):.3f}, "
                f"asr {result.get('asr_after', float('nan')):.3f}, "
                f"{result.get('n_stages_computed', '?')} stages computed"
            )

        def on_trial_error(self, iteration, trials, trial, **info):
            self.finished += 1
            trial_id = trial.config["trial_id"]
            error_file = _error_file(plan.storage, plan.name, trial_id)
            text = error_file.read_text() if error_file.is_file() else trial.get_error()
            echo(
                f"[{self.finished}/{len(plan.pending)}] FAILED {labels[trial_id]}: {_last_line(text)}\n"
                f"    traceback: {error_file if error_file.is_file() else trial.path}"
            )

    return Progress()


def keep_local_ray_on_loopback() -> None:
    """Make a local Ray instance listen on 127.0.0.1 only.

    Ray replaces a node address of 127.0.0.1 with the machine's reachable IP and binds its servers
    there, unless clusters are switched off with this variable (its name says Windows/OSX; it is
    read on every platform). Must be set before ``ray`` is imported; not for ``--address`` runs,
    where other nodes must reach this driver.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def _error_file(storage: str | Path, sweep: str, trial_id: str) -> Path:
    return sweep_dir(storage, sweep) / "errors" / f"{trial_id}.txt"


def write_error(storage: str | Path, sweep: str, trial_id: str, text: str) -> None:
    """Keep the traceback of a failed trial at ``<storage>/<sweep>/errors/<trial_id>.txt``."""
    path = _error_file(storage, sweep, trial_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _last_line(text: str | None) -> str:
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
        ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", **quiet)
    logging.getLogger("ray.tune").setLevel(logging.WARNING)


def launch(plan: SweepPlan, resources, max_concurrent: int | None = None, address: str | None = None,
           echo: Callable[[str], None] = print) -> int:
    """Run ``plan.pending`` as Tune trials; returns the number of trials that failed."""
    if not plan.pending:
        return 0
    if address is None:
        keep_local_ray_on_loopback()
    import ray
    from ray import tune

    started_here = not ray.is_initialized()
    start_ray(address)
    try:
        trials = {t.trial_id: t.model_dump(mode="json") for t in plan.pending}
        trainable = tune.with_parameters(
            run_trial_in_tune, trials=trials, storage=str(plan.storage.resolve()), sweep=plan.name, cpus=resources.cpu
        )
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": resources.cpu, "gpu": resources.gpu}),
            param_space={"trial_id": tune.grid_search(list(trials))},
            tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent, reuse_actors=False),
            run_config=tune.RunConfig(
                name="tune",
                storage_path=str(sweep_dir(plan.storage, plan.name).resolve()),
                verbose=0,
                callbacks=[_progress_callback(plan, echo)],
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
        return tuner.fit().num_errors
    finally:
        if started_here:
            ray.shutdown()


def results_location(plan: SweepPlan) -> Path:
    return results_dir(plan.storage, plan.name).resolve()


def sweep_status(storage: str | Path, name: str) -> str:
    """A short report: trials done and pending, and stages computed versus reused by finished trials."""
    from orchestrator.results import load_results

    trials_file = _trials_file(Path(storage), name)
    if not trials_file.is_file():
        raise StorageError(str(storage), None, f"no sweep named {name!r} (expected {trials_file})")
    trial_ids = {t["trial_id"] for t in json.loads(trials_file.read_text())}
    done = finished_trial_ids(storage, name) & trial_ids
    lines = [f"sweep {name!r}: {len(trial_ids)} trials, {len(done)} done, {len(trial_ids) - len(done)} pending"]
    if done:
        frame = load_results(storage, name)
        computed = [c for c in frame.columns if c.endswith("_computed") and c != "n_stages_computed"]
        n_computed = int(frame[computed].fillna(False).astype(bool).to_numpy().sum())
        n_total = int(frame[computed].notna().to_numpy().sum())
        lines.append(f"stages: {n_computed} computed, {n_total - n_computed} reused across finished trials")
    return "\n".join(lines)
