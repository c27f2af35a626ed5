"""A fetched batch is acted on as a batch: its drafts in one MULTIAPPEND, its flags in one UID STORE per set, its
moves in one UID MOVE per destination; and a refusal or a crash anywhere still gives each message one draft."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime

import imapclient
import pytest

from mailtriage.draft import ANSWERS_HASH_HEADER, Draft, answers_hash
from mailtriage.errors import MailboxError
from mailtriage.mailbox.imap import ImapMailbox
from mailtriage.mailbox.memory import MemoryMailbox
from mailtriage.models import Classification, ParsedEmail, RouteDecision
from mailtriage.pipeline import Triage, one_by_one, run_cycle
from mailtriage.store import Store
from tests.dovecot import Account
from tests.helpers import order_mail
from tests.test_pipeline import clock, fill


def classified(parsed: ParsedEmail) -> Classification:
    return Classification("billing", "billing", 0.9, "en", "m")


def drafted(parsed: ParsedEmail, template: str, language: str, now: datetime, due: datetime | None) -> Draft:
    header = f"{ANSWERS_HASH_HEADER}: {answers_hash(parsed.content_hash)}"
    data = f"Subject: Re: {parsed.subject}\r\n{header}\r\n\r\nThanks.\r\n"
    return Draft(data.encode(), "billing/en", "0" * 64, "tests", "2026-11-23")


def triage(decision: RouteDecision) -> Triage:
    return Triage(classify=one_by_one(classified), route=lambda parsed, c: decision, draft=drafted)


DRAFT_AND_MOVE = RouteDecision("billing", "model", "sure", template="billing", folder="Billing", keywords=("$B",))


class Counted(MemoryMailbox):
    """Counts the requests that change something."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: Counter[str] = Counter()

    def append_many(self, folder: str, messages: Sequence[bytes], flags: Sequence[str] = ()) -> None:
        self.requests["append_many"] += 1
        super().append_many(folder, messages, flags)

    def add_flags(self, folder: str, uids: Sequence[int], flags: Sequence[str]) -> None:
        self.requests["add_flags"] += 1
        super().add_flags(folder, uids, flags)

    def move_many(self, folder: str, uids: Sequence[int], destination: str) -> bool:
        self.requests["move_many"] += 1
        return super().move_many(folder, uids, destination)


def test_a_batch_is_drafted_flagged_and_moved_in_one_request_each(store: Store) -> None:
    mailbox = Counted()
    fill(mailbox, 20)
    report = run_cycle(mailbox, store, now=clock, stages=triage(DRAFT_AND_MOVE))
    assert report.new == 20
    assert mailbox.requests == {"append_many": 1, "add_flags": 1, "move_many": 1}
    assert len(mailbox.folder("Drafts")) == 20 and len(mailbox.folder("Billing")) == 20
    assert all(flags == frozenset({"$B"}) for _, flags in mailbox.folder("Billing"))
    assert {r.status for r in store.messages.all()} == {"routed"}


class RefusesOne(MemoryMailbox):
    """A server that refuses a whole MULTIAPPEND for one bad draft, and that draft alone after."""

    def append_many(self, folder: str, messages: Sequence[bytes], flags: Sequence[str] = ()) -> None:
        if any(b"Order 3 " in data for data in messages):
            raise MailboxError(self.name, "APPEND: message too large", retryable=False)
        super().append_many(folder, messages, flags)

    def append(self, folder: str, data: bytes, flags: Sequence[str] = (), internal_date: datetime | None = None) -> int:
        if b"Order 3 " in data and folder == "Drafts":
            raise MailboxError(self.name, "APPEND: message too large", retryable=False)
        return super().append(folder, data, flags, internal_date)


def test_a_draft_the_server_refuses_leaves_that_message_for_a_human_and_the_others_drafted_once(store: Store) -> None:
    mailbox = RefusesOne()
    fill(mailbox, 6)
    run_cycle(mailbox, store, now=clock, stages=triage(RouteDecision("billing", "model", "sure", template="billing")))
    statuses = {r.subject: r.status for r in store.messages.all()}
    assert statuses.pop("Order 3 is late") == "needs-human"
    assert set(statuses.values()) == {"routed"}
    drafts = [data for data, _ in mailbox.folder("Drafts")]
    assert len(drafts) == 5 and len(set(drafts)) == 5


class DiesAfterAppending(MemoryMailbox):
    """The process is killed right after the server took the drafts, before they could be audited."""

    dying = True

    def append_many(self, folder: str, messages: Sequence[bytes], flags: Sequence[str] = ()) -> None:
        super().append_many(folder, messages, flags)
        if self.dying:
            raise SystemExit("killed")


def test_drafts_appended_just_before_a_crash_are_found_after_the_restart_and_not_written_again(store: Store) -> None:
    mailbox = DiesAfterAppending()
    fill(mailbox, 8)
    stages = triage(RouteDecision("billing", "model", "sure", template="billing"))
    with pytest.raises(SystemExit):
        run_cycle(mailbox, store, now=clock, stages=stages)
    mailbox.dying = False
    run_cycle(mailbox, store, now=clock, stages=stages)  # the restart
    assert len(mailbox.folder("Drafts")) == 8
    records = store.messages.all()
    assert {r.status for r in records} == {"routed"}
    assert all(store.audit.events(r.id, "draft-exists") for r in records)


class RefusesTheBatchOfFlags(Counted):
    def add_flags(self, folder: str, uids: Sequence[int], flags: Sequence[str]) -> None:
        if len(uids) > 1:
            raise MailboxError(self.name, "STORE: too many", retryable=False)
        super().add_flags(folder, uids, flags)


def test_flags_refused_for_the_batch_are_set_one_message_at_a_time(store: Store) -> None:
    mailbox = RefusesTheBatchOfFlags()
    fill(mailbox, 4)
    run_cycle(mailbox, store, now=clock, stages=triage(RouteDecision("billing", "model", "sure", keywords=("$B",))))
    assert [flags for _, flags in mailbox.folder("INBOX")] == [frozenset({"$B"})] * 4
    assert {r.status for r in store.messages.all()} == {"routed"}


class Outage(MemoryMailbox):
    """The connection is lost while a batch is moved."""

    def move_many(self, folder: str, uids: Sequence[int], destination: str) -> bool:
        raise MailboxError(self.name, "connection lost", retryable=True)


def test_a_connection_lost_while_moving_leaves_the_batch_pending_for_the_next_cycle(store: Store) -> None:
    mailbox = Outage()
    fill(mailbox, 3)
    decision = RouteDecision("billing", "model", "sure", folder="Billing")
    with pytest.raises(MailboxError):
        run_cycle(mailbox, store, now=clock, stages=triage(decision))
    assert {r.status for r in store.messages.all()} == {"pending"}
    mailbox.__class__ = MemoryMailbox  # the connection is back
    run_cycle(mailbox, store, now=clock, stages=triage(decision))
    assert len(mailbox.folder("Billing")) == 3 and {r.status for r in store.messages.all()} == {"routed"}


def counted(method: Callable[..., object], calls: Counter[str]) -> Callable[..., object]:
    def counting(*args: object, **kwargs: object) -> object:
        calls[method.__name__] += 1
        return method(*args, **kwargs)

    return counting


@pytest.mark.dovecot
def test_on_dovecot_a_batch_of_drafts_goes_in_one_multiappend_and_its_moves_in_one_move(
    account: Account, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    account.append_many(order_mail(n) for n in range(25))
    sent: Counter[str] = Counter()
    for command in ("append", "multiappend", "move", "add_flags"):
        monkeypatch.setattr(imapclient.IMAPClient, command, counted(getattr(imapclient.IMAPClient, command), sent))
    mailbox = ImapMailbox(account.settings())
    report = run_cycle(mailbox, store, now=clock, stages=triage(DRAFT_AND_MOVE))
    mailbox.close()
    assert report.new == 25
    assert sent == {"multiappend": 1, "add_flags": 1, "move": 1}
    assert len(account.flags("Drafts")) == 25 and len(account.flags("Billing")) == 25
    assert all(b"$B" in flags and b"\\Seen" not in flags for flags in account.flags("Billing").values())
    assert account.flags("INBOX") == {}  # moved, every one, and read without \\Seen
