"""Crash and resume: the driver is SIGKILLed at several points of a real sweep, then `bdsweep resume` finishes it.

What "before the crash" holds is read once every process of the killed sweep has ended. Its Ray
workers outlive their driver: a worker notices that its raylet died only at its next check (once a
second; ``RAY_raylet_death_check_interval_milliseconds``), and until then the trial in flight goes
on, publishing artifacts and writing its row. Read earlier, such a row is one the resumed sweep
seems to have written, and the stages its trial computed look computed twice (the `[midway]`
failure of issue 17). In ``[midway]`` the workers check every 10 s instead, so that trials in flight
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
from orchestrator.store import ArtifactStore
from orchestrator.search_space import load_search_space
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


def rows(storage: Path) -> set[Path]:
    return set((storage / "crash" / "results").glob("**/*.parquet"))


def manifests(storage: Path) -> dict[Path, float]:
    """Every stored artifact with the time it was created (not the temporary directories of ones being written)."""
    return {
        path.parent: json.loads(path.read_text())["created"]
        for path in (storage / "cache").glob("*/*/manifest.json") if not path.parent.name.startswith(".")
    }


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


@pytest.mark.parametrize("kill_point", list(KILL_POINTS))
def test_resume_after_the_driver_is_killed_leaves_one_row_per_trial_and_recomputes_nothing(tmp_path, kill_point):
    space, storage = tmp_path / "space.yaml", tmp_path / "runs"
    space.write_text(textwrap.dedent(SPACE))
    _, trials = load_search_space(space)

    # Workers notice a dead raylet at a check every second; every 10 s in [midway] (see the module's docstring).
    linger = {"RAY_raylet_death_check_interval_milliseconds": "10000"} if kill_point == "midway" else {}
    driver = bdsweep("run", str(space), "--storage", str(storage), "--max-concurrent", "2", env=linger)
    try:
        wait_for(lambda: KILL_POINTS[kill_point](storage), driver)
    finally:
        kill_driver(driver)
    rows_before, artifacts_before = rows(storage), manifests(storage)
    assert len(rows_before) < 6 or kill_point == "after_the_last_trial_ends"

    refused = bdsweep("run", str(space), "--storage", str(storage))
    assert "bdsweep resume crash" in finish(refused, 120) and refused.returncode == 2
    resumed = bdsweep("resume", "crash", "--storage", str(storage))
    output = finish(resumed, 240)
    assert resumed.returncode == 0, output
    if len(rows_before) < len(trials):  # else there is nothing to run and no Ray to start
        assert "restoring Tune's experiment" in output  # Tune had saved its state before the kill

    # Exactly one row per trial, and the rows written before the crash were left alone.
    import pyarrow.parquet as pq

    assert {path.stem for path in rows(storage)} == {t.trial_id for t in trials}
    assert len(rows(storage)) == len(trials)
    # No artifact that existed before the crash was computed again...
    artifacts_after = manifests(storage)
    assert {path: artifacts_after[path] for path in artifacts_before} == artifacts_before
    # ...and every stage that the resumed trials computed was one that had not finished before.
    keys_before = {path.name for path in artifacts_before}
    by_id = {t.trial_id: t for t in trials}
    recomputed = []
    # Stages after the dataset are keyed by its fingerprint: the stored artifacts tell the keys.
    stored = StoredContents(ArtifactStore(storage / "cache"))
    for path in rows(storage) - rows_before:
        row = pq.read_table(path).to_pylist()[0]
        for label, (_, key) in stage_keys(by_id[row["trial_id"]], stored).items():
            if row[f"{label}_computed"] and key in keys_before:
                recomputed.append(label)
    assert recomputed == []
