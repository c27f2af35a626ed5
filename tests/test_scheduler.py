from __future__ import annotations

import logging
from datetime import datetime

import pytest

from mailtriage.draft import Draft
from mailtriage.mailbox.memory import MemoryMailbox
from mailtriage.models import Classification, ParsedEmail, RouteDecision
from mailtriage.pipeline import CycleOptions, Triage
from mailtriage.scheduler import Daemon, backoff
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
    stages = Triage(classify=classify, route=route, draft=draft)
    daemon = Daemon(mailboxes, store, CycleOptions(), ScheduleSettings(), stages=stages)
    with caplog.at_level(logging.INFO):
        first, second = daemon.run_once()
    assert not first.ok and "a bug in a stage" in str(first.error) and second.ok
    assert any("unexpected RuntimeError in a cycle (a bug in mailtriage" in r.getMessage() for r in caplog.records)
    assert len(mailboxes[1].folder("Drafts")) == 1
