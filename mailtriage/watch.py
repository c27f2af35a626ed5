"""Watching first responses: the deadline sweep, apart from the poll, over the messages still waiting only.

Each sweep, for one mailbox: replies that arrived in the Sent folder since the last sweep stop their messages'
clocks (In-Reply-To or References naming them); so does a ``\\Answered`` flag set by a mail client; then each
message still waiting moves on to ``warning`` or ``breached`` when its time has come, recorded once with the
signals it owes; then owed signals are given: ``\\Flagged`` and a keyword on the server, one digest email, one
webhook post per transition; once a flagged message is answered, its deadline keyword comes off again. A signal
that fails stays owed and is tried again at the next sweep; the sweep never touches the poll.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from mailtriage.cursor import batches, unread
from mailtriage.deadlines import Policy, State, format_span, later
from mailtriage.edits import draft_use
from mailtriage.errors import MailboxError, NotifyError
from mailtriage.mailbox import Mailbox, flags_at
from mailtriage.models import Clock, FolderStatus, RawMessage
from mailtriage.parse import hash_content, parse_message
from mailtriage.store import MessageRecord, Signal, Store, SyncState
from mailtriage.store.deadlines import FLAG_SIGNAL, UNFLAG_SIGNAL

log = logging.getLogger(__name__)

SOON_KEYWORD = "$DeadlineSoon"
OVERDUE_KEYWORD = "$Overdue"
FLAGS = {State.WARNING: ("\\Flagged", SOON_KEYWORD), State.BREACHED: ("\\Flagged", OVERDUE_KEYWORD)}
SENT_FIRST_LOOK = 500
"""On first sight of a Sent folder, the replies looked at are its newest this many: older ones predate mailtriage."""
SENT_BATCH = 100
SENT_LIMIT = 2000
"""Replies read in Sent per sweep, at most: a sweep after a long outage catches up over the next ones."""
BY_SENT = "reply in Sent"
BY_FLAG = "\\Answered flag"


@dataclass(frozen=True)
class Signals:
    """Where deadline signals go besides the flags on the server; each optional."""

    digest: Callable[[str, str, datetime], None] | None = None
    """(subject, body, now): one email per sweep listing its transitions; raises NotifyError."""
    webhook: Callable[[Mapping[str, Any]], None] | None = None
    """(payload): one JSON post per transition; raises NotifyError."""

    @property
    def channels(self) -> tuple[str, ...]:
        return (FLAG_SIGNAL, *(["digest"] if self.digest else []), *(["webhook"] if self.webhook else []))


@dataclass
class SweepReport:
    mailbox: str
    answered: int = 0
    transitions: dict[str, int] = field(default_factory=dict)
    signalled: int = 0
    failed: int = 0


def sweep_deadlines(
    mailbox: Mailbox, store: Store, policy: Policy, clock: Clock, signals: Signals = Signals()
) -> SweepReport:
    """One sweep of ``mailbox``'s deadlines, at one moment of ``clock``. A lost connection raises MailboxError (the
    next sweep goes on from where this one stopped); every other failure is recorded and left for the next sweep."""
    now = clock()
    report = SweepReport(mailbox.name)
    _replies_in_sent(mailbox, store, now, report)
    waiting = _answered_by_flag(mailbox, store, store.deadlines.watched(mailbox.name, now, policy.watch), now, report)
    for record in waiting:
        assert record.due_at is not None and record.deadline_state is not None
        new = policy.state(record.due_at, record.category, now)
        if later(new, record.deadline_state) and store.deadlines.transition(record, new, signals.channels, now=now):
            report.transitions[new.value] = report.transitions.get(new.value, 0) + 1
            log.info("mailbox %s: %s from %s %r is %s: due %s (%s)",
                     record.mailbox, record.message_id, record.sender, record.subject, new.value,
                     _local(record.due_at, policy), _left(record.due_at, now))  # fmt: skip
    _give_signals(mailbox, store, policy, signals, now, report)
    return report


# --- what stops the clock ----------------------------------------------------------------------------------------


def _replies_in_sent(mailbox: Mailbox, store: Store, now: datetime, report: SweepReport) -> None:
    """Read the headers of what arrived in Sent since the last sweep: a reply naming a waiting message (or one of
    its follow-ups) answers it, at the time the reply was filed."""
    sent = mailbox.special_folder("sent")
    if not sent:
        return
    try:
        found = unread(mailbox, store, sent, now, start=_newest_sent, limit=SENT_LIMIT)
    except MailboxError as exc:
        if exc.retryable:
            raise
        return  # no such folder (yet): nothing was sent
    for chunk in batches(mailbox, sent, found.uids, SENT_BATCH, found.status.uidvalidity, headers_only=True):
        for raw in chunk:
            _reply(raw, mailbox, store, now, report)
        if chunk:
            store.sync.set(mailbox.name, sent, SyncState(found.status.uidvalidity, chunk[-1].uid), now)


def _newest_sent(status: FolderStatus) -> int:
    """On first sight of a Sent folder only its newest replies are read: older ones predate mailtriage."""
    return max(0, status.uidnext - 1 - SENT_FIRST_LOOK)


def _reply(raw: RawMessage, mailbox: Mailbox, store: Store, now: datetime, report: SweepReport) -> None:
    reply = parse_message(raw.data, internal_date=raw.internal_date)
    named = [m for m in (reply.in_reply_to, *reply.references) if m]
    waiting = store.messages.open_thread(mailbox.name, named)
    if waiting is None:
        return
    # Filed in Sent when it was sent: the server's INTERNALDATE, else its Date; never before the question, nor later
    # than now (a client's clock can be wrong).
    at = raw.internal_date or reply.date or now
    if waiting.received_at is not None:
        at = max(at, waiting.received_at)
    if _answer(store, waiting, min(at, now), BY_SENT, now, report):
        _draft_used(mailbox, store, raw, waiting, now)


def _draft_used(mailbox: Mailbox, store: Store, raw: RawMessage, answered: MessageRecord, now: datetime) -> None:
    """Compare the agent's reply with the draft mailtriage wrote for the message, if it wrote one, and record how
    much of it was kept (``edits.py``). The reply's body is read now, for replies to a drafted message only."""
    drafted = store.audit.events(answered.id, "draft-appended")
    if not drafted or "text" not in drafted[-1].detail:
        return
    try:
        [whole] = list(mailbox.fetch(raw.folder, [raw.uid]))
    except (MailboxError, ValueError):
        return  # gone from Sent meanwhile: the answer stands, the comparison is left out
    use, share = draft_use(str(drafted[-1].detail["text"]), parse_message(whole.data).text)
    detail = {"template": drafted[-1].detail.get("template"), "use": use.value, "kept": round(share, 3)}
    store.audit.add(answered.mailbox, "draft-used", detail, now=now, message=answered.id)


def _answered_by_flag(
    mailbox: Mailbox, store: Store, waiting: list[MessageRecord], now: datetime, report: SweepReport
) -> list[MessageRecord]:
    """Answer the waiting messages a client flagged ``\\Answered`` (or whose follow-up it flagged); the rest go on
    waiting. A message no longer where it was recorded is looked for where it was routed."""
    by_id = {record.id: record for record in waiting}
    answered: set[int] = set()
    looked = _flags(mailbox, store, [*waiting, *store.deadlines.follow_ups(list(by_id))], now)
    for record, flags in looked:
        root = by_id.get(record.thread_of or record.id)
        if root is not None and "\\Answered" in flags and root.id not in answered:
            answered.add(root.id)
            _answer(store, root, now, BY_FLAG, now, report)
    return [record for record in waiting if record.id not in answered]


def _flags(
    mailbox: Mailbox, store: Store, records: Iterable[MessageRecord], now: datetime
) -> list[tuple[MessageRecord, frozenset[str]]]:
    """The flags of these messages where they are; one no longer there is looked for where it was routed."""
    records = list(records)
    flags = flags_at(mailbox, [(record.folder, record.uid) for record in records])
    found: list[tuple[MessageRecord, frozenset[str]]] = []
    for record in records:
        place = (record.folder, record.uid)
        if place in flags:
            found.append((record, flags[place]))
            continue
        moved = _relocate(mailbox, store, record, now)
        if moved is not None:
            found.extend((moved, value) for value in mailbox.flags(moved.folder, [moved.uid]).values())
    return found


def _relocate(mailbox: Mailbox, store: Store, record: MessageRecord, now: datetime) -> MessageRecord | None:
    """Find a message moved since it was recorded (by its route, before a correction sweep saw it) in the folder
    it was routed to, note its new place and audit it. Candidates are found by Message-ID and told apart by
    content: two different mails may share a Message-ID, and each must be found at its own UID."""
    folder = record.route.folder if record.route else None
    if not folder or folder == record.folder or record.message_id_synthetic:
        return None
    try:
        uids = mailbox.find(folder, "Message-ID", record.message_id)
        fetched = mailbox.fetch(folder, uids)
        found = [raw for raw in fetched if hash_content(raw.data, raw.whole_size) == record.content_hash]
    except MailboxError as exc:
        if exc.retryable:
            raise
        return None
    if not found:
        return None
    place = found[0]
    store.messages.locate(record, place)
    detail = {
        "from": [record.folder, record.uidvalidity, record.uid],
        "to": [place.folder, place.uidvalidity, place.uid],
    }
    store.audit.add(record.mailbox, "found-moved", detail, now=now, message=record.id)
    return _moved(record, place)


def _moved(record: MessageRecord, place: RawMessage) -> MessageRecord:
    return replace(record, folder=place.folder, uidvalidity=place.uidvalidity, uid=place.uid)


def _answer(store: Store, record: MessageRecord, at: datetime, how: str, now: datetime, report: SweepReport) -> bool:
    """Stop the message's clock; False when it was answered already."""
    if not store.deadlines.answer(record, at, how, now=now):
        return False
    report.answered += 1
    took = format_span(record.response_time_at(at))
    log.info("mailbox %s: %s from %s answered (%s) after %s%s",
             record.mailbox, record.message_id, record.sender, how, took,
             "" if record.due_at is None or at <= record.due_at else ", after its deadline")  # fmt: skip
    return True


# --- signals -----------------------------------------------------------------------------------------------------


def _give_signals(
    mailbox: Mailbox, store: Store, policy: Policy, signals: Signals, now: datetime, report: SweepReport
) -> None:
    owed = store.deadlines.owed(mailbox.name)
    digest: list[Signal] = []
    for signal in owed:
        if signal.channel in (FLAG_SIGNAL, UNFLAG_SIGNAL):
            _flag(mailbox, store, signal, now, report)
        elif signal.channel == "digest" and signals.digest is not None:
            digest.append(signal)
        elif signal.channel == "webhook" and signals.webhook is not None:
            try:
                signals.webhook(payload(signal, policy, now))
            except NotifyError as exc:
                _failed(store, signal, str(exc), now, report)
                continue
            _given(store, signal, now, report)
    if digest and signals.digest is not None:
        subject, body = digest_text(mailbox.name, digest, policy, now)
        try:
            signals.digest(subject, body, now)
        except NotifyError as exc:
            for signal in digest:
                _failed(store, signal, str(exc), now, report)
            return
        for signal in digest:
            _given(store, signal, now, report)


def _flag(mailbox: Mailbox, store: Store, signal: Signal, now: datetime, report: SweepReport) -> None:
    """Flag a message for its state; or, once it is answered, take that state's keyword off again (never
    ``\\Flagged``: an agent's own flag cannot be told from ours)."""
    message = signal.message
    try:
        if signal.channel == FLAG_SIGNAL:
            mailbox.add_flags(message.folder, [message.uid], FLAGS[signal.state])
        else:
            mailbox.remove_flags(message.folder, message.uid, [FLAGS[signal.state][1]])
    except MailboxError as exc:
        _failed(store, signal, str(exc), now, report)
        if exc.retryable:
            raise
        return
    _given(store, signal, now, report)


def _given(store: Store, signal: Signal, now: datetime, report: SweepReport) -> None:
    store.deadlines.given(signal, now=now)
    report.signalled += 1


def _failed(store: Store, signal: Signal, error: str, now: datetime, report: SweepReport) -> None:
    store.deadlines.failed(signal, error, now=now)
    report.failed += 1
    log.warning("mailbox %s: %s: the %s signal (%s) failed, tried again at the next sweep: %s",
                signal.message.mailbox, signal.message.message_id, signal.channel, signal.state, error)  # fmt: skip


def payload(signal: Signal, policy: Policy, now: datetime) -> dict[str, Any]:
    """The JSON posted to the webhook for one transition. ``id`` is the same for every attempt of it, so a
    receiver can drop a repeat."""
    record = signal.message
    assert record.due_at is not None
    return {
        "id": f"{record.mailbox}/{record.id}/{signal.state}",
        "event": f"deadline.{signal.state}",
        "state": signal.state,
        "mailbox": record.mailbox,
        "folder": record.folder,
        "message_id": record.message_id,
        "sender": record.sender,
        "subject": record.subject,
        "category": record.category_now,
        "received_at": record.received_at.isoformat() if record.received_at else None,
        "due_at": record.due_at.isoformat(),
        "at": now.astimezone(UTC).isoformat(),
        "text": _line(record, signal.state, policy, now),
    }


def digest_text(mailbox: str, owed: list[Signal], policy: Policy, now: datetime) -> tuple[str, str]:
    """The subject and body of the digest email for ``owed`` transitions: overdue first, then due soon."""
    overdue = [s for s in owed if s.state is State.BREACHED]
    soon = [s for s in owed if s.state is State.WARNING]
    counts = [f"{len(overdue)} overdue" if overdue else "", f"{len(soon)} due soon" if soon else ""]
    subject = f"[mailtriage] {mailbox}: {', '.join(c for c in counts if c)}"
    lines = [f"First-response deadlines in {mailbox}, {_local(now, policy)}:", ""]
    for title, group in (("Overdue, not answered yet:", overdue), ("Due soon:", soon)):
        if group:
            lines.append(title)
            lines.extend(f"  - {_line(s.message, s.state, policy, now)}" for s in group)
            lines.append("")
    lines.append("Answer from your mail client: a reply in Sent, or the \\Answered flag, stops the clock.")
    return subject, "\n".join(lines)


def _line(record: MessageRecord, state: State, policy: Policy, now: datetime) -> str:
    assert record.due_at is not None
    what = "overdue" if state is State.BREACHED else "due soon"
    return (
        f"{what}: {record.subject!r} from {record.sender or '(no sender)'} "
        f"[{record.category_now or 'unclassified'}], due {_local(record.due_at, policy)} "
        f"({_left(record.due_at, now)}), in {record.folder}"
    )


def _local(moment: datetime, policy: Policy) -> str:
    return moment.astimezone(ZoneInfo(policy.display_zone)).strftime("%a %d %b %H:%M %Z")


def _left(due: datetime, now: datetime) -> str:
    return f"{format_span(due - now)} left" if due > now else f"{format_span(now - due)} ago"
