from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from mailtriage.cluster import Membership
from mailtriage.draft import Draft
from mailtriage.mailbox.memory import MemoryMailbox
from mailtriage.models import Classification, ParsedEmail, RouteDecision
from mailtriage.pipeline import Triage, one_by_one
from mailtriage.scheduler import NO_SKIPPED_RUNS, WORKERS, Daemon, Duties, backoff
from mailtriage.settings import ScheduleSettings
from mailtriage.store import DaemonRecord, Store


@pytest.mark.parametrize("failures,seconds", [(1, 5), (2, 10), (3, 20), (4, 40), (6, 160), (7, 300), (30, 300)])
def test_retries_back_off_exponentially_up_to_a_cap(failures: int, seconds: float) -> None:
    assert backoff(failures, ScheduleSettings(backoff_initial=5, backoff_max=300)) == seconds


def as_repair(parsed: ParsedEmail) -> Classification:
    return Classification("repair", "repair", 0.9, "en", "test")


def to_repair(parsed: ParsedEmail, classification: Classification) -> RouteDecision:
    return RouteDecision("repair", "model", "test", template="repair")


def test_an_unexpected_error_in_one_mailboxs_cycle_is_logged_and_the_other_mailboxes_go_on(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    def draft(parsed: ParsedEmail, template: str, language: str, now: datetime, due: datetime | None) -> Draft:
        if parsed.subject == "Broken":
            raise RuntimeError("a bug in a stage")
        return Draft(b"Subject: Re: fine\r\n\r\nok\r\n", "repair/en", "0" * 64, "tests", "2026-11-23")

    mailboxes = [MemoryMailbox("first"), MemoryMailbox("second")]
    for mailbox, subject in zip(mailboxes, ("Broken", "Fine"), strict=True):
        mailbox.append("INBOX", f"From: a@example.org\r\nSubject: {subject}\r\n\r\nMy kettle.\r\n".encode())
    stages = Triage(classify=one_by_one(as_repair), route=to_repair, draft=draft)
    daemon = Daemon(mailboxes, store, ScheduleSettings(), Duties(stages=stages))
    with caplog.at_level(logging.INFO):
        first, second = daemon.run_once()
    assert not first.ok and "a bug in a stage" in str(first.error) and second.ok
    assert any("unexpected RuntimeError in a cycle (a bug in mailtriage" in r.getMessage() for r in caplog.records)
    assert len(mailboxes[1].folder("Drafts")) == 1


class RecordingScheduler:
    """Notes when each job was asked to run next (APScheduler's ``modify_job``)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def modify_job(self, job_id: str, **changes: object) -> None:
        self.asked.append(job_id)


def test_mail_announced_by_idle_during_a_running_cycle_is_looked_for_right_after_it(store: Store) -> None:
    mailbox = MemoryMailbox("support")
    scheduler = RecordingScheduler()
    daemon = Daemon([mailbox], store, ScheduleSettings())
    running = daemon._cycle

    def cycle_during_which_mail_arrives(box: MemoryMailbox) -> object:
        daemon._wake(box, scheduler)  # type: ignore[arg-type]
        return running(box)

    daemon._cycle = cycle_during_which_mail_arrives  # type: ignore[assignment,method-assign]
    daemon._scheduled_cycle(mailbox, scheduler)  # type: ignore[arg-type]
    assert scheduler.asked == ["support"]  # once the cycle ended, not dropped as a skipped run
    daemon._wake(mailbox, scheduler)  # type: ignore[arg-type]
    assert scheduler.asked == ["support", "support"]  # idle: at once


def test_a_run_skipped_because_the_job_still_runs_is_counted_not_logged() -> None:
    record = logging.LogRecord(
        "apscheduler.scheduler", logging.WARNING, __file__, 1,
        'Execution of job "%s" skipped: maximum number of running instances reached (%d)', ("poll", 1), None,
    )  # fmt: skip
    assert not NO_SKIPPED_RUNS.filter(record)
    other = logging.LogRecord("apscheduler.scheduler", logging.WARNING, __file__, 1, "Run time missed", (), None)
    assert NO_SKIPPED_RUNS.filter(other)


def test_a_daemon_takes_over_the_mailboxes_of_one_that_stopped_renewing_when_its_leases_run_out_not_a_tick_later(
    store: Store,
) -> None:
    names = ["first", "second", "third"]
    now = datetime.now(UTC)
    until = now + timedelta(seconds=1.5)  # the other daemon, on another machine, renewed last just now
    store.leases.join(DaemonRecord("elsewhere", "another-host", 1, now, now, until, "0"))
    store.leases.offer(names)
    for name in names:
        assert store.leases.acquire(name, "elsewhere", now, 1.5) is not None
    membership = Membership(store, names, name="here", lease_seconds=30, clock=lambda: datetime.now(UTC))
    daemon = Daemon([MemoryMailbox(name) for name in names], store, ScheduleSettings(poll_interval=60, idle=False),
                    membership=membership)  # fmt: skip
    assert daemon.tick_interval() == 10  # the regular ticks: at the start, then ten seconds later
    runner = threading.Thread(target=daemon.run_forever, kwargs={"install_signals": False})
    runner.start()
    try:
        deadline = time.monotonic() + 8
        while membership.owned() != names and time.monotonic() < deadline:
            time.sleep(0.05)
        taken, owned = datetime.now(UTC), membership.owned()
    finally:
        daemon.stop.set()
        runner.join(timeout=30)
    assert owned == names
    assert until <= taken < until + timedelta(seconds=3)
    assert {lease.owner for lease in store.leases.all()} == {None}  # given back on stopping


def test_a_daemon_whose_every_worker_is_busy_with_a_long_cycle_still_renews_its_leases(store: Store) -> None:
    released = threading.Event()

    def slow_draft(parsed: ParsedEmail, template: str, language: str, now: datetime, due: datetime | None) -> Draft:
        released.wait(30)
        return Draft(b"Subject: Re: slow\r\n\r\nok\r\n", "repair/en", "0" * 64, "tests", "2026-11-23")

    names = [f"box{n:02}" for n in range(WORKERS + 2)]
    mailboxes = [MemoryMailbox(name) for name in names]
    for mailbox in mailboxes:
        mailbox.append("INBOX", b"From: a@example.org\r\nSubject: Slow\r\n\r\nMy kettle.\r\n")
    membership = Membership(store, names, name="here", lease_seconds=3, clock=lambda: datetime.now(UTC))
    stages = Triage(classify=one_by_one(as_repair), route=to_repair, draft=slow_draft)
    daemon = Daemon(mailboxes, store, ScheduleSettings(poll_interval=60, idle=False), Duties(stages=stages),
                    membership=membership)  # fmt: skip
    runner = threading.Thread(target=daemon.run_forever, kwargs={"install_signals": False})
    runner.start()
    try:
        time.sleep(4.5)  # one and a half leases, every worker waiting in a draft
        leases, now = store.leases.all(), datetime.now(UTC)
    finally:
        released.set()
        daemon.stop.set()
        runner.join(timeout=30)
    assert {lease.owner for lease in leases} == {"here"}
    assert all(lease.expires_at is not None and lease.expires_at > now for lease in leases)
    assert membership.lost == 0
