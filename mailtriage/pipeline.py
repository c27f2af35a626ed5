"""One poll cycle, top to bottom: what is new in the inbox is fetched, parsed, decided on, recorded, then acted on.

``run_cycle`` is the unit of work: the scheduler calls it, ``mailtriage run --once`` calls it, tests call it. It
takes its collaborators as arguments and does no I/O of its own; the changes on the server are ``actions``'.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from mailtriage import logline
from mailtriage.actions import Actions, Triage, one_by_one
from mailtriage.cursor import batches, unread
from mailtriage.deadlines import Policy
from mailtriage.mailbox import Mailbox
from mailtriage.models import Classification, Clock, MessageKind, ParsedEmail, RawMessage, RouteDecision
from mailtriage.parse import hash_content, parse_message
from mailtriage.store import MessageRecord, Outcome, Status, Store

log = logging.getLogger(__name__)

__all__ = ["Control", "CycleOptions", "CycleReport", "Triage", "no_stages", "one_by_one", "run_cycle"]


@dataclass(frozen=True)
class CycleOptions:
    own_addresses: frozenset[str] = frozenset()
    batch_size: int = 100
    max_per_cycle: int = 2000
    backfill_days: float | None = None
    """Mail that arrived this long before the mailbox's first sync is recorded but not triaged (None: all is)."""
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
    held_by: str | None = None
    """Not read: the daemon named here holds the mailbox's lease (``run --once`` beside a running daemon)."""
    statuses: dict[str, int] = field(default_factory=dict)
    reasons: set[str] = field(default_factory=set, repr=False)
    """Why messages were left for a human this cycle: each is logged once, not once per message."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def count(self, status: str) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


@dataclass(frozen=True)
class Control:
    """How whoever runs a cycle steers it."""

    should_stop: Callable[[], bool] = lambda: False
    """Asked after each message: True ends the cycle after it (shutting down)."""
    fence: Callable[[], None] = lambda: None
    """Called inside each batch's transaction, before it commits: raises (LeaseLost) when another daemon may be
    working the mailbox, and the batch is not recorded."""


no_stages = Triage()
"""Record customer mail without classifying it."""


def run_cycle(
    mailbox: Mailbox,
    store: Store,
    *,
    now: Clock,
    options: CycleOptions = CycleOptions(),
    stages: Triage = no_stages,
    control: Control = Control(),
) -> CycleReport:
    """Process what arrived in ``mailbox``'s inbox since the last cycle, each message exactly once.

    An idle cycle costs one round trip to the server (a NOOP on IMAP): UIDNEXT tells whether anything is new.
    Messages already recorded are known by their content hash (which covers the Message-ID), one query per batch:
    a changed UIDVALIDITY, a message moved back into the inbox or delivered twice is noted, never processed again.
    """
    return Cycle(mailbox, store, now, options, stages, control).run()


class Cycle:
    """One cycle of one mailbox: its collaborators, and what it has done so far (``report``)."""

    def __init__(
        self,
        mailbox: Mailbox,
        store: Store,
        clock: Clock,
        options: CycleOptions,
        stages: Triage,
        control: Control,
    ) -> None:
        self.mailbox, self.store, self.clock = mailbox, store, clock
        self.options, self.stages, self.control = options, stages, control
        self.report = CycleReport(mailbox.name)
        self.actions = Actions(mailbox, store, stages, clock, self.report)
        self.skip_before: datetime | None = None
        """Mail that arrived before this is history (``backfill_days`` before the mailbox's first sync)."""

    def run(self) -> CycleReport:
        self.actions.apply_pending({})  # what a crash left half done
        self._intake()
        return self.report

    def _intake(self) -> None:
        """The inbox's new messages, recorded, then acted on, a fetched batch at a time."""
        folder, name = self.mailbox.inbox, self.mailbox.name
        found = unread(self.mailbox, self.store, folder, self.clock())
        if found.renumbered_from is not None:
            log.warning("mailbox %s: %s UIDVALIDITY changed from %s to %s; matching its messages by Message-ID and "
                        "content", name, folder, found.renumbered_from, found.status.uidvalidity)  # fmt: skip
            change = {"folder": folder, "old": found.renumbered_from, "new": found.status.uidvalidity}
            self.store.audit.add(name, "uidvalidity-changed", change, now=self.clock())
        if not found.uids:
            return
        if self.options.backfill_days is not None:
            started = self.store.messages.first_recorded(name) or self.clock()
            self.skip_before = started - timedelta(days=self.options.backfill_days)
        self.report.backlog = max(0, len(found.uids) - self.options.max_per_cycle)
        uids = found.uids[: self.options.max_per_cycle]
        for batch in batches(self.mailbox, folder, uids, self.options.batch_size, found.status.uidvalidity):
            with self.store.batch():  # a crash before its commit means the batch is read again, nothing more
                parsed, stopped = self._record_batch(batch)
                self.control.fence()
            self.actions.apply_pending(parsed)  # changes on the server, after the record
            if stopped:
                return

    def _record_batch(self, batch: list[RawMessage]) -> tuple[dict[int, ParsedEmail], bool]:
        """Record each message of a fetched batch, or note where it is if it is known: the new ones parsed by UID,
        and whether the cycle was asked to stop. The batch's customer messages are classified in one call."""
        name = self.mailbox.name
        hashes = [hash_content(raw.data, raw.whole_size) for raw in batch]
        known: dict[str, MessageRecord | None] = dict(self.store.messages.known(name, hashes))
        new: list[tuple[RawMessage, ParsedEmail]] = []
        copies: list[tuple[RawMessage, str]] = []  # of a message new in this batch: seen again once it is recorded
        stopped = False
        for raw, content_hash in zip(batch, hashes, strict=True):
            if content_hash not in known:
                new.append((raw, self._parse(raw)))
                known[content_hash] = None
            elif (record := known[content_hash]) is not None:
                self._seen_again(record, raw)
            else:
                copies.append((raw, content_hash))
            if self.control.should_stop():
                log.info("mailbox %s: stopping after UID %s as asked", name, raw.uid)
                stopped = True
                break
        classified = self._classify([(raw, parsed) for raw, parsed in new if self._triaged(raw, parsed)])
        for raw, parsed in new:
            self._record(raw, parsed, classified.get(raw.uid))
        for raw, content_hash in copies:
            self._seen_again(self.store.messages.known(name, [content_hash])[content_hash], raw)
        return {raw.uid: parsed for raw, parsed in new}, stopped

    def _parse(self, raw: RawMessage) -> ParsedEmail:
        return parse_message(raw.data, internal_date=raw.internal_date, own_addresses=self.options.own_addresses,
                             whole_size=raw.whole_size)  # fmt: skip

    def _triaged(self, raw: RawMessage, parsed: ParsedEmail) -> bool:
        """Whether a new message is triaged: customer mail, unless it is history before the backfill window."""
        return parsed.kind is MessageKind.CUSTOMER and not self._history(raw)

    def _history(self, raw: RawMessage) -> bool:
        return self.skip_before is not None and (raw.internal_date or self.clock()) < self.skip_before

    def _classify(self, messages: list[tuple[RawMessage, ParsedEmail]]) -> dict[int, Classification | Exception | None]:
        """The classification of each message by UID, the batch in one call; when that call fails, each message
        alone, so that only the one the stage fails on is left for a human."""
        if not messages:
            return {}
        try:
            classifications = self.stages.classify([parsed for _, parsed in messages])
            return dict(zip([raw.uid for raw, _ in messages], classifications, strict=True))
        except Exception:  # which message it was is found below, one at a time
            pass
        classified: dict[int, Classification | Exception | None] = {}
        for raw, parsed in messages:
            try:
                classified[raw.uid] = self.stages.classify([parsed])[0]
            except Exception as exc:  # a failing stage must not stop the cycle; the message is kept for a human
                log.exception("mailbox %s: UID %s %s: triage failed", self.mailbox.name, raw.uid, parsed.message_id)
                classified[raw.uid] = exc
        return classified

    def _record(self, raw: RawMessage, parsed: ParsedEmail, classified: Classification | Exception | None) -> None:
        """Decide on and record one new message; its changes on the server come after the record is committed."""
        now = self.clock()
        outcome = self._decide(raw, parsed, classified, now)
        self.store.messages.record(self.mailbox.name, raw, parsed, outcome, now)
        counted = {Status.FAILED: "failed", Status.SKIPPED: "skipped"}.get(outcome.status, "new")
        setattr(self.report, counted, getattr(self.report, counted) + 1)
        self.report.count(outcome.status)
        line = logline.who(self.mailbox.name, raw.uid, logline.sender_of(parsed), parsed.subject)
        defects = f" ({len(parsed.defects)} defects recorded)" if parsed.defects else ""
        if outcome.status is Status.PENDING:  # the line comes once it is done (actions), saying what was done
            log.debug("%s: %s, to be acted on%s", line, logline.of_decision(outcome.classification, outcome.decision),
                      defects)  # fmt: skip
        else:
            log.info("%s: %s%s", line, _decided(outcome, parsed), defects)

    def _decide(
        self, raw: RawMessage, parsed: ParsedEmail, classified: Classification | Exception | None, now: datetime
    ) -> Outcome:
        """What becomes of a message: mail not from a customer (auto-replies, bounces, bulk mail, our own) and
        history before the backfill window are recorded and never triaged; a stage that fails leaves the message
        for a human, and the cycle goes on."""
        if self._history(raw):
            return Outcome(Status.SKIPPED, note="it arrived before the backfill window of the mailbox's first sync")
        if parsed.kind is not MessageKind.CUSTOMER:
            return Outcome(Status.SKIPPED)
        if isinstance(classified, Exception):
            failed = Outcome(Status.FAILED, error=_failure(classified))
            return self._with_deadline(failed, parsed, raw.internal_date or now)
        decision = None
        try:
            if classified is not None and self.stages.route is not None:
                decision = self.stages.route(parsed, classified)
        except Exception as exc:  # a failing stage must not stop the cycle; the message is kept for a human
            log.exception("mailbox %s: UID %s %s: triage failed", self.mailbox.name, raw.uid, parsed.message_id)
            outcome = Outcome(Status.FAILED, classified, decision, _failure(exc))
        else:
            outcome = Outcome(_status(classified, decision), classified, decision)
        return self._with_deadline(outcome, parsed, raw.internal_date or now)

    def _with_deadline(self, outcome: Outcome, parsed: ParsedEmail, received: datetime) -> Outcome:
        """A customer message's due time, or the open message it follows up on (whose clock it shares: writing
        again before an answer does not restart the clock)."""
        policy = self.options.deadlines
        if policy is None:
            return outcome
        named = [m for m in (parsed.in_reply_to, *parsed.references) if m]
        waiting = self.store.messages.open_thread(self.mailbox.name, named)
        if waiting is not None:
            return replace(outcome, thread_of=waiting.id)
        category = _category(outcome.classification, outcome.decision)
        return replace(outcome, due_at=policy.due(received, category))

    def _seen_again(self, known: MessageRecord, raw: RawMessage) -> None:
        """A message already processed (same Message-ID and content) at a new UID: note where it is, do nothing
        else."""
        moved = (known.folder, known.uidvalidity) != (raw.folder, raw.uidvalidity)
        reason = "folder renumbered (UIDVALIDITY changed)" if moved else "the same message again at a new UID"
        self.store.messages.seen_again(known, raw, reason=reason, now=self.clock())
        self.report.skipped += 1
        self.report.count("already-recorded")
        log.info("mailbox %s: UID %s %s: already recorded (%s)", known.mailbox, raw.uid, known.message_id, reason)


def _failure(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def _status(classification: Classification | None, decision: RouteDecision | None) -> Status:
    if classification is None:
        return Status.UNCLASSIFIED
    if decision is None or decision.untouched:
        return Status.CLASSIFIED
    acts = decision.template or decision.keywords or decision.flag or decision.folder
    return Status.PENDING if acts else Status.ROUTED


def _category(classification: Classification | None, decision: RouteDecision | None) -> str | None:
    return decision.category if decision else classification.category if classification else None


def _decided(outcome: Outcome, parsed: ParsedEmail) -> str:
    """What the log line says of a message that is not acted on."""
    if outcome.status is Status.SKIPPED:
        why = outcome.note or f"{parsed.kind.value}: {parsed.kind_reason}"
        return f"skipped, {why}"
    decided = logline.of_decision(outcome.classification, outcome.decision)
    if outcome.status is Status.FAILED:
        return f"left for a human: {outcome.error}"
    if outcome.status is Status.ROUTED:
        return f"{decided}, nothing to do"
    return f"{decided}, left as it is" if outcome.decision else decided
