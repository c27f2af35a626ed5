"""Leases: the split between daemons, renewal and expiry, fencing, and takeover, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from mailtriage.cluster import Membership, plan, process_alive, share
from mailtriage.errors import LeaseLost
from mailtriage.mailbox.fenced import FencedMailbox
from mailtriage.mailbox.memory import MemoryMailbox
from mailtriage.store import DaemonRecord, Store

MAILBOXES = [f"box{n:02}" for n in range(12)]
LEASE = 30.0


class Clocks:
    """The wall clock the store sees and the monotonic clock a daemon counts its lease on, moved by hand."""

    def __init__(self) -> None:
        self.wall = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


def member(store: Store, name: str, clocks: Clocks) -> Membership:
    joined = Membership(store, MAILBOXES, name=name, lease_seconds=LEASE, clock=clocks.now,
                        monotonic=clocks.monotonic)  # fmt: skip
    joined.join()
    return joined


def settle(members: list[Membership], clocks: Clocks, ticks: int = 3) -> None:
    for _ in range(ticks):
        for one in members:
            one.tick()
        clocks.advance(LEASE / 3)


@pytest.mark.parametrize(
    "mailboxes,daemons,shares", [(12, 3, [4, 4, 4]), (13, 3, [5, 4, 4]), (2, 3, [1, 1, 0]), (30, 1, [30])]
)
def test_the_mailboxes_are_split_within_one_of_even(mailboxes: int, daemons: int, shares: list[int]) -> None:
    assert [share(mailboxes, daemons, rank) for rank in range(daemons)] == shares


def test_a_daemon_over_its_share_gives_the_surplus_back_and_one_under_it_takes_free_ones() -> None:
    over = plan(MAILBOXES, ["a", "b", "c"], "a", held=MAILBOXES[:6], free=[])
    assert over.surplus == 2 and over.take == ()
    under = plan(MAILBOXES, ["a", "b", "c"], "c", held=[], free=MAILBOXES[4:])
    assert len(under.take) == 4 and set(under.take) <= set(MAILBOXES[4:])


def test_three_daemons_end_up_with_four_mailboxes_each_and_none_twice(store: Store) -> None:
    clocks = Clocks()
    members = [member(store, name, clocks) for name in ("a", "b", "c")]
    settle(members, clocks)
    owned = [set(one.owned()) for one in members]
    assert [len(mine) for mine in owned] == [4, 4, 4]
    assert set.union(*owned) == set(MAILBOXES)
    assert {lease.owner for lease in store.leases.all()} == {"a", "b", "c"}


def test_a_daemon_joining_later_gets_its_share_from_the_others(store: Store) -> None:
    clocks = Clocks()
    first = member(store, "a", clocks)
    first.tick()
    assert len(first.owned()) == 12
    members = [first, member(store, "b", clocks)]
    settle(members, clocks)
    assert [len(one.owned()) for one in members] == [6, 6]


def test_a_mailbox_given_back_while_its_cycle_runs_is_released_once_the_cycle_ends(store: Store) -> None:
    clocks = Clocks()
    first = member(store, "a", clocks)
    first.tick()
    second = member(store, "b", clocks)
    second.tick()
    running = set(MAILBOXES)
    first.tick(busy=running.__contains__)  # gives six back, but every cycle runs
    assert len(first.owned()) == 6
    leaving = set(MAILBOXES) - set(first.owned())
    assert not any(first.owns(name) for name in leaving)  # no new cycle starts there
    for name in leaving:
        first.check(name)  # the running cycle finishes under the lease
    assert {lease.owner for lease in store.leases.all()} == {"a"}
    running.clear()
    first.tick(busy=running.__contains__)
    second.tick()
    assert set(second.owned()) == leaving


def test_a_daemon_that_stops_renewing_loses_its_mailboxes_to_the_others_after_the_lease(store: Store) -> None:
    clocks = Clocks()
    members = [member(store, name, clocks) for name in ("a", "b", "c")]
    settle(members, clocks)
    gone, *alive = members
    theirs = set(gone.owned())  # a renewed last a third of the lease ago; from now on it does not
    for step in (LEASE / 3, LEASE / 3 - 1):  # b and c go on renewing
        for one in alive:
            one.tick()
        clocks.advance(step)
    for one in alive:
        one.tick()
    assert not theirs & set(alive[0].owned() + alive[1].owned())  # not before the lease is out
    with pytest.raises(LeaseLost):  # a itself stopped acting well before the others could take over
        gone.check(sorted(theirs)[0])
    clocks.advance(2)
    for one in alive:
        one.tick()
    assert theirs <= set(alive[0].owned() + alive[1].owned())
    assert sorted(len(one.owned()) for one in alive) == [6, 6]


def test_a_tick_tells_when_another_daemons_lease_runs_out_and_a_tick_at_that_moment_takes_it_over(
    store: Store,
) -> None:
    clocks = Clocks()
    first, second = member(store, "a", clocks), member(store, "b", clocks)
    first.tick()
    assert len(first.owned()) == 6 and first.expiring is None  # nobody else holds one yet
    clocks.advance(4)
    second.tick()
    assert second.expiring == clocks.now() - timedelta(seconds=4) + timedelta(seconds=LEASE)
    first.tick()  # its own renewal is not counted; b's leases are
    assert first.expiring == clocks.now() + timedelta(seconds=LEASE)
    clocks.advance(LEASE + 0.1)  # a stopped renewing; b ticks when a's leases run out (as the daemon schedules)
    second.tick()
    assert len(second.owned()) == 12 and second.expiring is None


def test_a_paused_daemon_whose_lease_was_taken_cannot_record_into_that_mailbox(store: Store) -> None:
    """Its own clock stood still (a stopped process), so it still thinks the lease is good: the token in the store
    says otherwise, in the very transaction that would record."""
    clocks = Clocks()
    paused = member(store, "a", clocks)
    paused.tick()
    clocks.wall += timedelta(seconds=LEASE + 1)
    taker = member(store, "b", clocks)
    taker.tick()
    mailbox = taker.owned()[0]
    paused.check(mailbox)  # by its own clock, fine
    with pytest.raises(LeaseLost), store.batch():
        paused.confirm(mailbox)
    assert not paused.owns(mailbox)
    with store.batch():
        taker.confirm(mailbox)


def test_a_fenced_mailbox_changes_nothing_once_the_lease_is_gone(store: Store) -> None:
    clocks = Clocks()
    one = member(store, "a", clocks)
    one.tick()
    inner = MemoryMailbox(MAILBOXES[0])
    fenced = FencedMailbox(inner, one.check)
    fenced.append("Drafts", b"Subject: kept\r\n\r\nx\r\n")
    clocks.advance(LEASE * 2 / 3 + 1)  # less than a third of the lease left: nothing new is begun
    with pytest.raises(LeaseLost):
        fenced.append("Drafts", b"Subject: refused\r\n\r\nx\r\n")
    with pytest.raises(LeaseLost):
        fenced.add_flags("INBOX", [1], ["$x"])
    assert len(inner.folder("Drafts")) == 1
    assert fenced.status("INBOX") is not None  # reading goes on


def test_a_clean_stop_frees_the_leases_at_once(store: Store) -> None:
    clocks = Clocks()
    one, other = member(store, "a", clocks), member(store, "b", clocks)
    one.tick()
    one.leave()
    assert [d.name for d in store.leases.daemons()] == ["b"]
    other.tick()
    assert len(other.owned()) == 12


def test_a_daemon_dead_on_this_machine_is_taken_over_without_waiting_for_its_lease(store: Store) -> None:
    clocks = Clocks()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              check=True)  # fmt: skip
    pid = int(finished.stdout)
    assert not process_alive(pid) and process_alive(os.getpid())
    until = clocks.now() + timedelta(seconds=LEASE)
    store.leases.join(DaemonRecord("dead", socket.gethostname(), pid, clocks.now(), clocks.now(), until, "0"))
    store.leases.offer(MAILBOXES)
    for mailbox in MAILBOXES:
        assert store.leases.acquire(mailbox, "dead", clocks.now(), LEASE) is not None
    first, second = member(store, "b", clocks), member(store, "c", clocks)
    first.tick()  # takes its six, and forgets the dead daemon
    assert "dead" not in [d.name for d in store.leases.daemons()]
    second.tick()  # the holder is no longer registered: taken for dead here too
    assert sorted(len(one.owned()) for one in (first, second)) == [6, 6]
