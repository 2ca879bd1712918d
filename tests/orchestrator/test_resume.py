"""Crash and resume: the driver is SIGKILLed at several points of a real sweep, then `bdsweep resume` finishes it.

Two sweeps, three kill points: on a local directory, the run killed before any trial ends, then its
resume killed after the last trial ends; on a bucket of a real S3 server (moto) on 127.0.0.1, the
run killed midway: a sweep on S3 survives its driver as one on disk does, and ``status`` and
``query`` read it.

What "before the crash" holds is read once every process of the killed sweep has ended. Its Ray
workers outlive their driver: a worker notices that its raylet died only at its next check (once a
second; ``RAY_raylet_death_check_interval_milliseconds``), and until then the trial in flight goes
on, publishing artifacts and writing its row. Read earlier, such a row is one the resumed sweep
seems to have written, and the stages its trial computed look computed twice (the `[midway]`
failure of issue 17). In the midway kill the workers check every 10 s instead, so that trials in flight
often finish after the kill.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from orchestrator.pipeline import StoredContents, stage_keys
from orchestrator.results import finished_trial_ids, read_row
from orchestrator.search_space import load_search_space
from orchestrator.storage import open_storage
from orchestrator.store import artifact_store
from tests.ray_processes import ray_processes, session_processes, stop_session, wait_for_workers_to_end

pytestmark = [pytest.mark.slow, pytest.mark.ray]

REPOSITORY = Path(__file__).resolve().parents[2]

SPACE = """
name: crash
dataset: {name: synthetic_signs, per_class: 12, test_per_class: 2}
model: gtsrb_cnn
train: {epochs: 1}
attack: {source: 8, target: 14, trigger: [yellow_square, big_yellow_square], poison_pct: 50}
defenses: [none, {ac: {retrain: none}}, {ss: {retrain: none}}]
resources: {cpu: 1}
"""


def bdsweep(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The CLI in its own interpreter, as a user runs it (a driver that can be killed), in a session of
    its own: the Ray it starts, workers included, is that session's (see :func:`kill_driver`).
    ``env`` adds to the environment."""
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args], cwd=REPOSITORY, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def kill_driver(driver: subprocess.Popen, linger: float = 60) -> None:
    """SIGKILL ``driver``, check that its raylet and GCS server follow it, and return once nothing of
    its sweep runs any more.

    Its Ray workers go on for a while (see the module's docstring): they get ``linger`` s to end by
    themselves, finishing the trial in flight or not; what is left of the session then (Ray's agents
    wait a minute for the GCS) is stopped. No process of the killed sweep writes once this returns.
    """
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 60
    while session_processes(driver.pid) & ray_processes():
        assert time.monotonic() < deadline, "the raylet or GCS server outlived its killed driver"
        time.sleep(0.2)
    assert not wait_for_workers_to_end(driver.pid, linger), "Ray workers outlived their raylet"
    stop_session(driver.pid)
    assert not session_processes(driver.pid)


def finish(driver: subprocess.Popen, timeout: float) -> str:
    """Wait for ``driver`` to exit; returns its output. Whatever it left running in its session is stopped."""
    try:
        output, _ = driver.communicate(timeout=timeout)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        # Its Ray workers end when their raylet does; Ray's agents wait a minute for the GCS: stopped.
        wait_for_workers_to_end(driver.pid, 30)
        stop_session(driver.pid)
    return output


def rows(storage: str) -> set[str]:
    """Ids of the trials that have a row."""
    return finished_trial_ids(storage, "crash", warn=False)


def settled_rows(storage: str, quiet_seconds: float = 1.0, at_most: int = 20) -> set[str]:
    """``rows`` once two listings ``quiet_seconds`` apart agree.

    A worker that ended after its driver was killed may have sent a row's PUT whole without waiting
    for the answer; the S3 server (moto, a thread of this test process) stores it a moment later.
    Reading the rows at once could miss it, and the resumed sweep would then find one trial fewer to
    run than counted.
    """
    found = rows(storage)
    for _ in range(at_most):
        time.sleep(quiet_seconds)
        again = rows(storage)
        if again == found:
            return found
        found = again
    raise AssertionError(f"the rows kept changing for {at_most * quiet_seconds:.0f} s")


def manifests(storage: str) -> dict[str, float]:
    """Every stored artifact's key with the time its manifest says it was created (not the temporary
    directories of ones being written)."""
    root = open_storage(storage)
    return {key: json.loads(root.read_text("cache", stage, key, "manifest.json"))["created"]
            for stage, key in artifact_store(root).stored_keys()}


def wait_for(condition, driver: subprocess.Popen, timeout: float = 200) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert driver.poll() is None, f"the driver ended before the kill point:\n{driver.stdout.read()}"
        assert time.monotonic() < deadline, "the kill point never came"
        time.sleep(0.05)


KILL_POINTS = {
    # A stage has finished but no trial has: the trials in flight die half-way.
    "before_any_trial_ends": lambda storage: manifests(storage) and not rows(storage),
    "midway": lambda storage: len(rows(storage)) >= 2,
    "after_the_last_trial_ends": lambda storage: len(rows(storage)) == 6,
}


def killed_at(kill_point: str, storage: str, *command: str, env: dict[str, str] | None = None):
    """Run ``bdsweep *command``, SIGKILL it at ``kill_point``; the rows and artifacts it left."""
    driver = bdsweep(*command, env=env)
    try:
        wait_for(lambda: KILL_POINTS[kill_point](storage), driver)
    finally:
        kill_driver(driver)
    return settled_rows(storage), manifests(storage)


def check_resumed(storage: str, trials, rows_before: set[str], artifacts_before: dict[str, float]) -> None:
    """Exactly one row per trial, the rows and artifacts written before the crash left alone, and
    every stage a resumed trial computed one that had not finished before."""
    assert rows(storage) == {t.trial_id for t in trials}
    artifacts_after = manifests(storage)
    assert {key: artifacts_after[key] for key in artifacts_before} == artifacts_before
    recomputed = []
    # Stages after the dataset are keyed by its fingerprint: the stored artifacts tell the keys.
    stored = StoredContents(artifact_store(open_storage(storage)))
    for trial in trials:
        if trial.trial_id in rows_before:
            continue
        row = read_row(storage, "crash", trial.dataset.name, trial.train.model, trial.trial_id)
        for label, (_, key) in stage_keys(trial, stored).items():
            if row[f"{label}_computed"] and key in artifacts_before:
                recomputed.append(label)
    assert recomputed == []


def resume(storage: str, trials, rows_before: set[str]) -> str:
    """``bdsweep resume crash`` to the end; its output."""
    resumed = bdsweep("resume", "crash", "--storage", storage)
    output = finish(resumed, 240)
    assert resumed.returncode == 0, output
    assert "Failed to fetch metrics" not in output  # Tune's warning about the result files it does not write
    if len(rows_before) < len(trials):  # else there is nothing to run and no Ray to start
        where = "s3://" if storage.startswith("s3://") else storage
        assert f"restoring Tune's experiment {where}" in output  # Tune had saved its state before the kill
    return output


def refused(space: Path, storage: str) -> None:
    """``run`` of a sweep that has started is refused, pointing to ``resume``."""
    again = bdsweep("run", str(space), "--storage", storage)
    assert "bdsweep resume crash" in finish(again, 120) and again.returncode == 2


def crash_space(tmp_path: Path):
    space = tmp_path / "space.yaml"
    space.write_text(textwrap.dedent(SPACE))
    return space, load_search_space(space)[1]


def test_a_sweep_killed_before_any_trial_ends_then_its_resume_killed_after_the_last_resumes_once_each(tmp_path):
    """Two kill points in one sweep on a local root: the run, killed once a stage but no trial has
    finished; its resume, killed once every trial has its row (the driver still up); a last resume
    with nothing left to run."""
    space, trials = crash_space(tmp_path)
    storage = str(tmp_path / "runs")
    rows_before, artifacts_before = killed_at("before_any_trial_ends", storage, "run", str(space),
                                              "--storage", storage, "--max-concurrent", "2")
    assert len(rows_before) < 6
    refused(space, storage)
    rows_resumed, artifacts_resumed = killed_at("after_the_last_trial_ends", storage, "resume", "crash",
                                                "--storage", storage)
    check_resumed(storage, trials, rows_before, artifacts_before)
    resume(storage, trials, rows_resumed)
    check_resumed(storage, trials, rows_resumed, artifacts_resumed)
    assert manifests(storage) == artifacts_resumed  # nothing was left to compute


def test_a_sweep_on_s3_killed_midway_resumes_and_status_and_query_read_it(tmp_path, s3_root):
    """Killed once two trials have rows, on S3; its workers check for a dead raylet every 10 s (see
    the module's docstring), so trials in flight often finish after the kill."""
    space, trials = crash_space(tmp_path)
    storage = s3_root
    linger = {"RAY_raylet_death_check_interval_milliseconds": "10000"}
    rows_before, artifacts_before = killed_at("midway", storage, "run", str(space), "--storage", storage,
                                              "--max-concurrent", "2", env=linger)
    assert len(rows_before) < 6
    refused(space, storage)
    resume(storage, trials, rows_before)
    check_resumed(storage, trials, rows_before, artifacts_before)
    status = bdsweep("status", "crash", "--storage", storage)
    assert "6 trials: 6 done, 0 running, 0 errored, 0 pending" in finish(status, 120)
    answer = bdsweep("query", "SELECT count(*) AS n, count(DISTINCT trial_id) AS ids FROM results",
                     "--storage", storage)
    words = finish(answer, 120).split()
    assert answer.returncode == 0 and words[-2:] == ["6", "6"], words
