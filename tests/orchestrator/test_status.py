"""Trial states for `bdsweep status`, running markers, and a trial that Tune runs again after its row was written."""

from __future__ import annotations

import json
import os
import textwrap
import time

from orchestrator.results import write_row
from orchestrator.search_space import load_search_space
from orchestrator.status import sweep_status, trial_states
from orchestrator.trainable import HEARTBEAT_SECONDS, run_trial_in_tune, running_marker

SPACE = """
name: states
dataset: {name: synthetic_signs, per_class: 10}
model: gtsrb_cnn
attack: {source: 8, target: 14, trigger: [yellow_square, white_square], poison_pct: [10, 20]}
"""


def recorded_trials(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(SPACE))
    _, trials = load_search_space(path)
    directory = tmp_path / "runs" / "states"
    directory.mkdir(parents=True)
    (directory / "trials.json").write_text(json.dumps([{"trial_id": t.trial_id, **t.model_dump(mode="json")} for t in trials]))
    return trials, directory


def row_of(trial, **metrics):
    return {
        "sweep": "states", "trial_id": trial.trial_id, "dataset": trial.dataset.name, "model": trial.train.model,
        "trigger": trial.attack.label, "poison_pct": trial.attack.poison_pct, "pipeline": trial.pipeline,
        "seed": trial.attack.seed, "train_computed": True, "poison_computed": False, **metrics,
    }


def test_running_marker_beats_while_the_trial_runs_and_goes_when_it_ends(tmp_path):
    with running_marker(tmp_path, "sweep", "abc", every=0.05, node_id="n1"):
        marker = tmp_path / "sweep" / "running" / "abc.json"
        assert json.loads(marker.read_text())["node_id"] == "n1"
        os.utime(marker, (0, 0))  # as if its last beat were long ago
        for _ in range(1200):  # waits for a beat, a minute at most: the heartbeat is a thread on shared CPUs
            if refreshed := marker.stat().st_mtime != 0:
                break
            time.sleep(0.05)
        assert refreshed and json.loads(marker.read_text())["node_id"] == "n1"  # rewritten whole by a beat
    assert not marker.exists()


def test_trial_states_tell_done_running_errored_and_pending(tmp_path):
    trials, directory = recorded_trials(tmp_path)
    done, running, errored, pending = trials
    write_row(tmp_path / "runs", "states", row_of(done))
    (directory / "errors").mkdir()
    (directory / "errors" / f"{done.trial_id}.txt").write_text("an earlier attempt failed")  # then it succeeded
    (directory / "errors" / f"{errored.trial_id}.txt").write_text("Traceback ...")
    (directory / "running").mkdir()
    (directory / "running" / f"{running.trial_id}.json").write_text("{}")
    stale = directory / "running" / f"{errored.trial_id}.json"  # its process died without cleaning up
    stale.write_text("{}")
    os.utime(stale, (time.time() - 4 * HEARTBEAT_SECONDS,) * 2)

    states = trial_states(tmp_path / "runs", "states")
    assert states == {
        "done": {done.trial_id}, "running": {running.trial_id}, "errored": {errored.trial_id}, "pending": {pending.trial_id}
    }
    report = sweep_status(tmp_path / "runs", "states")
    assert "4 trials: 1 done, 1 running, 1 errored, 1 pending" in report
    assert "stages: 1 computed, 1 reused" in report and "bdsweep resume states" in report


def test_a_trial_with_a_row_reports_it_and_computes_nothing(tmp_path, monkeypatch):
    import ray.tune

    trials, _ = recorded_trials(tmp_path)
    trial = trials[0]
    metrics = {"clean_acc_before": 0.9, "asr_before": 0.8, "clean_acc_after": 0.7, "asr_after": 0.1, "n_stages_computed": 5}
    write_row(tmp_path / "runs", "states", row_of(trial, **metrics))
    reported = []
    monkeypatch.setattr(ray.tune, "report", reported.append)
    run_trial_in_tune(
        {"trial_id": trial.trial_id}, trials={trial.trial_id: trial.model_dump(mode="json")},
        storage=str(tmp_path / "runs"), sweep="states", resources={"cpu": 1},
    )
    assert reported == [{**metrics, "had_row": True}]
    assert not (tmp_path / "runs" / "cache").exists()
