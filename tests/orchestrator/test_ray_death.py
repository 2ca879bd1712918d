"""Ray dies under a running `bdsweep run`: the driver exits 1 with one line that says how to continue."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from orchestrator.ray_watch import GCS_PATIENCE_VARIABLE, RayWatch, answers, gcs_patience_s, ray_lost_line
from tests.ray_processes import ray_processes, session_processes, stop_session

REPOSITORY = Path(__file__).resolve().parents[2]

# Trials long enough to be running when Ray is killed (the kill comes a second after the first starts).
SPACE = """
name: dying
dataset: {name: synthetic_signs, per_class: 12, test_per_class: 2}
model: gtsrb_cnn
train: {epochs: 5}
attack: {source: 8, target: 14, trigger: [yellow_square, big_yellow_square], poison_pct: 50}
defenses: [none]
resources: {cpu: 1}
"""
ONE_LINE = re.compile(
    r"bdsweep: error: Ray stopped under the sweep \((the GCS|this node's raylet) at [\w.-]+:\d+ stopped answering\); "
    r"continue it with: bdsweep resume dying"
)


class Driver:
    """``bdsweep run`` in its own interpreter and session (so every process it starts can be found
    and stopped), its stdout and stderr collected line by line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", *args], cwd=REPOSITORY, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.readers = [threading.Thread(target=lambda s=s, lines=lines: lines.extend(s), daemon=True)
                        for s, lines in ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr))]
        for reader in self.readers:
            reader.start()

    def wait_for_line(self, text: str, timeout: float = 150) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.stdout):
            assert self.process.poll() is None, f"the driver ended first:\n{self.output()}"
            assert time.monotonic() < deadline, f"no line with {text!r} in {timeout} s:\n{self.output()}"
            time.sleep(0.1)

    def ray_process(self, name: str) -> int:
        """The pid of the driver's own ``raylet`` or ``gcs_server``."""
        (pid,) = [pid for pid in session_processes(self.process.pid) & ray_processes()
                  if os.path.basename(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()) == name]
        return pid

    def finish(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        for reader in self.readers:
            reader.join(timeout=10)
        return code

    def output(self) -> str:
        return "".join(self.stdout) + "\n--- stderr ---\n" + "".join(self.stderr)


def test_a_port_answers_while_something_listens_there():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert answers("127.0.0.1", port)
    assert not answers("127.0.0.1", port)


def test_the_watch_reports_the_endpoint_that_stays_silent_past_its_patience(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    lost = []
    with socket.create_server(("127.0.0.1", 0)) as gcs, socket.create_server(("127.0.0.1", 0)) as raylet:
        endpoints = [("the GCS", "127.0.0.1", gcs.getsockname()[1], 30.0),
                     ("this node's raylet", "127.0.0.1", raylet.getsockname()[1], 0.5)]
        raylet.close()
        RayWatch("sw", interval=0.1, on_lost=lost.append).watch(endpoints)  # returns once it reported
    assert lost == [ray_lost_line("sw", f"this node's raylet at 127.0.0.1:{endpoints[1][2]} stopped answering")]
    assert lost[0] == (f"bdsweep: error: Ray stopped under the sweep (this node's raylet at 127.0.0.1:{endpoints[1][2]} "
                       "stopped answering); continue it with: bdsweep resume sw")


def test_the_watch_stops_quietly_when_the_driver_lets_go_of_ray(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # ray.shutdown() came first
    lost = []
    RayWatch("sw", interval=0.05, on_lost=lost.append).watch([("the GCS", "127.0.0.1", 1, 0.0)])
    assert lost == []


def test_the_gcs_patience_comes_from_the_environment_and_a_bad_one_stops_run_before_anything(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from orchestrator.cli import app

    assert gcs_patience_s() == 20.0
    monkeypatch.setenv(GCS_PATIENCE_VARIABLE, "2.5")
    assert gcs_patience_s() == 2.5
    for bad in ("0", "-1", "soon", "inf", "nan"):
        monkeypatch.setenv(GCS_PATIENCE_VARIABLE, bad)
        with pytest.raises(ValueError, match=GCS_PATIENCE_VARIABLE):
            gcs_patience_s()
    space = tmp_path / "space.yaml"
    space.write_text(textwrap.dedent(SPACE))
    done = CliRunner().invoke(app, ["run", str(space), "--storage", str(tmp_path / "runs")])
    assert done.exit_code == 2 and f"{GCS_PATIENCE_VARIABLE}='nan'" in done.output
    assert not (tmp_path / "runs").exists()  # nothing recorded, nothing run


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("killed", ["raylet", "gcs_server"])
def test_driver_exits_with_one_line_when_ray_dies_under_it(tmp_path, killed):
    space = tmp_path / "space.yaml"
    space.write_text(textwrap.dedent(SPACE))
    # The GCS gets 5 s instead of its default 20 (BDSWEEP_GCS_PATIENCE_S): a test need not wait
    # out the patience that a GCS restarting under fault tolerance deserves.
    driver = Driver("run", str(space), "--storage", str(tmp_path / "runs"), env={GCS_PATIENCE_VARIABLE: "5"})
    try:
        driver.wait_for_line("started")
        time.sleep(1)
        os.kill(driver.ray_process(killed), signal.SIGKILL)
        # The watch ends the driver 3 s (raylet) or 5 s (GCS, here) after Ray stops answering; Ray
        # itself would loop for good (raylet) or end it after 60 s (GCS).
        code = driver.finish(timeout=120)
        output = driver.output()
        assert code == 1, output
        stderr = [line.rstrip("\n") for line in driver.stderr if line.strip()]
        assert ONE_LINE.fullmatch(stderr[-1]), output
        assert sum("bdsweep: error" in line for line in stderr) == 1, output
        assert "Traceback" not in output
        # Ray's core processes went with their driver (what Ray's own agents leave is stopped below).
        deadline = time.monotonic() + 60
        while session_processes(driver.process.pid) & ray_processes():
            assert time.monotonic() < deadline, f"raylet or GCS outlived the driver:\n{output}"
            time.sleep(0.5)
    finally:
        if driver.process.poll() is None:
            driver.process.kill()
            driver.process.wait()
        stop_session(driver.process.pid)
    assert not session_processes(driver.process.pid)
