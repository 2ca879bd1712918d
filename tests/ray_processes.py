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
    """True once none of ``pids`` runs; after ``timeout`` s kills the rest (leaving nothing behind) and returns False."""
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
