from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from mailtriage.draft import Draft
from mailtriage.mailbox.memory import MemoryMailbox
from mailtriage.models import Classification, ParsedEmail, RouteDecision
from mailtriage.pipeline import Control, CycleOptions, Triage, one_by_one, run_cycle
from mailtriage.store import Store
from tests.helpers import order_mail

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def clock() -> datetime:
    return NOW


def fill(mailbox: MemoryMailbox, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        mailbox.append("INBOX", order_mail(n))


def test_every_new_message_is_recorded_once_and_a_second_cycle_records_none(store: Store) -> None:
    mailbox = MemoryMailbox()
    fill(mailbox, 30)
    first = run_cycle(mailbox, store, now=clock)
    second = run_cycle(mailbox, store, now=clock)
    assert (first.new, second.new, second.skipped) == (30, 0, 0)
    assert store.messages.count() == 30
    assert {r.status for r in store.messages.all()} == {"unclassified"}


def test_an_idle_cycle_asks_only_about_the_inbox_and_fetches_nothing(store: Store) -> None:
    mailbox = MemoryMailbox()
    fill(mailbox, 10)
    mailbox.append("Support/Returns", order_mail(99))  # a category's folder: read by the sweep, not the poll
    run_cycle(mailbox, store, now=clock)
    mailbox.fetched.clear()
    mailbox.asked.clear()
    run_cycle(mailbox, store, now=clock)
    assert (mailbox.fetched, mailbox.asked) == ([], ["INBOX"])


def test_only_mail_that_arrived_since_the_last_cycle_is_fetched(store: Store) -> None:
    mailbox = MemoryMailbox()
    fill(mailbox, 5)
    run_cycle(mailbox, store, now=clock)
    fill(mailbox, 3, start=5)
    mailbox.fetched.clear()
    report = run_cycle(mailbox, store, now=clock)
    assert report.new == 3 and mailbox.fetched == [6, 7, 8]


def test_mail_read_by_another_client_first_is_still_processed(store: Store) -> None:
    mailbox = MemoryMailbox()
    mailbox.append("INBOX", order_mail(1), flags=["\\Seen"])
    assert run_cycle(mailbox, store, now=clock).new == 1


def test_a_changed_uidvalidity_reprocesses_nothing_and_still_finds_new_mail(store: Store) -> None:
    mailbox = MemoryMailbox()
    fill(mailbox, 20)
    run_cycle(mailbox, store, now=clock)
    mailbox.renumber("INBOX", uidvalidity=99)
    fill(mailbox, 2, start=20)
    report = run_cycle(mailbox, store, now=clock)
    assert (report.new, report.skipped) == (2, 20)
    assert store.messages.count() == 22
    assert {r.uidvalidity for r in store.messages.all()} == {99}
    assert any(e.action == "uidvalidity-changed" for e in store.audit.all())


def test_a_backlog_larger_than_the_cycle_cap_is_finished_by_later_cycles(store: Store) -> None:
    mailbox = MemoryMailbox()
    fill(mailbox, 25)
    options = CycleOptions(batch_size=4, max_per_cycle=10)
    reports = [run_cycle(mailbox, store, now=clock, options=options) for _ in range(3)]
    assert [(r.new, r.backlog) for r in reports] == [(10, 15), (10, 5), (5, 0)]
    assert store.messages.count() == 25


def test_the_same_message_delivered_twice_is_processed_once(store: Store) -> None:
    mailbox = MemoryMailbox()
    mailbox.append("INBOX", order_mail(1))
    mailbox.append("INBOX", order_mail(1))
    report = run_cycle(mailbox, store, now=clock)
    assert (report.new, report.skipped) == (1, 1)
    assert store.messages.count() == 1


def test_two_different_messages_sharing_a_message_id_are_both_processed(store: Store) -> None:
    mailbox = MemoryMailbox()
    mailbox.append("INBOX", order_mail(1))
    mailbox.append("INBOX", order_mail(1, subject="Something else entirely"))
    assert run_cycle(mailbox, store, now=clock).new == 2


def test_an_out_of_office_reply_is_recorded_and_never_triaged(store: Store) -> None:
    mailbox = MemoryMailbox()
    mailbox.append("INBOX", order_mail(1, subject="Out of office", headers="Auto-Submitted: auto-replied\r\n"))
    report = run_cycle(mailbox, store, now=clock)
    [record] = store.messages.all()
    assert (report.new, report.skipped) == (0, 1)
    assert (record.kind, record.status) == ("auto-reply", "skipped")


def test_a_stage_that_fails_on_one_message_leaves_it_recorded_as_failed_and_the_cycle_goes_on(store: Store) -> None:
    def stages(parsed: ParsedEmail) -> Classification:
        if parsed.subject == "Order 1 is late":
            raise ValueError("template missing")
        return Classification("order-delivery", "order-delivery", 0.9, "en", "test")

    mailbox = MemoryMailbox()
    fill(mailbox, 3)
    report = run_cycle(mailbox, store, now=clock, stages=Triage(classify=one_by_one(stages)))
    assert (report.new, report.failed) == (2, 1)
    failed = [r for r in store.messages.all() if r.status == "failed"]
    assert [(r.subject, r.error) for r in failed] == [("Order 1 is late", "ValueError: template missing")]


def test_asking_to_stop_ends_the_cycle_after_the_message_in_hand_and_loses_nothing(store: Store) -> None:
    mailbox = MemoryMailbox()
    fill(mailbox, 10)
    asked = iter([False, False, True])
    report = run_cycle(mailbox, store, now=clock, control=Control(should_stop=lambda: next(asked, True)))
    assert report.new == 3
    assert run_cycle(mailbox, store, now=clock).new == 7
    assert store.messages.count() == 10


def test_messages_removed_by_another_client_before_the_fetch_are_passed_over(store: Store) -> None:
    mailbox = MemoryMailbox()
    fill(mailbox, 3)
    mailbox.expunge("INBOX", 2)
    assert run_cycle(mailbox, store, now=clock).new == 2
    fill(mailbox, 1, start=3)
    assert run_cycle(mailbox, store, now=clock).new == 1


@pytest.mark.parametrize("status_before", [None, "recorded"])
def test_every_recorded_message_has_an_audit_event(store: Store, status_before: str | None) -> None:
    mailbox = MemoryMailbox()
    fill(mailbox, 4)
    if status_before:
        run_cycle(mailbox, store, now=clock)
        fill(mailbox, 2, start=4)
    run_cycle(mailbox, store, now=clock)
    recorded = [e for e in store.audit.all() if e.action == "recorded"]
    assert sorted(e.message for e in recorded) == [r.id for r in store.messages.all()]


def test_history_older_than_the_backfill_window_of_the_first_sync_is_recorded_but_not_triaged(store: Store) -> None:
    mailbox = MemoryMailbox()
    for n, age in enumerate([30, 20, 1]):
        mailbox.append("INBOX", order_mail(n), internal_date=NOW - timedelta(days=age))
    options = CycleOptions(backfill_days=7, max_per_cycle=1)
    triage = Triage(classify=one_by_one(lambda parsed: Classification("billing", "billing", 0.9, "en", "m")))
    reports = [run_cycle(mailbox, store, now=clock, options=options, stages=triage) for _ in range(3)]
    assert [(r.new, r.skipped) for r in reports] == [(0, 1), (0, 1), (1, 0)]
    assert [(r.status, r.category) for r in store.messages.all()] == [
        ("skipped", None),
        ("skipped", None),
        ("classified", "billing"),
    ]
    # Weeks later, after an outage: mail that arrived after the first sync is triaged, however old it is now.
    mailbox.append("INBOX", order_mail(9), internal_date=NOW + timedelta(days=2))
    later = run_cycle(mailbox, store, now=lambda: NOW + timedelta(days=60), options=options, stages=triage)
    assert later.new == 1


class Unmovable(MemoryMailbox):
    """A server with neither MOVE nor UIDPLUS: nothing can be moved without expunging something else."""

    def move(self, folder: str, uid: int, destination: str, *, resume: bool = False) -> bool:
        return False


def test_where_the_server_cannot_move_a_routed_message_keeps_its_keywords_in_place_and_is_routed(
    store: Store,
) -> None:
    mailbox = Unmovable()
    fill(mailbox, 1)
    decision = RouteDecision("billing", "model", "confident", folder="Support/Billing", keywords=("$Billing",))
    triage = Triage(
        classify=one_by_one(lambda parsed: Classification("billing", "billing", 0.9, "en", "m")),
        route=lambda parsed, classification: decision,
    )
    run_cycle(mailbox, store, now=clock, stages=triage)
    [record] = store.messages.all()
    assert record.status == "routed" and record.folder == "INBOX"
    assert mailbox.folder("INBOX")[0][1] == frozenset({"$Billing"})
    [event] = store.audit.events(record.id, "not-moved")
    assert event.detail["to"] == "Support/Billing" and "UIDPLUS" in event.detail["why"]


class DiesAfterMoving(MemoryMailbox):
    """The process is killed right after the server moved a message, before the move could be audited."""

    dying = True

    def move(self, folder: str, uid: int, destination: str, *, resume: bool = False) -> bool:
        super().move(folder, uid, destination, resume=resume)
        if self.dying:
            raise SystemExit("killed")
        return True


def test_a_message_moved_before_a_crash_could_audit_it_is_audited_as_found_moved(store: Store) -> None:
    mailbox = DiesAfterMoving()
    fill(mailbox, 1)
    decision = RouteDecision("billing", "model", "confident", folder="Support/Billing")
    triage = Triage(
        classify=one_by_one(lambda parsed: Classification("billing", "billing", 0.9, "en", "m")),
        route=lambda parsed, classification: decision,
    )
    with pytest.raises(SystemExit):
        run_cycle(mailbox, store, now=clock, stages=triage)
    mailbox.dying = False
    run_cycle(mailbox, store, now=clock, stages=triage)  # the restart
    [record] = store.messages.all()
    assert record.status == "routed" and not store.audit.events(record.id, "moved")
    [event] = store.audit.events(record.id, "found-moved")
    assert event.detail == {"from": "INBOX", "route": "Support/Billing", "move_begun": True}


def test_each_triaged_message_gets_one_log_line_naming_sender_subject_category_confidence_and_what_was_done(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    mailbox = MemoryMailbox("support")
    mailbox.append("INBOX", order_mail(31, subject="Kettle leaks"))
    mailbox.append("INBOX", order_mail(32, headers="Auto-Submitted: auto-replied\r\n"))
    decision = RouteDecision("defect-complaint", "model", "confident", folder="Support/Defects", template="t")
    triage = Triage(
        classify=one_by_one(lambda parsed: Classification("defect-complaint", "defect-complaint", 0.9712, "en", "m")),
        route=lambda parsed, classification: decision,
        draft=lambda parsed, template, language, now, due: Draft(
            b"Subject: Re\r\n\r\nHi\r\n", "t/en", "0" * 64, "x", "y"
        ),
    )
    with caplog.at_level(logging.INFO, logger="mailtriage"):
        run_cycle(mailbox, store, now=clock, stages=triage)
    lines = sorted(r.getMessage() for r in caplog.records if "UID" in r.getMessage())
    assert lines == [
        'support: UID 1 from c31@example.com "Kettle leaks": defect-complaint (model 0.97) → Support/Defects, '
        "draft written",
        'support: UID 2 from c32@example.com "Order 32 is late": skipped, auto-reply: Auto-Submitted: auto-replied',
    ]
