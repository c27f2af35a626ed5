"""Sharing the mailboxes between daemons: each mailbox is worked by one daemon at a time, under a lease it renews.

Every ``tick`` (a third of ``lease_seconds``, or the poll interval if shorter) a daemon says it is alive, renews its
leases, and evens out the split: with N daemons alive and M mailboxes, the daemon of rank r (oldest first) owns
M // N mailboxes, one more if r < M % N. One over its share gives the surplus back (not a mailbox whose cycle is
running); one under it takes free leases. A daemon that dies stops renewing: its leases expire after
``lease_seconds``, and the others tick again at that moment (``expiring``) and take them over. One that died on
this machine (its process is gone) is known dead at once.

Fencing: a daemon acts on a mailbox only while its lease has more than a third of ``lease_seconds`` left by its own
monotonic clock, counted from before the renewal that extended it: an IMAP change is never begun that close to the
expiry another daemon would see. And each batch it records confirms the lease's token in the same transaction, so
a daemon paused past its lease (a stopped process, a swapped-out machine) cannot record into the mailbox either.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from mailtriage import __version__
from mailtriage.errors import LeaseLost
from mailtriage.models import Clock
from mailtriage.store import DaemonRecord, Lease, Store

log = logging.getLogger(__name__)

FORGET_AFTER = 10
"""A daemon gone for this many lease periods is removed from the list ``status`` shows."""


def default_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def share(mailboxes: int, daemons: int, rank: int) -> int:
    """How many of ``mailboxes`` the daemon of ``rank`` (0: the oldest) owns among ``daemons``."""
    if daemons <= 0:
        return mailboxes
    return mailboxes // daemons + (1 if rank < mailboxes % daemons else 0)


@dataclass(frozen=True)
class Plan:
    """What a daemon does at a tick: the mailboxes it tries to take, and how many of its own it gives back."""

    take: tuple[str, ...] = ()
    surplus: int = 0


def plan(
    mailboxes: Sequence[str], alive: Sequence[str], me: str, held: Collection[str], free: Collection[str]
) -> Plan:  # fmt: skip
    """Even out the split: ``alive`` the daemons alive, oldest first; ``held`` the mailboxes ``me`` holds; ``free``
    those nobody holds (or whose holder is dead or let its lease expire)."""
    ranked = list(alive) if me in alive else [*alive, me]
    rank, target = ranked.index(me), share(len(mailboxes), len(ranked), ranked.index(me))
    if len(held) > target:
        return Plan(surplus=len(held) - target)
    candidates = [m for m in mailboxes if m in free and m not in held]
    if not candidates:
        return Plan()
    start = rank * len(mailboxes) // len(ranked) % len(candidates)  # daemons starting together try different ones
    rotated = candidates[start:] + candidates[:start]
    return Plan(take=tuple(rotated[: target - len(held)]))


@dataclass
class _Held:
    lease: Lease
    valid_until: float
    """By this process's monotonic clock: the lease ends no earlier than this for any other daemon."""
    period: threading.Event = field(default_factory=threading.Event)
    """Set when this ownership ends (given back, lost, or the daemon stopping): what the listener waits on."""
    leaving: bool = False
    """Being given back: no new cycle starts, the one running finishes under the lease, which is then released."""


class Membership:
    """This daemon among those sharing the store: the leases it holds, renewed and rebalanced at each ``tick``."""

    def __init__(
        self, store: Store, mailboxes: Sequence[str], *, name: str = "", lease_seconds: float = 30.0,
        clock: Clock, monotonic: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.store, self.mailboxes, self.name = store, list(mailboxes), name or default_name()
        self.lease_seconds, self.clock, self.monotonic = lease_seconds, clock, monotonic
        self.guard = lease_seconds / 3
        """No change is begun on a mailbox with less than this left of its lease."""
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.started_at = clock()
        self.taken = 0
        """Leases taken since start, from a daemon that died or let them expire, or free."""
        self.lost = 0
        """Leases lost since start: not renewed in time, or taken by another daemon meanwhile."""
        self.expiring: datetime | None = None
        """When the soonest of the other daemons' leases runs out, as the last tick saw it: a tick at that moment
        takes it over if its holder stopped renewing, rather than up to a tick later."""
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()

    # --- what the daemon asks -------------------------------------------------------------------------------------

    def owns(self, mailbox: str) -> bool:
        """Whether this daemon may start work on ``mailbox`` now."""
        with self._lock:
            held = self._held.get(mailbox)
        return held is not None and not held.leaving and self._valid(held)

    def check(self, mailbox: str) -> None:
        """Before a change on ``mailbox``'s server: raise LeaseLost unless its lease is ours with time to spare."""
        with self._lock:
            held = self._held.get(mailbox)
        if held is None or not self._valid(held):
            raise LeaseLost(mailbox)

    def _valid(self, held: _Held) -> bool:
        return held.valid_until - self.monotonic() > self.guard

    def confirm(self, mailbox: str) -> None:
        """Before a batch of ``mailbox`` is committed: raise LeaseLost unless its lease is still ours, checked in
        the batch's own transaction (see ``Leases.confirm``)."""
        self.check(mailbox)
        with self._lock:
            lease = self._held[mailbox].lease
        if not self.store.leases.confirm(lease, self.clock()):
            self._drop(mailbox, "another daemon holds its lease now")
            raise LeaseLost(mailbox)

    def period(self, mailbox: str) -> threading.Event | None:
        """An event set when this daemon's ownership of ``mailbox`` ends; None when it does not own it."""
        with self._lock:
            held = self._held.get(mailbox)
        return None if held is None else held.period

    def owned(self) -> list[str]:
        """The mailboxes this daemon holds and is not giving back."""
        with self._lock:
            return sorted(name for name, held in self._held.items() if not held.leaving)

    # --- joining, ticking, leaving --------------------------------------------------------------------------------

    @property
    def record(self) -> DaemonRecord:
        now = self.clock()
        until = now + timedelta(seconds=self.lease_seconds)
        return DaemonRecord(self.name, self.host, self.pid, self.started_at, now, until, __version__)

    def join(self) -> None:
        """Register this daemon and offer every configured mailbox for lease."""
        self.store.leases.join(self.record)
        self.store.leases.offer(self.mailboxes)

    def claim_all(self) -> dict[str, str]:
        """Take every free lease whatever the share (``run --once``): the mailboxes others hold, by holder."""
        return self.claim(self.mailboxes)

    def claim(self, mailboxes: Sequence[str]) -> dict[str, str]:
        """Take these mailboxes' leases where free, for one piece of work outside the daemon's ticks (they are not
        renewed): the mailboxes others hold, by holder."""
        self.join()
        started, now, dead = self.monotonic(), self.clock(), self._dead(self.store.leases.daemons())
        others: dict[str, str] = {}
        for mailbox in mailboxes:
            lease = self.store.leases.acquire(mailbox, self.name, now, self.lease_seconds, dead=dead)
            if lease is None:
                others[mailbox] = self._holder(mailbox)
            else:
                self._hold(lease, started)
        return others

    def tick(self, busy: Callable[[str], bool] = lambda _: False) -> list[str]:
        """Renew, then even out the split; the mailboxes newly taken (their cycle should run at once). ``busy``
        tells whether a mailbox's cycle runs now (asked live, never under this object's lock)."""
        started, now = self.monotonic(), self.clock()
        if not self.store.leases.heartbeat(self.name, now, self.lease_seconds):
            log.warning("daemon %s: its registration was gone from the store (taken for dead?): joining again",
                        self.name)  # fmt: skip
            self.join()
        self._renew(started, now)
        self._release_left(busy)
        daemons = self.store.leases.daemons()
        dead = self._dead(daemons)
        alive = [d.name for d in daemons if d.expires_at > now and d.name not in dead]
        self.store.leases.forget([d.name for d in daemons if d.name != self.name and (
            d.name in dead or d.expires_at < now - timedelta(seconds=FORGET_AFTER * self.lease_seconds))])  # fmt: skip
        leases = {lease.mailbox: lease for lease in self.store.leases.all()}
        # A holder no longer registered was found dead and forgotten by another daemon's tick: as dead here.
        registered = {d.name for d in daemons}
        dead += sorted({lease.owner for lease in leases.values() if lease.owner and lease.owner not in registered})
        free = {m for m, lease in leases.items() if lease.free_at(now) or lease.owner in dead}
        self.expiring = min((lease.expires_at for lease in leases.values() if lease.mailbox not in free
                             and lease.owner != self.name and lease.expires_at is not None), default=None)  # fmt: skip
        decided = plan(self.mailboxes, alive, self.name, self.owned(), free)
        log.debug("daemon %s: %d alive (%s), holds %d, %d free: %s", self.name, len(alive), ", ".join(alive),
                  len(self.owned()), len(free), decided)  # fmt: skip
        if decided.surplus:
            self._give_back(decided.surplus, busy, len(alive))
        taken = []
        for mailbox in decided.take:
            before = leases[mailbox].owner if mailbox in leases else None
            lease = self.store.leases.acquire(mailbox, self.name, now, self.lease_seconds, dead=dead)
            if lease is not None:
                self._hold(lease, started)
                taken.append(mailbox)
                self.taken += 1
                came = f"taken over from daemon {before}" if before and before != self.name else "taken"
                log.info("mailbox %s: %s by daemon %s (lease token %d)", mailbox, came, self.name, lease.token)
        return taken

    def leave(self) -> None:
        """Give every lease back at once and unregister (a clean stop: the others take over at their next tick)."""
        with self._lock:
            held, self._held = self._held, {}
        for item in held.values():
            item.period.set()
        self.store.leases.leave(self.name)

    def end_all(self) -> None:
        """Wake everything waiting on an ownership period (the daemon is stopping)."""
        with self._lock:
            for item in self._held.values():
                item.period.set()

    # --- inside ---------------------------------------------------------------------------------------------------

    def _hold(self, lease: Lease, started: float) -> None:
        with self._lock:
            self._held[lease.mailbox] = _Held(lease, started + self.lease_seconds)

    def _renew(self, started: float, now: datetime) -> None:
        with self._lock:
            mine = [item.lease for item in self._held.values()]
        renewed = self.store.leases.renew(self.name, mine, now, self.lease_seconds)
        kept = {lease.mailbox: lease for lease in renewed}
        for lease in mine:
            if lease.mailbox in kept:
                with self._lock:
                    if lease.mailbox in self._held:
                        self._held[lease.mailbox].lease = kept[lease.mailbox]
                        self._held[lease.mailbox].valid_until = started + self.lease_seconds
            else:
                self._drop(lease.mailbox, "its lease expired before it was renewed, and another daemon took it")

    def _give_back(self, surplus: int, busy: Callable[[str], bool], daemons: int) -> None:
        """Give ``surplus`` mailboxes back, those whose cycle is not running first: at once, or once that cycle
        ends (it finishes under the lease; no new one starts)."""
        for mailbox in sorted(self.owned(), key=lambda name: (busy(name), name))[:surplus]:
            with self._lock:
                item = self._held[mailbox]
                item.leaving = True
            item.period.set()
            log.info("mailbox %s: handed over by daemon %s, %d daemons now sharing %d mailboxes", mailbox,
                     self.name, daemons, len(self.mailboxes))  # fmt: skip
        self._release_left(busy)

    def _release_left(self, busy: Callable[[str], bool]) -> None:
        """Release the leases given back whose cycle has ended."""
        with self._lock:
            leaving = [name for name, held in self._held.items() if held.leaving]
        done = [name for name in leaving if not busy(name)]  # asked after ``leaving`` was set: no cycle starts since
        with self._lock:
            items = [self._held.pop(name) for name in done if name in self._held]
        for item in items:
            self.store.leases.release(item.lease)

    def _drop(self, mailbox: str, why: str) -> None:
        with self._lock:
            item = self._held.pop(mailbox, None)
        if item is not None:
            item.period.set()
            self.lost += 1
            log.warning("mailbox %s: daemon %s stopped acting on it: %s", mailbox, self.name, why)

    def _dead(self, daemons: Sequence[DaemonRecord]) -> list[str]:
        """Daemons registered from this machine whose process is gone: their leases need not be waited out."""
        return [d.name for d in daemons
                if d.host == self.host and d.name != self.name and not process_alive(d.pid)]  # fmt: skip

    def _holder(self, mailbox: str) -> str:
        owners = [lease.owner for lease in self.store.leases.all() if lease.mailbox == mailbox and lease.owner]
        return owners[0] if owners else "another daemon"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine runs (a zombie does not: it was killed, its parent has not reaped it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")
