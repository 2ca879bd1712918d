"""Notice when Ray dies under the sweep's driver: end it with one line, not a hang or a traceback.

Measured with Ray 2.60 on a local Ray with trials running:
- raylet SIGKILLed: Tune loops for good ("Cluster resources cannot be detected", every 12 s).
  Raising out of Tune then unwinds into ``ray.shutdown()``, which waited ~10 s on the dead raylet
  and, in one run of four, was ended by Ray's core worker ("The connection to the plasma store
  is failed. Terminate the process.", status 1) before the driver could say anything.
- GCS server SIGKILLed: the driver's main thread hangs in a call to the GCS until Ray's core
  worker ends the process 60 s later ("Failed to connect to GCS within 60 seconds ... The
  program will terminate.").
Nothing the driver holds needs saving (rows and artifacts are written by the trials, atomically),
so the watch ends the process itself, from its own thread, as soon as Ray is known to be gone;
``bdsweep resume`` continues the sweep from the storage root.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

from ray import tune

# The driver's raylet cannot come back (its node is gone); the GCS can (GCS fault tolerance
# restarts it, and Ray's clients wait 60 s for that), so it gets longer, yet less than those 60 s.
RAYLET_PATIENCE_S = 3.0
GCS_PATIENCE_S = 20.0
GCS_PATIENCE_VARIABLE = "BDSWEEP_GCS_PATIENCE_S"


def gcs_patience_s() -> float:
    """How long the driver waits for a silent GCS (s): ``BDSWEEP_GCS_PATIENCE_S``, else
    :data:`GCS_PATIENCE_S`. A cluster whose GCS restarts slowly may need more; less ends the driver
    sooner. ValueError naming the variable unless it is a positive number."""
    text = os.environ.get(GCS_PATIENCE_VARIABLE)
    if text is None:
        return GCS_PATIENCE_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{GCS_PATIENCE_VARIABLE}={text!r}: need a positive number of seconds")
    return seconds


def ray_lost_line(sweep: str, reason: str) -> str:
    """The one line the driver ends with: what happened and how to continue."""
    return f"bdsweep: error: Ray stopped under the sweep ({reason}); continue it with: bdsweep resume {sweep}"


def ray_endpoints() -> list[tuple[str, str, int, float]]:
    """``(what, host, port, patience_s)`` of the GCS and of this driver's raylet (its node manager)."""
    import ray

    context = ray.get_runtime_context()
    gcs_host, gcs_port = context.gcs_address.rsplit(":", 1)
    node = next(n for n in ray.nodes() if n["NodeID"] == context.get_node_id())
    return [
        ("the GCS", gcs_host, int(gcs_port), gcs_patience_s()),
        ("this node's raylet", node["NodeManagerAddress"], int(node["NodeManagerPort"]), RAYLET_PATIENCE_S),
    ]


def answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to ``host:port`` is accepted within ``timeout`` s.

    The kernel accepts for a listening process however busy it is; a dead one's port refuses at once.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class RayWatch(tune.Callback):
    """Tune callback: while the experiment runs, a thread knocks on the GCS and on this driver's
    raylet every ``interval`` s; once one of them has not answered for its patience, it calls
    ``on_lost(line)`` (default :func:`exit_with`: the line on stderr, the process ends with status 1).

    It stops at the experiment's end and whenever the driver disconnects from Ray itself
    (``ray.shutdown``), so a Ray stopped on purpose is never taken for a dead one.
    """

    def __init__(self, sweep: str, interval: float = 1.0, on_lost=None):
        self.sweep, self.interval, self.on_lost = sweep, interval, on_lost
        self._stop = threading.Event()

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks with the experiment; an event belongs to one process.
        return {"sweep": self.sweep, "interval": self.interval, "on_lost": self.on_lost}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def setup(self, **info) -> None:
        self._stop = threading.Event()
        threading.Thread(target=self.watch, args=(ray_endpoints(),), daemon=True, name="bdsweep-ray-watch").start()

    def on_experiment_end(self, trials, **info) -> None:
        self._stop.set()

    def watch(self, endpoints: list[tuple[str, str, int, float]]) -> None:
        """Knock until told to stop, Ray is let go of, or an endpoint stays silent past its patience."""
        import ray

        silent_since: dict[str, float] = {}
        while not self._stop.wait(self.interval):
            if not ray.is_initialized():
                return
            now = time.monotonic()
            for what, host, port, patience in endpoints:
                if answers(host, port):
                    silent_since.pop(what, None)
                elif now - silent_since.setdefault(what, now) >= patience:
                    (self.on_lost or exit_with)(ray_lost_line(self.sweep, f"{what} at {host}:{port} stopped answering"))
                    return


def exit_with(line: str) -> None:
    """Write ``line`` to stderr and end the process with status 1 at once, from any thread.

    ``sys.exit`` would wait for a main thread stuck in a call to the dead Ray, and Ray's exit
    handlers would call it again. Writes to the file descriptors, past any Python-level
    redirection (a live progress bar holds ``sys.stdout``), and shows the cursor a bar hid.
    """
    for stream in (sys.stdout, sys.stderr):  # what the driver printed before, if its pipe buffered it
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if os.isatty(1):
        os.write(1, b"\x1b[?25h\n")
    os.write(2, (line + "\n").encode())
    os._exit(1)
