"""The changes on the server that make a recorded decision true: the draft, then flags and keywords, the team's
notification, then the move. Each is audited, and each is checked first or harmless to repeat, so a crash anywhere
and a restart do every step once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
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


@dataclass
class _Work:
    """A pending message in hand: its record, its decision, the message, and what was done, for its log line."""

    record: MessageRecord
    decision: RouteDecision
    message: ParsedEmail
    done: list[str] = field(default_factory=list)


class Actions:
    """Make one mailbox's pending decisions true on the server, a batch at a time: every draft in one MULTIAPPEND,
    each set of flags in one UID STORE, each destination in one UID MOVE, and what was done recorded in one
    transaction per step. Each step is audited as begun, in one commit, before the server is asked."""

    def __init__(self, mailbox: Mailbox, store: Store, stages: Triage, clock: Clock, report: CycleReport) -> None:
        self.mailbox, self.store, self.stages, self.clock, self.report = mailbox, store, stages, clock, report

    def apply_pending(self, parsed: Mapping[int, ParsedEmail]) -> None:
        """Every message routed but not yet acted on (``parsed``: those just read, by UID; the others are read
        again). A template that fails or a folder the server refuses leaves the message in the inbox, flagged for
        a human, with the reason logged and audited; the others go on. A lost connection stops here, and the
        next cycle carries on from what the audit log says was done."""
        work = []
        for record in self.store.messages.with_status(self.mailbox.name, Status.PENDING):
            assert record.route is not None  # a pending message was routed
            message = parsed.get(record.uid) or self._refetch(record)
            if message is not None:
                work.append(_Work(record, record.route, message))
            else:  # moved before a crash let the move be audited, or by someone else: the log says so all the same
                detail = {"from": record.folder, "route": record.route.folder,
                          "move_begun": self.store.audit.has(record.id, "move-begun")}  # fmt: skip
                self._audit(record, "found-moved", detail)
                self.store.messages.set_status(record, Status.ROUTED, now=self.clock())
        for step in (self._drafts, self._flags, self._notifications, self._moves):
            work = step(work)
        with self.store.batch():
            for item in work:
                self.store.messages.set_status(item.record, Status.ROUTED, now=self.clock())
        for item in work:
            self._said(item.record, ", ".join(item.done) or "nothing to do")

    # --- drafts ----------------------------------------------------------------------------------------------------

    def _drafts(self, work: list[_Work]) -> list[_Work]:
        """Append each reply draft, once. Drafts is searched only for a draft whose APPEND was begun before (a
        crash or a cut may have hidden whether it landed): searching it before every draft cost more the fuller
        Drafts grew. By content, not Message-ID: two different mails can share one, and each is owed its own."""
        draft_stage = self.stages.draft
        if draft_stage is None:
            return work
        folder = self.mailbox.special_folder("drafts") or "Drafts"
        failed: set[int] = set()
        fresh: list[tuple[_Work, Draft]] = []
        drafting = [item for item in work if item.decision.template]
        begun = self.store.audit.having([item.record.id for item in drafting], "draft-appending")
        for item in drafting:
            record = item.record
            try:
                if record.id in begun:
                    self._draft_again(item, folder)
                    continue
                assert item.decision.template is not None
                language = record.language or "unknown"
                draft = draft_stage(item.message, item.decision.template, language, self.clock(), record.due_at)
            except (TemplateError, MailboxError) as exc:
                self._failed(item, exc, failed)
                continue
            fresh.append((item, draft))
        if fresh:
            self._append(fresh, folder, failed)
        return [item for item in work if item.record.id not in failed]

    def _append(self, fresh: list[tuple[_Work, Draft]], folder: str, failed: set[int]) -> None:
        """New drafts, in one request: audited as begun in one commit first, as appended in one after."""
        with self.store.batch():  # committed before the APPEND: after a crash, Drafts is looked in first
            for item, _ in fresh:
                self._audit(item.record, "draft-appending", {"folder": folder})
        try:
            self.mailbox.append_many(folder, [draft.data for _, draft in fresh], DRAFT_FLAGS)
        except MailboxError as exc:
            if exc.retryable:
                raise
            for item, _ in fresh:  # one at a time, to find which the server refuses; none is made twice
                try:
                    self._draft_again(item, folder)
                except (TemplateError, MailboxError) as one:
                    self._failed(item, one, failed)
            return
        with self.store.batch():
            for item, draft in fresh:
                self._appended(item, folder, draft)

    def _draft_again(self, item: _Work, folder: str) -> None:
        """The draft of a message whose APPEND was begun before: found in Drafts, else appended now."""
        record = item.record
        assert self.stages.draft is not None and item.decision.template is not None
        if self.mailbox.find(folder, ANSWERS_HASH_HEADER, answers_hash(record.content_hash)):
            self._audit(record, "draft-exists", {"folder": folder})
            item.done.append("draft written (found in Drafts after a restart)")
            return
        draft = self.stages.draft(item.message, item.decision.template, record.language or "unknown", self.clock(),
                                  record.due_at)  # fmt: skip
        self._audit(record, "draft-appending", {"folder": folder})
        self.mailbox.append(folder, draft.data, DRAFT_FLAGS)
        self._appended(item, folder, draft)

    def _appended(self, item: _Work, folder: str, draft: Draft) -> None:
        provenance = {"folder": folder, "template": draft.template, "sha256": draft.sha256,
                      "approved_by": draft.approved_by, "approved_at": draft.approved_at, "to": list(draft.to),
                      "text": draft.text, **({"note": draft.note} if draft.note else {})}  # fmt: skip
        self._audit(item.record, "draft-appended", provenance)
        item.done.append("draft written" + (f" ({draft.note})" if draft.note else ""))

    # --- flags, notifications, moves -------------------------------------------------------------------------------

    def _flags(self, work: list[_Work]) -> list[_Work]:
        """Flags and keywords: one request for every message of a folder that gets the same ones."""
        groups: dict[tuple[str, tuple[str, ...]], list[_Work]] = {}
        for item in work:
            flags = (*item.decision.keywords, *(["\\Flagged"] if item.decision.flag else []))
            if flags:
                groups.setdefault((item.record.folder, flags), []).append(item)
        failed: set[int] = set()
        for (folder, flags), items in groups.items():
            try:
                self.mailbox.add_flags(folder, [item.record.uid for item in items], flags)
            except MailboxError as exc:
                if exc.retryable:
                    raise
                items = self._one_by_one(items, partial(self._flag_one, folder=folder, flags=flags), failed)
            with self.store.batch():
                for item in items:
                    self._audit(item.record, "flags-added", {"flags": list(flags)})
                    item.done.append(f"flagged {' '.join(flags)}")
        return [item for item in work if item.record.id not in failed]

    def _notifications(self, work: list[_Work]) -> list[_Work]:
        send = self.stages.notify
        telling = [item for item in work if item.decision.notify and send is not None]
        told = self.store.audit.having([item.record.id for item in telling], "notified")
        for item in telling:
            if item.record.id not in told:
                assert send is not None
                self._notify(send, item)
        return work

    def _moves(self, work: list[_Work]) -> list[_Work]:
        """Moves to the categories' folders: one request per destination. Where the server has no MOVE, a move is
        a COPY and then an EXPUNGE of the originals: a crash between the two must not make a second copy, so a
        move begun before is resumed, one message at a time, not repeated."""
        groups: dict[tuple[str, str], list[_Work]] = {}
        for item in work:
            if item.decision.folder:
                groups.setdefault((item.record.folder, item.decision.folder), []).append(item)
        failed: set[int] = set()
        begun = self.store.audit.having([item.record.id for items in groups.values() for item in items], "move-begun")
        for (folder, destination), items in groups.items():
            resumed = [item for item in items if item.record.id in begun]
            fresh = [item for item in items if item not in resumed]
            with self.store.batch():  # committed before the move: after a crash, the move is resumed
                for item in fresh:
                    self._audit(item.record, "move-begun", {"to": destination})
            moved = True
            try:
                moved = self.mailbox.move_many(folder, [item.record.uid for item in fresh], destination)
            except MailboxError as exc:
                if exc.retryable:
                    raise
                resumed, fresh = items, []
            self._one_by_one(resumed, partial(self._move_one, folder=folder, destination=destination), failed)
            with self.store.batch():
                for item in fresh:
                    self._moved(item, destination, moved)
        return [item for item in work if item.record.id not in failed]

    def _flag_one(self, item: _Work, *, folder: str, flags: tuple[str, ...]) -> None:
        self.mailbox.add_flags(folder, [item.record.uid], flags)

    def _move_one(self, item: _Work, *, folder: str, destination: str) -> None:
        """Move one message whose move was begun before: a copy it may have left is not made again."""
        self._moved(item, destination, self.mailbox.move(folder, item.record.uid, destination, resume=True))

    def _moved(self, item: _Work, destination: str, moved: bool) -> None:
        if moved:
            self._audit(item.record, "moved", {"to": destination})
            item.done.insert(0, f"→ {destination}")
        else:
            self._audit(item.record, "not-moved", {"to": destination, "why": NOT_MOVED})
            item.done.insert(0, f"kept in {item.record.folder} ({NOT_MOVED})")

    def _one_by_one(self, items: list[_Work], act: Callable[[_Work], object], failed: set[int]) -> list[_Work]:
        """``act`` on each message alone, after a request for all of them was refused: the ones it succeeds for;
        the others are left for a human (a lost connection still stops the cycle)."""
        done = []
        for item in items:
            try:
                act(item)
            except MailboxError as exc:
                self._failed(item, exc, failed)
            else:
                done.append(item)
        return done

    def _failed(self, item: _Work, exc: TemplateError | MailboxError, failed: set[int]) -> None:
        if isinstance(exc, MailboxError) and exc.retryable:
            raise exc
        failed.add(item.record.id)
        self._leave_for_human(item.record, exc)

    def _notify(self, send: Callable[[str, str, str, datetime], None], item: _Work) -> None:
        """Tell the category's team; a notification that fails is logged and audited and never holds up triage."""
        record, decision, message = item.record, item.decision, item.message
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
        item.done.append(f"{decision.notify} told")

    def _leave_for_human(self, record: MessageRecord, exc: Exception) -> None:
        if str(exc) not in self.report.reasons:  # every message is audited; the log says each reason once a cycle
            self.report.reasons.add(str(exc))
            log.warning("mailbox %s: left in the inbox for a human, from UID %s %s on: %s",
                        record.mailbox, record.uid, record.message_id, exc)  # fmt: skip
        try:
            self.mailbox.add_flags(record.folder, [record.uid], ["\\Flagged", NEEDS_HUMAN_KEYWORD])
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
