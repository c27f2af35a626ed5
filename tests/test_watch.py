"""The deadline sweep: states that move on as time passes, signals given once per transition (flags and keywords on
the server, a digest email, a webhook post), replies and ``\\Answered`` that stop the clock, follow-ups that do not
restart it."""

from __future__ import annotations

import email
import http.server
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy as email_policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope

from mailtriage.deadlines import Policy, WarningRule
from mailtriage.errors import MailboxError
from mailtriage.mailbox.imap import ImapMailbox
from mailtriage.mailbox.memory import MemoryMailbox
from mailtriage.notify import Webhook
from mailtriage.pipeline import CycleOptions, run_cycle
from mailtriage.settings import (
    ClassifierSettings,
    DeadlineSettings,
    Security,
    Settings,
    SmtpSettings,
    StoreSettings,
)
from mailtriage.store import Status, Store
from mailtriage.watch import OVERDUE_KEYWORD, SOON_KEYWORD, Signals, sweep_deadlines
from mailtriage.wiring import daemon_from_settings, deadline_sweep
from tests.dovecot import Account, free_port
from tests.helpers import settings_for as shared_settings

T0 = datetime(2026, 11, 16, 8, 0, tzinfo=UTC)
"""When the customer's message arrives (its INTERNALDATE): in the past, since a server files a future date as now."""
POLICY = Policy(target=timedelta(hours=24), warning=WarningRule(left=timedelta(hours=4)))


def stopped_at(moment: datetime) -> Callable[[], datetime]:
    """A clock stopped at ``moment``."""
    return lambda: moment


def question(number: int, **headers: str) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (
        f"From: Customer {number} <customer{number}@example.org>\r\nTo: support@example.com\r\n"
        f"Subject: Where is my order A-{1000 + number}?\r\nMessage-ID: <question-{number}@example.org>\r\n"
        f"Date: Mon, 23 Nov 2026 08:00:00 +0000\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Hello, my order A-{1000 + number} has not arrived yet. Could you tell me where it is?\r\n"
    ).encode()


def reply_to(number: int, *, references: str = "") -> bytes:
    return (
        f"From: Support <support@example.com>\r\nTo: customer{number}@example.org\r\n"
        f"Subject: Re: Where is my order A-{1000 + number}?\r\nMessage-ID: <reply-{number}@example.com>\r\n"
        f"In-Reply-To: <question-{number}@example.org>\r\n"
        f"References: {references or f'<question-{number}@example.org>'}\r\n\r\nIt left our warehouse today.\r\n"
    ).encode()


def flags_of(account: Account, folder: str = "INBOX", uid: int = 1) -> set[bytes]:
    """A message's flags as a client sees them, less the session's own \\Recent."""
    return set(account.flags(folder)[uid]) - {b"\\Recent"}


# --- receivers ---------------------------------------------------------------------------------------------------


@dataclass
class WebhookReceiver:
    url: str
    posts: list[dict[str, object]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    """Status codes to answer with, one per post; 200 once they run out."""


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers["Content-Length"]))
            code = receiver.answers.pop(0) if receiver.answers else 200
            if code == 200:
                assert self.headers["Content-Type"] == "application/json"
                receiver.posts.append(json.loads(body))
            self.send_response(code)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/T0KEN-secret"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


@dataclass
class SmtpSink:
    port: int
    mails: list[email.message.EmailMessage] = field(default_factory=list)


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink(free_port())

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:  # noqa: N802
            content = envelope.content if isinstance(envelope.content, bytes) else b""
            sink.mails.append(email.message_from_bytes(content, policy=email_policy.default))  # type: ignore[arg-type]
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=sink.port)
    controller.start()
    yield sink
    controller.stop()


# --- against Dovecot ---------------------------------------------------------------------------------------------


def settings_for(account: Account, smtp: SmtpSink, webhook: WebhookReceiver) -> Settings:
    return shared_settings(
        account,
        smtp=SmtpSettings(host="127.0.0.1", port=smtp.port, security=Security.NONE),
        deadlines=DeadlineSettings(digest_to="leads@example.com", webhook_url=webhook.url, warn_hours_left=4),
    )


def intake(account: Account, store: Store, at: datetime) -> None:
    run_cycle(ImapMailbox(account.settings()), store, now=lambda: at, options=CycleOptions(deadlines=POLICY))


@pytest.mark.dovecot
def test_a_message_turns_warning_then_breached_with_one_flag_keyword_email_and_post_per_transition(
    account: Account, store: Store, smtp: SmtpSink, webhook: WebhookReceiver
) -> None:
    account.append_many([question(1)], date=T0)
    intake(account, store, T0 + timedelta(minutes=1))
    [record] = store.messages.all()
    assert record.due_at == T0 + timedelta(hours=24) and record.deadline_state == "on-track"
    mailbox = ImapMailbox(account.settings())
    settings = settings_for(account, smtp, webhook)

    def sweep(at: datetime) -> None:
        deadline_sweep(settings, store, POLICY, lambda: at).run(mailbox)

    sweep(T0 + timedelta(hours=19, minutes=59))
    assert (smtp.mails, webhook.posts) == ([], [])
    assert flags_of(account) == set()

    for minutes in (1, 2, 30):  # the warning comes once, however many sweeps see it
        sweep(T0 + timedelta(hours=20, minutes=minutes))
    assert flags_of(account) == {b"\\Flagged", SOON_KEYWORD.encode()}
    assert [post["event"] for post in webhook.posts] == ["deadline.warning"]
    assert webhook.posts[0]["message_id"] == "<question-1@example.org>"
    assert webhook.posts[0]["due_at"] == "2026-11-17T08:00:00+00:00"
    assert "due soon" in str(webhook.posts[0]["text"])
    [digest] = smtp.mails
    assert digest["To"] == "leads@example.com" and "1 due soon" in digest["Subject"]
    assert "Where is my order A-1001?" in digest.get_content()

    for minutes in (0, 1, 5):
        sweep(T0 + timedelta(hours=24, minutes=minutes))
    assert flags_of(account) == {b"\\Flagged", SOON_KEYWORD.encode(), OVERDUE_KEYWORD.encode()}
    assert [post["event"] for post in webhook.posts] == ["deadline.warning", "deadline.breached"]
    assert len(smtp.mails) == 2 and "1 overdue" in smtp.mails[1]["Subject"]
    assert [e.action for e in store.audit.all() if e.action.startswith("deadline:")] == [
        "deadline:warning",
        "deadline:breached",
    ]
    assert b"\\Seen" not in flags_of(account)


@pytest.mark.dovecot
def test_a_reply_filed_in_sent_stops_the_clock_and_records_the_response_time(
    account: Account, store: Store, smtp: SmtpSink, webhook: WebhookReceiver
) -> None:
    account.append_many([question(2)], date=T0)
    intake(account, store, T0 + timedelta(minutes=1))
    account.append_many([reply_to(2)], folder="Sent", date=T0 + timedelta(hours=3, minutes=30))
    sweep_deadlines(ImapMailbox(account.settings()), store, POLICY, stopped_at(T0 + timedelta(hours=3, minutes=31)))
    [record] = store.messages.all()
    assert record.deadline_state == "answered" and record.answered_how == "reply in Sent"
    assert record.answered_at == T0 + timedelta(hours=3, minutes=30)
    assert record.response_time == timedelta(hours=3, minutes=30)
    assert b"\\Seen" not in flags_of(account, "Sent")  # the reply's headers were read with BODY.PEEK
    [answered] = [e for e in store.audit.all() if e.action == "answered"]
    assert answered.detail["response_seconds"] == 3.5 * 3600 and answered.detail["within_target"] is True

    settings = settings_for(account, smtp, webhook)
    deadline_sweep(settings, store, POLICY, lambda: T0 + timedelta(hours=30)).run(ImapMailbox(account.settings()))
    assert (smtp.mails, webhook.posts) == ([], [])  # answered: no warning, no breach, nothing on the server
    assert flags_of(account) == set()


def flag_first(account: Account, flag: bytes) -> None:
    """Set ``flag`` on the INBOX's first message, as an agent's mail client does."""
    client = account.client()
    client.select_folder("INBOX")
    client.add_flags([1], [flag])
    client.logout()


@pytest.mark.dovecot
def test_once_a_reply_lands_in_sent_the_deadline_keywords_come_off_and_an_agents_own_keyword_stays(
    account: Account, store: Store
) -> None:
    account.append_many([question(4)], date=T0)
    intake(account, store, T0 + timedelta(minutes=1))
    mailbox = ImapMailbox(account.settings())
    for hours in (20, 25):  # warning, then breach: both keywords set
        sweep_deadlines(mailbox, store, POLICY, stopped_at(T0 + timedelta(hours=hours)))
    assert flags_of(account) == {b"\\Flagged", SOON_KEYWORD.encode(), OVERDUE_KEYWORD.encode()}
    flag_first(account, b"$Escalated")  # an agent's own keyword
    account.append_many([reply_to(4)], folder="Sent", date=T0 + timedelta(hours=26))
    for hours in (26, 27):  # the keywords come off once; a later sweep has nothing more to do
        sweep_deadlines(mailbox, store, POLICY, stopped_at(T0 + timedelta(hours=hours, minutes=1)))
    assert flags_of(account) == {b"\\Flagged", b"$Escalated"}  # \\Flagged stays: it may be the agent's
    signalled = [e.detail for e in store.audit.all() if e.action == "deadline-signalled"]
    assert sorted(d["state"] for d in signalled if d["channel"] == "unflag") == ["breached", "warning"]


@pytest.mark.dovecot
def test_the_answered_flag_a_mail_client_sets_stops_the_clock(account: Account, store: Store) -> None:
    account.append_many([question(3)], date=T0)
    intake(account, store, T0 + timedelta(minutes=1))
    mailbox = ImapMailbox(account.settings())
    sweep_deadlines(mailbox, store, POLICY, stopped_at(T0 + timedelta(hours=1)))
    assert store.messages.all()[0].deadline_state == "on-track"
    flag_first(account, b"\\Answered")
    sweep_deadlines(mailbox, store, POLICY, stopped_at(T0 + timedelta(hours=2)))
    [record] = store.messages.all()
    assert (record.deadline_state, record.answered_how) == ("answered", "\\Answered flag")
    assert record.response_time == timedelta(hours=2)


@pytest.mark.dovecot
def test_a_message_moved_by_its_route_is_found_in_its_folder_for_flags_and_answers(
    account: Account, store: Store
) -> None:
    account.append_many([question(4)], date=T0)
    intake(account, store, T0 + timedelta(minutes=1))
    [record] = store.messages.all()
    store.messages.set_status(record, Status.ROUTED, now=T0)
    with store.database.transaction() as db:  # the route as the pipeline records it
        db.execute(
            store.messages.table.update().values(
                route={
                    "category": "order-delivery",
                    "decided_by": "model",
                    "reason": "test",
                    "folder": "Support/Orders",
                }
            )
        )
    mailbox = ImapMailbox(account.settings())
    mailbox.move("INBOX", 1, "Support/Orders")
    sweep_deadlines(mailbox, store, POLICY, stopped_at(T0 + timedelta(hours=21)))
    [record] = store.messages.all()
    assert (record.folder, record.deadline_state) == ("Support/Orders", "warning")
    assert SOON_KEYWORD.encode() in flags_of(account, "Support.Orders")  # the server's own separator


# --- the sweep's bookkeeping, on the in-memory mailbox -----------------------------------------------------------


def memory_with(*messages: bytes) -> MemoryMailbox:
    mailbox = MemoryMailbox("support")
    for data in messages:
        mailbox.append("INBOX", data, internal_date=T0)
    return mailbox


def test_a_follow_up_in_the_same_thread_before_an_answer_does_not_restart_the_clock(store: Store) -> None:
    mailbox = memory_with(question(5))
    run_cycle(mailbox, store, now=lambda: T0, options=CycleOptions(deadlines=POLICY))
    follow_up = question(6, **{"In-Reply-To": "<question-5@example.org>"}).replace(b"question-6", b"follow-up-5")
    mailbox.append("INBOX", follow_up, internal_date=T0 + timedelta(hours=10))
    run_cycle(mailbox, store, now=lambda: T0 + timedelta(hours=10), options=CycleOptions(deadlines=POLICY))
    first, second = store.messages.all()
    assert first.due_at == T0 + timedelta(hours=24)
    assert (second.due_at, second.deadline_state, second.thread_of) == (None, None, first.id)

    # The agent answers the follow-up only: that answers the thread, at the first message's clock.
    mailbox.append("Sent", reply_to(5).replace(b"<question-5@example.org>", b"<follow-up-5@example.org>"),
                   internal_date=T0 + timedelta(hours=12))  # fmt: skip
    sweep_deadlines(mailbox, store, POLICY, stopped_at(T0 + timedelta(hours=12, minutes=1)))
    first, second = store.messages.all()
    assert first.deadline_state == "answered" and first.response_time == timedelta(hours=12)


class RefusingOnce(MemoryMailbox):
    """A mailbox whose first change of flags fails, as a server that dropped the connection would."""

    refused = False

    def remove_flags(self, folder: str, uid: int, flags: Sequence[str]) -> None:
        if not self.refused:
            self.refused = True
            raise MailboxError(self.name, "connection lost", retryable=False)
        super().remove_flags(folder, uid, flags)


def test_a_keyword_that_could_not_be_taken_off_is_tried_again_at_the_next_sweep(store: Store) -> None:
    mailbox = RefusingOnce("support")
    mailbox.append("INBOX", question(9), internal_date=T0)
    run_cycle(mailbox, store, now=lambda: T0, options=CycleOptions(deadlines=POLICY))
    sweep_deadlines(mailbox, store, POLICY, stopped_at(T0 + timedelta(hours=20)))
    mailbox.add_flags("INBOX", [1], ["\\Answered"])
    first = sweep_deadlines(mailbox, store, POLICY, stopped_at(T0 + timedelta(hours=21)))
    assert first.failed == 1 and SOON_KEYWORD in mailbox.flags("INBOX", [1])[1]
    second = sweep_deadlines(mailbox, store, POLICY, stopped_at(T0 + timedelta(hours=22)))
    assert second.signalled == 1 and mailbox.flags("INBOX", [1])[1] == {"\\Answered", "\\Flagged"}


def test_a_message_answered_before_its_warning_was_given_has_nothing_taken_off(store: Store) -> None:
    mailbox = memory_with(question(10))
    run_cycle(mailbox, store, now=lambda: T0, options=CycleOptions(deadlines=POLICY))
    mailbox.add_flags("INBOX", [1], [SOON_KEYWORD])  # set by an agent, not by mailtriage
    mailbox.add_flags("INBOX", [1], ["\\Answered"])
    sweep_deadlines(mailbox, store, POLICY, stopped_at(T0 + timedelta(hours=1)))
    assert SOON_KEYWORD in mailbox.flags("INBOX", [1])[1]


def test_a_follow_up_after_the_answer_is_a_new_question_with_its_own_clock(store: Store) -> None:
    mailbox = memory_with(question(7))
    run_cycle(mailbox, store, now=lambda: T0, options=CycleOptions(deadlines=POLICY))
    mailbox.append("Sent", reply_to(7), internal_date=T0 + timedelta(hours=1))
    sweep_deadlines(mailbox, store, POLICY, stopped_at(T0 + timedelta(hours=1)))
    later = T0 + timedelta(hours=5)
    again = question(8, **{"In-Reply-To": "<reply-7@example.com>", "References": "<question-7@example.org>"})
    mailbox.append("INBOX", again, internal_date=later)
    run_cycle(mailbox, store, now=lambda: later, options=CycleOptions(deadlines=POLICY))
    second = store.messages.all()[1]
    assert (second.due_at, second.deadline_state, second.thread_of) == (later + timedelta(hours=24), "on-track", None)


def test_automatic_mail_gets_no_deadline(store: Store) -> None:
    bounce = question(9, **{"Auto-Submitted": "auto-replied"})
    mailbox = memory_with(bounce)
    run_cycle(mailbox, store, now=lambda: T0, options=CycleOptions(deadlines=POLICY))
    [record] = store.messages.all()
    assert (record.status, record.due_at, record.deadline_state) == ("skipped", None, None)


def test_a_failing_webhook_is_tried_again_at_the_next_sweep_and_posts_once_it_works(
    store: Store, webhook: WebhookReceiver
) -> None:
    mailbox = memory_with(question(10))
    run_cycle(mailbox, store, now=lambda: T0, options=CycleOptions(deadlines=POLICY))
    signals = Signals(webhook=Webhook(webhook.url, timeout=5).post)
    webhook.answers = [500, 503]
    at = T0 + timedelta(hours=21)
    first = sweep_deadlines(mailbox, store, POLICY, stopped_at(at), signals)
    second = sweep_deadlines(mailbox, store, POLICY, stopped_at(at + timedelta(minutes=1)), signals)
    assert (first.failed, second.failed, webhook.posts) == (1, 1, [])
    third = sweep_deadlines(mailbox, store, POLICY, stopped_at(at + timedelta(minutes=2)), signals)
    fourth = sweep_deadlines(mailbox, store, POLICY, stopped_at(at + timedelta(minutes=3)), signals)
    assert (third.signalled, fourth.signalled) == (1, 0)
    assert [post["event"] for post in webhook.posts] == ["deadline.warning"]
    failures = [e for e in store.audit.all() if e.action == "deadline-signal-failed"]
    assert len(failures) == 2 and "500" in failures[0].detail["error"]
    assert "T0KEN" not in failures[0].detail["error"]  # the URL's path (its token) is never written down


def test_an_unreachable_digest_server_never_stops_the_flags_and_is_retried(store: Store) -> None:
    mailbox = memory_with(question(11))
    run_cycle(mailbox, store, now=lambda: T0, options=CycleOptions(deadlines=POLICY))
    sent: list[str] = []
    down = True

    def digest(subject: str, body: str, at: datetime) -> None:
        from mailtriage.errors import NotifyError

        if down:
            raise NotifyError("cannot send a notification to leads@example.com via 127.0.0.1:9: refused")
        sent.append(subject)

    signals = Signals(digest=digest)
    at = T0 + timedelta(hours=21)
    report = sweep_deadlines(mailbox, store, POLICY, stopped_at(at), signals)
    assert (report.signalled, report.failed) == (1, 1)  # the flags went on; the digest did not
    assert SOON_KEYWORD in mailbox.flags("INBOX", [1])[1]
    down = False
    sweep_deadlines(mailbox, store, POLICY, stopped_at(at + timedelta(minutes=1)), signals)
    sweep_deadlines(mailbox, store, POLICY, stopped_at(at + timedelta(minutes=2)), signals)
    assert sent == ["[mailtriage] support: 1 due soon"]


def test_a_message_answered_before_its_signals_were_given_gets_none(store: Store) -> None:
    mailbox = memory_with(question(12))
    run_cycle(mailbox, store, now=lambda: T0, options=CycleOptions(deadlines=POLICY))
    posts: list[object] = []

    def failing(payload: object) -> None:
        from mailtriage.errors import NotifyError

        raise NotifyError("down")

    at = T0 + timedelta(hours=21)
    sweep_deadlines(mailbox, store, POLICY, stopped_at(at), Signals(webhook=failing))
    mailbox.set_flags("INBOX", 1, {"\\Answered"})
    sweep_deadlines(mailbox, store, POLICY, stopped_at(at + timedelta(minutes=1)), Signals(webhook=posts.append))
    assert posts == [] and store.deadlines.owed("support") == []


@pytest.mark.dovecot
def test_the_daemon_sweeps_deadlines_after_its_cycle_and_finds_the_message_where_its_route_filed_it(
    account: Account, store: Store, seed_model: Path, webhook: WebhookReceiver
) -> None:
    from tests.test_routing_imap import FRENCH_RETURN
    from tests.test_routing_imap import settings_for as routed_settings

    settings = routed_settings(account).model_copy(
        update={
            "store": StoreSettings(url=store.url),
            "classifier": ClassifierSettings(model=seed_model),
            "deadlines": DeadlineSettings(webhook_url=webhook.url),
        }
    )
    account.append_many([FRENCH_RETURN], date=T0)  # a week ago: overdue as soon as it is read
    daemon_from_settings(settings).run_once()
    daemon_from_settings(settings).run_once()
    [record] = store.messages.all()
    assert (record.folder, record.deadline_state) == ("Support/Returns", "breached")
    assert OVERDUE_KEYWORD.encode() in flags_of(account, "Support.Returns")
    assert [post["event"] for post in webhook.posts] == ["deadline.breached"]


def test_replies_deleted_from_sent_are_not_asked_about_at_every_sweep(store: Store) -> None:
    mailbox = memory_with(question(13))
    run_cycle(mailbox, store, now=lambda: T0, options=CycleOptions(deadlines=POLICY))
    mailbox.append("Sent", b"Subject: lost\r\n\r\nx\r\n")
    sweep_deadlines(mailbox, store, POLICY, stopped_at(T0))
    mailbox.append("Sent", b"Subject: deleted\r\n\r\nx\r\n")
    mailbox.expunge("Sent", 2)  # by an agent, before the sweep saw it
    sweep_deadlines(mailbox, store, POLICY, stopped_at(T0 + timedelta(minutes=1)))
    assert store.sync.get("support", "Sent") is not None
    assert store.sync.get("support", "Sent").last_uid == 2  # type: ignore[union-attr]
