from __future__ import annotations

import logging
from datetime import datetime

import pytest

from mailtriage.draft import Draft
from mailtriage.mailbox.memory import MemoryMailbox
from mailtriage.models import Classification, ParsedEmail, RouteDecision
from mailtriage.pipeline import Triage, one_by_one
from mailtriage.scheduler import NO_SKIPPED_RUNS, Daemon, Duties, backoff
from mailtriage.settings import ScheduleSettings
from mailtriage.store import Store


@pytest.mark.parametrize("failures,seconds", [(1, 5), (2, 10), (3, 20), (4, 40), (6, 160), (7, 300), (30, 300)])
def test_retries_back_off_exponentially_up_to_a_cap(failures: int, seconds: float) -> None:
    assert backoff(failures, ScheduleSettings(backoff_initial=5, backoff_max=300)) == seconds


def test_an_unexpected_error_in_one_mailboxs_cycle_is_logged_and_the_other_mailboxes_go_on(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    def classify(parsed: ParsedEmail) -> Classification:
        return Classification("repair", "repair", 0.9, "en", "test")

    def route(parsed: ParsedEmail, classification: Classification) -> RouteDecision:
        return RouteDecision("repair", "model", "test", template="repair")

    def draft(parsed: ParsedEmail, template: str, language: str, now: datetime, due: datetime | None) -> Draft:
        if parsed.subject == "Broken":
            raise RuntimeError("a bug in a stage")
        return Draft(b"Subject: Re: fine\r\n\r\nok\r\n", "repair/en", "0" * 64, "tests", "2026-11-23")

    mailboxes = [MemoryMailbox("first"), MemoryMailbox("second")]
    for mailbox, subject in zip(mailboxes, ("Broken", "Fine"), strict=True):
        mailbox.append("INBOX", f"From: a@example.org\r\nSubject: {subject}\r\n\r\nMy kettle.\r\n".encode())
    stages = Triage(classify=one_by_one(classify), route=route, draft=draft)
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
