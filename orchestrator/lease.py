"""A mutual-exclusion lease on a storage root that has no file locks (an object store).

Lamport's bakery algorithm, with objects for registers: it needs only whole-object writes,
deletes and listings that show every write finished before them, which S3 (strongly consistent
since 2020), GCS and local disks give. A contender

1. writes ``<dir>/a-entering-<id>`` (it is choosing a number),
2. lists the tickets and writes ``<dir>/b-ticket-<n>-<id>`` with ``n`` one above the highest,
3. deletes its entering object, then
4. waits until a listing shows no other entering object and no ticket ordered before its own
   (by number, then id): it then holds the lease, until it deletes its ticket.

Entering objects sort before tickets, and each is deleted only after its ticket was written, so
a listing that passes an entering object already deleted also sees the ticket written before.

A contender that died leaves its objects behind. Every contender rewrites its ticket with a new
beat count every ``beat`` seconds; a waiter that sees another's object unchanged for three beats
(by its own clock: clocks of different nodes are never compared) deletes it as dead. A live
process stalled longer than that can lose its lease; for the artifact store that costs a second
computation of a content-addressed artifact, never a wrong one (checksums catch mixed uploads).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from orchestrator.storage import StorageRoot

log = logging.getLogger("bdsweep.lease")

BEAT_SECONDS = 10.0
STALE_BEATS = 3


@dataclass(frozen=True, order=True)
class _Ticket:
    number: int
    owner: str


def _parse(name: str) -> tuple[str, _Ticket | None] | None:
    """``("entering", None)``, ``("ticket", _Ticket)``, or None for a name that is neither."""
    kind, _, rest = name.partition("-")
    if kind == "a" and rest.startswith("entering-"):
        return "entering", None
    if kind == "b" and rest.startswith("ticket-"):
        number, _, owner = rest[len("ticket-"):].partition("-")
        if number.isdigit() and owner:
            return "ticket", _Ticket(int(number), owner)
    return None


@contextmanager
def lease(storage: StorageRoot, *directory: str, beat: float = BEAT_SECONDS, poll: float = 1.0):
    """Hold the lease of ``directory`` (parts under ``storage``) for the body of the ``with``.

    Parameters
    ----------
    beat : seconds between rewrites of this contender's ticket; another's object unchanged for
        three beats is taken as a dead contender's.
    poll : seconds between listings while waiting.
    """
    me = uuid.uuid4().hex
    entering = f"a-entering-{me}"
    storage.write_bytes(*directory, entering, data=b"0")
    numbers = [parsed[1].number for name in _names(storage, directory)
               if (parsed := _parse(name)) and parsed[0] == "ticket"]
    mine = _Ticket(max(numbers, default=0) + 1, me)
    ticket = f"b-ticket-{mine.number:012d}-{me}"
    storage.write_bytes(*directory, ticket, data=b"0")
    storage.delete(*directory, entering)

    stop = threading.Event()

    def keep_alive():
        count = 0
        while not stop.wait(beat):
            count += 1
            storage.write_bytes(*directory, ticket, data=str(count).encode())

    thread = threading.Thread(target=keep_alive, name=f"lease-{me[:8]}", daemon=True)
    thread.start()
    try:
        _wait_for_turn(storage, directory, mine, beat, poll)
        yield
    finally:
        stop.set()
        thread.join()
        storage.delete(*directory, ticket)


def _names(storage: StorageRoot, directory: tuple[str, ...]) -> list[str]:
    return [info.base_name for info in storage.files(*directory)]


def _wait_for_turn(storage: StorageRoot, directory: tuple[str, ...], mine: _Ticket, beat: float, poll: float) -> None:
    seen: dict[str, tuple[bytes, float]] = {}  # another's object -> (content, when it last changed)
    while True:
        ahead = []
        for name in _names(storage, directory):
            parsed = _parse(name)
            if parsed is not None and (parsed[1] is None or parsed[1] < mine):
                ahead.append(name)
        if not ahead:
            return
        now = time.monotonic()
        for name in ahead:
            try:
                content = storage.read_bytes(*directory, name)
            except OSError:
                continue  # gone, or rewritten while read (a beat): not dead either way
            if name not in seen or seen[name][0] != content:
                seen[name] = (content, now)
            elif now - seen[name][1] > STALE_BEATS * beat:
                log.warning("lease %s: %s made no beat for %.0f s; taking it as dead", "/".join(directory), name,
                            now - seen[name][1])
                storage.delete(*directory, name)
        time.sleep(poll)
