"""Find Ray's long-lived processes on this machine, so tests can check that they were stopped."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

NAMES = ("raylet", "gcs_server")


def ray_processes() -> set[int]:
    """Pids of the raylets and GCS servers running now."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if os.path.basename(command) in NAMES:
                pids.add(int(entry.name))
    return pids


def children(parent: int) -> set[int]:
    """Pids of the live processes whose parent is ``parent`` (``ray.init`` starts its GCS server and raylet so)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent and fields[0] != "Z":
                pids.add(int(entry.name))
    return pids


def session_processes(session: int) -> set[int]:
    """Pids of the live processes in the session ``session`` (the pid of a command started with ``start_new_session``)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # Field 6 of /proc/PID/stat is the session id; the command name before it may hold spaces.
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # A zombie has ended; only its parent (or an init this container may lack) can reap it.
            if int(fields[3]) == session and fields[0] != "Z":
                pids.add(int(entry.name))
    return pids


def stop_session(session: int, grace: float = 10) -> None:
    """Stop every process of the session ``session`` and no other (``ray stop`` stops every Ray on the machine).

    A ``ray start`` run with ``start_new_session`` puts its whole cluster there, the nodes its
    autoscaler adds included. SIGTERM first, as ``ray stop`` does, then SIGKILL for what is still
    running ``grace`` s later (the GCS server may wait for raylets that are gone).
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in session_processes(session):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while session_processes(session) and time.monotonic() < deadline:
            time.sleep(0.2)


def wait_until_gone(pids: set[int], timeout: float = 60) -> bool:
    """True once none of ``pids`` runs; after ``timeout`` s kills the rest (leaving nothing behind) and returns False.

    ``pids`` must be processes the test started (its own children, or its driver's session): other
    Ray instances on the machine are not the test's to stop.
    """
    alive = lambda: pids & ray_processes()  # noqa: E731
    deadline = time.monotonic() + timeout
    while alive():
        if time.monotonic() > deadline:
            for pid in alive():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return False
        time.sleep(0.2)
    return True


def ray_workers(pids: set[int]) -> set[int]:
    """Those of ``pids`` that are Ray worker processes: they run tasks and actors (a Tune trial), so
    they write to the storage root. Ray titles them ``ray::IDLE`` or ``ray::<actor or task>``;
    Ray's own agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) are not workers."""
    workers = set()
    for pid in pids:
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if title.startswith("ray::") and not title.endswith("Agent"):
            workers.add(pid)
    return workers


def wait_for_workers_to_end(session: int, timeout: float) -> set[int]:
    """Wait until no Ray worker of the session ``session`` runs, at most ``timeout`` s; returns those still running then."""
    deadline = time.monotonic() + timeout
    while (running := ray_workers(session_processes(session))) and time.monotonic() < deadline:
        time.sleep(0.1)
    return running
