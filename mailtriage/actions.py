"""The changes on the server that make a recorded decision true: the draft, then flags and keywords, the team's
notification, then the move. Each is audited, and each is checked first or harmless to repeat, so a crash anywhere
and a restart do every step once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mailtriage import logline
from mailtriage.draft import ANSWERS_HASH_HEADER, Draft, answers_hash
from mailtriage.errors import MailboxError, NotifyError, TemplateError
from mailtriage.mailbox import Mailbox
from mailtriage.models import Classification, Clock, ParsedEmail, RouteDecision
from mailtriage.parse import parse_message
from mailtriage.store import MessageRecord, Status, Store

if TYPE_CHECKING:
    from mailtriage.pipeline import CycleReport

log = logging.getLogger(__name__)

NEEDS_HUMAN_KEYWORD = "$NeedsHuman"
DRAFT_FLAGS = ("\\Draft", "\\Seen")
NOT_MOVED = "the server can neither MOVE nor COPY and UID EXPUNGE one message (no UIDPLUS)"


def _no_classification(messages: Sequence[ParsedEmail]) -> list[Classification | None]:
    return [None] * len(messages)


def one_by_one(
    classify: Callable[[ParsedEmail], Classification | None],
) -> Callable[[Sequence[ParsedEmail]], list[Classification | None]]:
    """A classify stage for a batch from a function of one message."""

    def each(messages: Sequence[ParsedEmail]) -> list[Classification | None]:
        return [classify(parsed) for parsed in messages]

    return each


@dataclass(frozen=True)
class Triage:
    """The stages after parsing, for customer mail: classify, route (None: record only), draft, notify."""

    classify: Callable[[Sequence[ParsedEmail]], Sequence[Classification | None]] = _no_classification
    """A fetched batch's customer messages -> the classification of each, in order (one model call a batch)."""
    route: Callable[[ParsedEmail, Classification], RouteDecision] | None = None
    draft: Callable[[ParsedEmail, str, str, datetime, datetime | None], Draft] | None = None
    """(message, template, language, now, the message's due time) -> the draft; raises TemplateError."""
    notify: Callable[[str, str, str, datetime], None] | None = None
    """(to, subject, body, now): tell a team about a message; raises NotifyError."""


class Actions:
    """Make one mailbox's pending decisions true on the server."""

    def __init__(self, mailbox: Mailbox, store: Store, stages: Triage, clock: Clock, report: CycleReport) -> None:
        self.mailbox, self.store, self.stages, self.clock, self.report = mailbox, store, stages, clock, report
        self._done: list[str] = []
        """What was done for the message in hand, for its log line."""

    def apply_pending(self, parsed: Mapping[int, ParsedEmail]) -> None:
        """Every message routed but not yet acted on (``parsed``: those just read, by UID; the others are read
        again). A template that fails or a folder the server refuses leaves the message in the inbox, flagged for
        a human, with the reason logged and audited; the cycle goes on. A lost connection stops here, and the next
        cycle carries on."""
        for record in self.store.messages.with_status(self.mailbox.name, Status.PENDING):
            assert record.route is not None  # a pending message was routed
            message = parsed.get(record.uid) or self._refetch(record)
            self._done = []
            try:
                if message is not None:
                    self._apply(record, record.route, message)
                    self._said(record, ", ".join(self._done) or "nothing to do")
                else:  # moved before a crash let the move be audited, or by someone else: the log says so all the same
                    detail = {"from": record.folder, "route": record.route.folder,
                              "move_begun": self.store.audit.has(record.id, "move-begun")}  # fmt: skip
                    self._audit(record, "found-moved", detail)
                self.store.messages.set_status(record, Status.ROUTED, now=self.clock())
            except (TemplateError, MailboxError) as exc:
                if isinstance(exc, MailboxError) and exc.retryable:
                    raise
                self._leave_for_human(record, exc)

    def _apply(self, record: MessageRecord, decision: RouteDecision, message: ParsedEmail) -> None:
        if decision.template and self.stages.draft is not None:
            self._draft(record, decision.template, message)
        flags = [*decision.keywords, *(["\\Flagged"] if decision.flag else [])]
        if flags:
            self.mailbox.add_flags(record.folder, record.uid, flags)
            self._audit(record, "flags-added", {"flags": flags})
            self._done.append(f"flagged {' '.join(flags)}")
        if decision.notify and self.stages.notify is not None and not self.store.audit.has(record.id, "notified"):
            self._notify(self.stages.notify, record, decision, message)
        if decision.folder:
            self._move(record, decision.folder)

    def _draft(self, record: MessageRecord, template: str, message: ParsedEmail) -> None:
        """Append the reply draft, once. Drafts is searched only when an APPEND was begun before (a crash or a cut
        may have hidden whether it landed): searching it before every draft cost more the fuller Drafts grew. By
        content, not Message-ID: two different mails can share one, and each is owed its own draft."""
        assert self.stages.draft is not None
        drafts = self.mailbox.special_folder("drafts") or "Drafts"
        begun = self.store.audit.has(record.id, "draft-appending")
        if begun and self.mailbox.find(drafts, ANSWERS_HASH_HEADER, answers_hash(record.content_hash)):
            self._audit(record, "draft-exists", {"folder": drafts})
            self._done.append("draft written (found in Drafts after a restart)")
            return
        draft = self.stages.draft(message, template, record.language or "unknown", self.clock(), record.due_at)
        self._audit(record, "draft-appending", {"folder": drafts})
        self.mailbox.append(drafts, draft.data, DRAFT_FLAGS)
        provenance = {"folder": drafts, "template": draft.template, "sha256": draft.sha256,
                      "approved_by": draft.approved_by, "approved_at": draft.approved_at, "to": list(draft.to),
                      "text": draft.text, **({"note": draft.note} if draft.note else {})}  # fmt: skip
        self._audit(record, "draft-appended", provenance)
        self._done.append("draft written" + (f" ({draft.note})" if draft.note else ""))

    def _move(self, record: MessageRecord, folder: str) -> None:
        """Move the message to its category's folder. Where the server has no MOVE, a move is a COPY and then an
        EXPUNGE of the original: a crash between the two must not make a second copy, so a move begun before is
        resumed, not repeated."""
        resume = self.store.audit.has(record.id, "move-begun")
        if not resume:
            self._audit(record, "move-begun", {"to": folder})
        if self.mailbox.move(record.folder, record.uid, folder, resume=resume):
            self._audit(record, "moved", {"to": folder})
            self._done.insert(0, f"→ {folder}")
        else:
            self._audit(record, "not-moved", {"to": folder, "why": NOT_MOVED})
            self._done.insert(0, f"kept in {record.folder} ({NOT_MOVED})")

    def _notify(
        self, send: Callable[[str, str, str, datetime], None], record: MessageRecord, decision: RouteDecision,
        message: ParsedEmail,
    ) -> None:  # fmt: skip
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
            send(decision.notify, subject, body, self.clock())
        except NotifyError as exc:
            log.warning("mailbox %s: UID %s: %s", record.mailbox, record.uid, exc)
            self._audit(record, "notify-failed", {"to": decision.notify, "error": str(exc)})
            return
        self._audit(record, "notified", {"to": decision.notify})
        self._done.append(f"{decision.notify} told")

    def _leave_for_human(self, record: MessageRecord, exc: Exception) -> None:
        if str(exc) not in self.report.reasons:  # every message is audited; the log says each reason once a cycle
            self.report.reasons.add(str(exc))
            log.warning("mailbox %s: left in the inbox for a human, from UID %s %s on: %s",
                        record.mailbox, record.uid, record.message_id, exc)  # fmt: skip
        try:
            self.mailbox.add_flags(record.folder, record.uid, ["\\Flagged", NEEDS_HUMAN_KEYWORD])
        except MailboxError as flagging:
            log.warning("mailbox %s: UID %s: could not flag it either: %s", record.mailbox, record.uid, flagging)
        self.store.messages.set_status(record, Status.NEEDS_HUMAN, now=self.clock(), error=str(exc))
        self.report.count(Status.NEEDS_HUMAN)
        self._said(record, f"left for a human (flagged {NEEDS_HUMAN_KEYWORD}): {exc}")

    def _said(self, record: MessageRecord, done: str) -> None:
        """The message's one line: who wrote what, what was decided, what was done."""
        decided = logline.decided(record.category, record.decided_by, record.confidence)
        log.info("%s: %s %s", logline.who(record.mailbox, record.uid, record.sender, record.subject), decided,
                 done if done.startswith("→") else f"→ {done}")  # fmt: skip

    def _refetch(self, record: MessageRecord) -> ParsedEmail | None:
        """The message again, from where it was recorded; None when it is no longer there (moved before a
        crash)."""
        for raw in self.mailbox.fetch(record.folder, [record.uid]):
            return parse_message(raw.data, internal_date=raw.internal_date, whole_size=raw.whole_size)
        return None

    def _audit(self, record: MessageRecord, action: str, detail: dict[str, Any]) -> None:
        self.store.audit.add(record.mailbox, action, detail, now=self.clock(), message=record.id)
