"""A mutual-exclusion lease on a storage root that has no file locks (an object store).

Lamport's bakery algorithm, with objects for registers. It needs only whole-object writes and
deletes, and listings that show every write finished before the listing began (S3 since 2020,
GCS); a listing need not be a snapshot. A contender

1. writes ``<dir>/a-entering-<id>`` (it is choosing a number),
2. lists the tickets and writes ``<dir>/b-ticket-<n>-<id>`` with ``n`` one above the highest,
3. deletes its entering object,
4. lists the directory and waits until every entering object in that listing has gone (those
   written later choose a number above its own: they see its ticket), then
5. lists again and waits until every ticket ordered before its own (by number, then id) has gone:
   it then holds the lease, until it deletes its ticket.

Waiting on the objects of one listing, not for a listing without any, means new arrivals cannot
starve a waiter.

A contender that died leaves its objects behind. Every contender rewrites its ticket every ``beat``
seconds with a new size (1 to 7 bytes in turn), so a listing shows each beat even where
modification times have whole seconds. A waiter that sees another's object with the same
size and time for three beats (by its own clock: clocks of different nodes are never compared)
deletes it as dead. A live process stalled longer than that can lose its lease; for the artifact
store that costs a second computation of a content-addressed artifact, never a wrong one
(checksums catch mixed uploads).
"""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from orchestrator.storage import StorageRoot, heartbeat

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
    entering, ticket = f"a-entering-{me}", None
    try:
        storage.write_bytes(*directory, entering, data=_beat_content(0))
        numbers = [parsed[1].number for name in _listing(storage, directory)
                   if (parsed := _parse(name)) and parsed[0] == "ticket"]
        mine = _Ticket(max(numbers, default=0) + 1, me)
        ticket = f"b-ticket-{mine.number:012d}-{me}"
        storage.write_bytes(*directory, ticket, data=_beat_content(0))
        storage.delete(*directory, entering)
        def rewrite(count: int) -> None:
            storage.write_bytes(*directory, ticket, data=_beat_content(count))

        with heartbeat(beat, rewrite, f"lease-{me[:8]}"):
            choosing = {name for name in _listing(storage, directory) if _kind(name) == "entering"}
            _wait_until_gone(storage, directory, choosing, beat, poll)
            ahead = {name for name in _listing(storage, directory)
                     if _kind(name) == "ticket" and _parse(name)[1] < mine}
            _wait_until_gone(storage, directory, ahead, beat, poll)
            yield
    finally:
        for name in (entering, ticket):
            if name is not None:
                try:
                    storage.delete(*directory, name)
                except OSError as error:  # the others take it for a dead one's after three beats
                    log.warning("lease %s: could not give back %s (%s)", "/".join(directory), name, error)


def _beat_content(count: int) -> bytes:
    return b"." * (count % 7 + 1)


def _kind(name: str) -> str | None:
    parsed = _parse(name)
    return parsed[0] if parsed else None


def _listing(storage: StorageRoot, directory: tuple[str, ...]) -> dict[str, tuple[float, int]]:
    """``{name: (modification time, size)}`` of the lease's objects."""
    return {info.base_name: (info.mtime.timestamp(), info.size) for info in storage.files(*directory)}


def _wait_until_gone(storage: StorageRoot, directory: tuple[str, ...], names: set[str], beat: float, poll: float) -> None:
    """Return once none of ``names`` is listed; an object that makes no beat for three beats is deleted as dead."""
    seen: dict[str, tuple[tuple[float, int], float]] = {}  # name -> (its stamp, when that stamp was first seen)
    while True:
        listing = _listing(storage, directory)
        names = names & listing.keys()
        if not names:
            return
        now = time.monotonic()
        for name in names:
            if name not in seen or seen[name][0] != listing[name]:
                seen[name] = (listing[name], now)
            elif now - seen[name][1] > STALE_BEATS * beat:
                log.warning("lease %s: %s made no beat for %.0f s; taking it as dead", "/".join(directory), name,
                            now - seen[name][1])
                storage.delete(*directory, name)
        time.sleep(poll)
