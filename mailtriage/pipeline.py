"""One poll cycle, top to bottom: what is new in the inbox is fetched, parsed, recorded and handed to the stages.

``run_cycle`` is the unit of work: the scheduler calls it, ``mailtriage run --once`` calls it, tests call it. It
takes its collaborators as arguments and does no I/O of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from mailtriage.cursor import batches, unread
from mailtriage.deadlines import Policy
from mailtriage.draft import ANSWERS_HASH_HEADER, Draft, answers_hash
from mailtriage.errors import MailboxError, NotifyError, TemplateError
from mailtriage.mailbox import Mailbox
from mailtriage.models import Classification, MessageKind, ParsedEmail, RawMessage, RouteDecision
from mailtriage.parse import hash_content, parse_message
from mailtriage.store import MessageRecord, Store

log = logging.getLogger(__name__)

CLASSIFIED = "classified"
UNCLASSIFIED = "unclassified"
PENDING = "pending"
"""Routed: the decision is recorded, its changes on the server (draft, flags, move) are not all made yet."""
ROUTED = "routed"
NEEDS_HUMAN = "needs-human"
SKIPPED = "skipped"
FAILED = "failed"
NEEDS_HUMAN_KEYWORD = "$NeedsHuman"
DRAFT_FLAGS = ("\\Draft", "\\Seen")


def _no_classification(parsed: ParsedEmail) -> Classification | None:
    return None


@dataclass(frozen=True)
class Triage:
    """The stages after parsing, for customer mail: classify, route (None: record only), draft."""

    classify: Callable[[ParsedEmail], Classification | None] = _no_classification
    route: Callable[[ParsedEmail, Classification], RouteDecision] | None = None
    draft: Callable[[ParsedEmail, str, str, datetime, datetime | None], Draft] | None = None
    """(message, template, language, now, the message's due time) -> the draft; raises TemplateError."""
    notify: Callable[[str, str, str, datetime], None] | None = None
    """(to, subject, body, now): tell a team about a message; raises NotifyError."""


@dataclass(frozen=True)
class CycleOptions:
    own_addresses: frozenset[str] = frozenset()
    batch_size: int = 100
    max_per_cycle: int = 2000
    backfill_days: float | None = None
    """Mail that arrived this long before the mailbox's first sync is recorded but not triaged (None: all is)."""
    skip_before: datetime | None = None
    """Set by the cycle from ``backfill_days``."""
    deadlines: Policy | None = None
    """First-response deadlines for customer mail; None: no deadlines."""


@dataclass
class CycleReport:
    """What one cycle did for one mailbox: the summary line of ``run --once``."""

    mailbox: str
    new: int = 0
    skipped: int = 0
    failed: int = 0
    backlog: int = 0
    error: str | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    reasons: set[str] = field(default_factory=set, repr=False)
    """Why messages were left for a human this cycle: each is logged once, not once per message."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def count(self, status: str) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


no_stages = Triage()
"""Record customer mail without classifying it."""


def run_cycle(
    mailbox: Mailbox,
    store: Store,
    *,
    now: Callable[[], datetime],
    options: CycleOptions = CycleOptions(),
    should_stop: Callable[[], bool] = lambda: False,
    stages: Triage = no_stages,
) -> CycleReport:
    """Process what arrived in ``mailbox``'s inbox since the last cycle, each message exactly once.

    An idle cycle costs one round trip to the server (a NOOP on IMAP): UIDNEXT tells whether anything is new.
    Messages already recorded are known by their content hash (which covers the Message-ID), one query per batch:
    a changed UIDVALIDITY, a message moved back into the inbox or delivered twice is noted, never processed again.
    """
    report = CycleReport(mailbox.name)
    apply_pending(mailbox, store, stages, now, {}, report)  # what a crash left half done
    _intake(mailbox, store, now, options, should_stop, stages, report)
    return report


def _intake(
    mailbox: Mailbox,
    store: Store,
    now: Callable[[], datetime],
    options: CycleOptions,
    should_stop: Callable[[], bool],
    stages: Triage,
    report: CycleReport,
) -> bool:
    """The inbox's new messages, recorded, triaged and acted on; True if asked to stop."""
    folder = mailbox.inbox
    found = unread(mailbox, store, folder, now())
    if found.renumbered_from is not None:
        log.warning(
            "mailbox %s: %s UIDVALIDITY changed from %s to %s; matching its messages by Message-ID and content",
            mailbox.name, folder, found.renumbered_from, found.status.uidvalidity,
        )  # fmt: skip
        change = {"folder": folder, "old": found.renumbered_from, "new": found.status.uidvalidity}
        store.audit(mailbox.name, "uidvalidity-changed", change, now=now())
    if not found.uids:
        return False
    if options.backfill_days is not None:
        # Mail older than the backfill window before the mailbox's first sync is history, whenever it is read.
        started = store.first_recorded(mailbox.name) or now()
        options = replace(options, skip_before=started - timedelta(days=options.backfill_days))
    report.backlog = max(0, len(found.uids) - options.max_per_cycle)
    uids = found.uids[: options.max_per_cycle]
    for batch in batches(mailbox, folder, uids, options.batch_size, found.status.uidvalidity):
        parsed: dict[int, ParsedEmail] = {}
        with store.batch():  # a crash before its commit means the batch is read again, nothing more
            stopped = _process_batch(batch, mailbox.name, store, now, options, stages, should_stop, report, parsed)
        apply_pending(mailbox, store, stages, now, parsed, report)  # changes on the server, after the record
        if stopped:
            return True
    return False


def _process_batch(
    batch: list[RawMessage],
    mailbox: str,
    store: Store,
    now: Callable[[], datetime],
    options: CycleOptions,
    stages: Triage,
    should_stop: Callable[[], bool],
    report: CycleReport,
    parsed: dict[int, ParsedEmail],
) -> bool:
    """Record each message of a fetched batch, or note where it is if it is known; True if asked to stop."""
    hashes = [hash_content(raw.data, raw.whole_size) for raw in batch]
    known: dict[str, MessageRecord | None] = dict(store.known(mailbox, hashes))
    for raw, content_hash in zip(batch, hashes, strict=True):
        if content_hash in known:
            record = known[content_hash] or store.known(mailbox, [content_hash])[content_hash]
            _seen_again(record, raw, store, now(), report)
        else:
            parsed[raw.uid] = _process(raw, mailbox, store, now(), options, stages, report)
            known[content_hash] = None  # recorded just now: another copy in this batch is seen again
        if should_stop():
            log.info("mailbox %s: stopping after UID %s as asked", mailbox, raw.uid)
            return True
    return False


def _process(
    raw: RawMessage,
    mailbox: str,
    store: Store,
    now: datetime,
    options: CycleOptions,
    stages: Triage,
    report: CycleReport,
) -> ParsedEmail:
    """Parse, classify, route and record one new message; its changes on the server come after the record is
    committed. Mail that is not from a customer (auto-replies, bounces, bulk mail, our own) is recorded and never
    triaged."""
    parsed = parse_message(raw.data, internal_date=raw.internal_date, own_addresses=options.own_addresses,
                           whole_size=raw.whole_size)  # fmt: skip
    classification, decision, error = None, None, None
    before_start = options.skip_before is not None and (raw.internal_date or now) < options.skip_before
    if parsed.kind is not MessageKind.CUSTOMER or before_start:
        status = SKIPPED
    else:
        try:
            classification = stages.classify(parsed)
            if classification is not None and stages.route is not None:
                decision = stages.route(parsed, classification)
            status = _status(classification, decision)
        except Exception as exc:  # a failing stage must not stop the cycle; the message is kept for a human
            log.exception("mailbox %s: UID %s %s: triage failed", mailbox, raw.uid, parsed.message_id)
            status, error = FAILED, f"{type(exc).__name__}: {exc}"
    due_at, thread_of = None, None
    if status != SKIPPED and options.deadlines is not None:
        due_at, thread_of = _deadline(parsed, mailbox, store, options.deadlines, raw.internal_date or now, decision,
                                      classification)  # fmt: skip
    store.record(
        mailbox, raw, parsed, status=status, now=now, error=error, classification=classification, decision=decision,
        due_at=due_at, thread_of=thread_of,
    )  # fmt: skip
    if status == FAILED:
        report.failed += 1
    elif status == SKIPPED:
        report.skipped += 1
    else:
        report.new += 1
    report.count(status)
    decided = (
        f"{classification.category} ({classification.predicted} {classification.confidence:.2f}, "
        f"{classification.language})"
        if classification
        else status
    )
    if decision is not None:
        decided = f"{decision.category} by {decision.decided_by} ({decision.reason})"
    elif before_start:
        decided = "skipped: it arrived before the backfill window of the mailbox's first sync"
    log.info(
        "mailbox %s: UID %s %s from %s: %s; %s%s",
        mailbox, raw.uid, parsed.message_id, parsed.sender.email if parsed.sender else "(no sender)", decided,
        parsed.kind_reason, f"; {len(parsed.defects)} defects" if parsed.defects else "",
    )  # fmt: skip
    return parsed


def _deadline(
    parsed: ParsedEmail,
    mailbox: str,
    store: Store,
    policy: Policy,
    received: datetime,
    decision: RouteDecision | None,
    classification: Classification | None,
) -> tuple[datetime | None, int | None]:
    """A customer message's due time, or the open message it follows up on (whose clock it shares: writing again
    before an answer does not restart the clock)."""
    named = [m for m in (parsed.in_reply_to, *parsed.references) if m]
    waiting = store.open_thread(mailbox, named)
    if waiting is not None:
        return None, waiting.id
    category = decision.category if decision else classification.category if classification else None
    return policy.due(received, category), None


def _status(classification: Classification | None, decision: RouteDecision | None) -> str:
    if classification is None:
        return UNCLASSIFIED
    if decision is None or decision.untouched:
        return CLASSIFIED
    acts = decision.template or decision.keywords or decision.flag or decision.folder
    return PENDING if acts else ROUTED


# --- changes on the server ---------------------------------------------------------------------------------------


def apply_pending(
    mailbox: Mailbox,
    store: Store,
    stages: Triage,
    now: Callable[[], datetime],
    parsed: dict[int, ParsedEmail],
    report: CycleReport,
) -> None:
    """Make the recorded decisions true on the server: the draft, then flags and keywords, then the move.

    Every step is checked first or harmless to repeat (a draft is looked for by the content hash of the message it
    answers; flags are added; a message no longer in the inbox has been moved), so a crash anywhere and a restart
    do each step once. A template that fails or a folder the server refuses leaves the message in the inbox,
    flagged for a human, with the reason logged and audited; the cycle goes on. A lost connection stops here, and
    the next cycle carries on.
    """
    for record in store.with_status(mailbox.name, PENDING):
        decision = RouteDecision(
            **{**(record.route or {}), "keywords": tuple((record.route or {}).get("keywords", ()))}
        )
        message = parsed.get(record.uid) or _refetch(mailbox, record)
        try:
            if message is not None:
                _apply(mailbox, store, stages, record, decision, message, now())
            else:  # moved before a crash let the move be audited, or by someone else: the log says it all the same
                detail = {"from": record.folder, "route": decision.folder,
                          "move_begun": store.has_event(record.id, "move-begun")}  # fmt: skip
                store.audit(record.mailbox, "found-moved", detail, now=now(), message=record.id)
            store.set_status(record, ROUTED, now=now())
        except (TemplateError, MailboxError) as exc:
            if isinstance(exc, MailboxError) and exc.retryable:
                raise
            if str(exc) not in report.reasons:  # every message is audited; the log says each reason once a cycle
                report.reasons.add(str(exc))
                log.warning("mailbox %s: left in the inbox for a human, from UID %s %s on: %s",
                            record.mailbox, record.uid, record.message_id, exc)  # fmt: skip
            _flag_for_human(mailbox, record)
            store.set_status(record, NEEDS_HUMAN, now=now(), error=str(exc))
            report.count(NEEDS_HUMAN)


def _apply(
    mailbox: Mailbox,
    store: Store,
    stages: Triage,
    record: MessageRecord,
    decision: RouteDecision,
    message: ParsedEmail,
    now: datetime,
) -> None:
    if decision.template and stages.draft is not None:
        drafts = mailbox.special_folder("drafts") or "Drafts"
        # Drafts is searched only when an APPEND was begun before (a crash or a cut may have hidden whether it
        # landed): searching it before every draft cost more the fuller Drafts grew. By content, not Message-ID:
        # two different mails can share one, and each is owed its own draft.
        begun = store.has_event(record.id, "draft-appending")
        if begun and mailbox.find(drafts, ANSWERS_HASH_HEADER, answers_hash(record.content_hash)):
            store.audit(record.mailbox, "draft-exists", {"folder": drafts}, now=now, message=record.id)
        else:
            draft = stages.draft(message, decision.template, record.language or "unknown", now, record.due_at)
            store.audit(record.mailbox, "draft-appending", {"folder": drafts}, now=now, message=record.id)
            mailbox.append(drafts, draft.data, DRAFT_FLAGS)
            provenance = {"folder": drafts, "template": draft.template, "sha256": draft.sha256,
                          "approved_by": draft.approved_by, "approved_at": draft.approved_at, "to": list(draft.to),
                          **({"note": draft.note} if draft.note else {})}  # fmt: skip
            store.audit(record.mailbox, "draft-appended", provenance, now=now, message=record.id)
            if draft.note:
                log.info("mailbox %s: UID %s %s: %s", record.mailbox, record.uid, record.message_id, draft.note)
    flags = [*decision.keywords, *(["\\Flagged"] if decision.flag else [])]
    if flags:
        mailbox.add_flags(record.folder, record.uid, flags)
        store.audit(record.mailbox, "flags-added", {"flags": flags}, now=now, message=record.id)
    if decision.notify and stages.notify is not None and not store.has_event(record.id, "notified"):
        _notify(stages.notify, store, record, decision, message, now)
    if decision.folder:
        # Where the server has no MOVE, a move is a COPY and then an EXPUNGE of the original: a crash between the
        # two must not make a second copy, so a move begun before is resumed, not repeated.
        resume = store.has_event(record.id, "move-begun")
        if not resume:
            store.audit(record.mailbox, "move-begun", {"to": decision.folder}, now=now, message=record.id)
        if mailbox.move(record.folder, record.uid, decision.folder, resume=resume):
            store.audit(record.mailbox, "moved", {"to": decision.folder}, now=now, message=record.id)
        else:
            why = "the server can neither MOVE nor COPY and UID EXPUNGE one message (no UIDPLUS)"
            store.audit(record.mailbox, "not-moved", {"to": decision.folder, "why": why}, now=now, message=record.id)


def _notify(
    send: Callable[[str, str, str, datetime], None],
    store: Store,
    record: MessageRecord,
    decision: RouteDecision,
    message: ParsedEmail,
    now: datetime,
) -> None:
    """Tell the category's team; a notification that fails is logged and audited and never holds up triage."""
    assert decision.notify is not None
    sender = str(message.sender) if message.sender else "(no sender)"
    subject = f"[mailtriage] {decision.category}: {message.subject[:120]}"
    body = (
        f"New {decision.category} mail in {record.mailbox}, from {sender}:\n{message.subject}\n\n"
        f"Decided by {decision.decided_by} ({decision.reason}); "
        f"{'a draft is in Drafts' if decision.template else 'no draft'}."
    )
    try:
        send(decision.notify, subject, body, now)
    except NotifyError as exc:
        log.warning("mailbox %s: UID %s: %s", record.mailbox, record.uid, exc)
        store.audit(
            record.mailbox, "notify-failed", {"to": decision.notify, "error": str(exc)}, now=now, message=record.id
        )
        return
    store.audit(record.mailbox, "notified", {"to": decision.notify}, now=now, message=record.id)


def _refetch(mailbox: Mailbox, record: MessageRecord) -> ParsedEmail | None:
    """The message again, from where it was recorded; None when it is no longer there (moved before a crash)."""
    for raw in mailbox.fetch(record.folder, [record.uid]):
        return parse_message(raw.data, internal_date=raw.internal_date, whole_size=raw.whole_size)
    return None


def _flag_for_human(mailbox: Mailbox, record: MessageRecord) -> None:
    try:
        mailbox.add_flags(record.folder, record.uid, ["\\Flagged", NEEDS_HUMAN_KEYWORD])
    except MailboxError as exc:
        log.warning("mailbox %s: UID %s: could not flag it either: %s", record.mailbox, record.uid, exc)


def _seen_again(known: MessageRecord, raw: RawMessage, store: Store, now: datetime, report: CycleReport) -> None:
    """A message already processed (same Message-ID and content) at a new UID: note where it is, do nothing else."""
    moved = (known.folder, known.uidvalidity) != (raw.folder, raw.uidvalidity)
    reason = "folder renumbered (UIDVALIDITY changed)" if moved else "the same message again at a new UID"
    store.relocate(known, raw, reason=reason, now=now)
    report.skipped += 1
    report.count("already-recorded")
    log.info("mailbox %s: UID %s %s: already recorded (%s)", known.mailbox, raw.uid, known.message_id, reason)
