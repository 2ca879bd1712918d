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


def wait_until_gone(pids: set[int], timeout: float = 60) -> bool:
    """True once none of ``pids`` runs; after ``timeout`` s kills the rest (leaving nothing behind) and returns False."""
    deadline = time.monotonic() + timeout
    while pids & ray_processes():
        if time.monotonic() > deadline:
            for pid in pids & ray_processes():
                os.kill(pid, signal.SIGKILL)
            return False
        time.sleep(0.2)
    return True
