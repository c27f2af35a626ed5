"""One poll cycle, top to bottom: what is new in the inbox is fetched, parsed, recorded and handed to the stages.

``run_cycle`` is the unit of work: the scheduler calls it, ``mailtriage run --once`` calls it, tests call it. It
takes its collaborators as arguments and does no I/O of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from mailtriage.mailbox import Mailbox
from mailtriage.models import Classification, MessageKind, ParsedEmail, RawMessage
from mailtriage.parse import hash_content, parse_message
from mailtriage.store import MessageRecord, Store, SyncState

log = logging.getLogger(__name__)

CLASSIFIED = "classified"
UNCLASSIFIED = "unclassified"
SKIPPED = "skipped"
FAILED = "failed"

Stages = Callable[[ParsedEmail], Classification | None]
"""What happens to customer mail after parsing: for now, classification (None when no model is used)."""


@dataclass(frozen=True)
class CycleOptions:
    own_addresses: frozenset[str] = frozenset()
    batch_size: int = 100
    max_per_cycle: int = 2000


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

    @property
    def ok(self) -> bool:
        return self.error is None

    def count(self, status: str) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


def no_stages(parsed: ParsedEmail) -> Classification | None:
    """Record customer mail without classifying it."""
    return None


def run_cycle(
    mailbox: Mailbox,
    store: Store,
    *,
    now: Callable[[], datetime],
    options: CycleOptions = CycleOptions(),
    should_stop: Callable[[], bool] = lambda: False,
    stages: Stages = no_stages,
) -> CycleReport:
    """Process what arrived in ``mailbox``'s inbox since the last cycle, each message exactly once.

    An idle cycle costs one round trip to the server (a NOOP on IMAP): UIDNEXT tells whether anything is new.
    Messages already recorded are known by their content hash (which covers the Message-ID), one query per batch:
    a changed UIDVALIDITY, a message moved back into the inbox or delivered twice is noted, never processed again.
    """
    report = CycleReport(mailbox.name)
    folder = mailbox.inbox
    status = mailbox.status(folder)
    state = store.sync_state(mailbox.name, folder)
    if state is not None and state.uidvalidity != status.uidvalidity:
        log.warning(
            "mailbox %s: %s UIDVALIDITY changed from %s to %s; matching its messages by Message-ID and content",
            mailbox.name, folder, state.uidvalidity, status.uidvalidity,
        )  # fmt: skip
        change = {"folder": folder, "old": state.uidvalidity, "new": status.uidvalidity}
        store.audit(mailbox.name, "uidvalidity-changed", change, now=now())
        state = None
    last_uid = state.last_uid if state is not None else 0
    if status.uidnext <= last_uid + 1:
        return report
    uids = mailbox.uids_above(folder, last_uid)
    if not uids:
        store.set_sync_state(mailbox.name, folder, SyncState(status.uidvalidity, status.uidnext - 1), now())
        return report
    report.backlog = max(0, len(uids) - options.max_per_cycle)
    for batch in _batches(mailbox, folder, uids[: options.max_per_cycle], options.batch_size):
        with store.batch():  # a crash before its commit means the batch is read again, nothing more
            stopped = _process_batch(batch, mailbox.name, store, now, options, stages, should_stop, report)
        if stopped:
            break
    return report


def _process_batch(
    batch: list[RawMessage],
    mailbox: str,
    store: Store,
    now: Callable[[], datetime],
    options: CycleOptions,
    stages: Stages,
    should_stop: Callable[[], bool],
    report: CycleReport,
) -> bool:
    """Record each message of a fetched batch, or note where it is if it is known; True if asked to stop."""
    hashes = [hash_content(raw.data) for raw in batch]
    known: dict[str, MessageRecord | None] = dict(store.known(mailbox, hashes))
    for raw, content_hash in zip(batch, hashes, strict=True):
        if content_hash in known:
            record = known[content_hash] or store.known(mailbox, [content_hash])[content_hash]
            _seen_again(record, raw, store, now(), report)
        else:
            _process(raw, mailbox, store, now(), options, stages, report)
            known[content_hash] = None  # recorded just now: another copy in this batch is seen again
        if should_stop():
            log.info("mailbox %s: stopping after UID %s as asked", mailbox, raw.uid)
            return True
    return False


def _batches(mailbox: Mailbox, folder: str, uids: list[int], batch_size: int) -> Iterator[list[RawMessage]]:
    for start in range(0, len(uids), batch_size):
        yield list(mailbox.fetch(folder, uids[start : start + batch_size]))


def _process(
    raw: RawMessage,
    mailbox: str,
    store: Store,
    now: datetime,
    options: CycleOptions,
    stages: Stages,
    report: CycleReport,
) -> None:
    """Parse, triage and record one new message. Mail that is not from a customer (auto-replies, bounces, bulk
    mail, our own) is recorded and never triaged."""
    parsed = parse_message(raw.data, internal_date=raw.internal_date, own_addresses=options.own_addresses)
    classification, error = None, None
    if parsed.kind is not MessageKind.CUSTOMER:
        status = SKIPPED
    else:
        try:
            classification = stages(parsed)
            status = UNCLASSIFIED if classification is None else CLASSIFIED
        except Exception as exc:  # a failing stage must not stop the cycle; the message is kept for a human
            log.exception("mailbox %s: UID %s %s: triage failed", mailbox, raw.uid, parsed.message_id)
            status, error = FAILED, f"{type(exc).__name__}: {exc}"
    store.record(mailbox, raw, parsed, status=status, now=now, error=error, classification=classification)
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
    log.info(
        "mailbox %s: UID %s %s from %s: %s; %s%s",
        mailbox, raw.uid, parsed.message_id, parsed.sender.email if parsed.sender else "(no sender)", decided,
        parsed.kind_reason, f"; {len(parsed.defects)} defects" if parsed.defects else "",
    )  # fmt: skip


def _seen_again(known: MessageRecord, raw: RawMessage, store: Store, now: datetime, report: CycleReport) -> None:
    """A message already processed (same Message-ID and content) at a new UID: note where it is, do nothing else."""
    moved = (known.folder, known.uidvalidity) != (raw.folder, raw.uidvalidity)
    reason = "folder renumbered (UIDVALIDITY changed)" if moved else "the same message again at a new UID"
    store.relocate(known, raw, reason=reason, now=now)
    report.skipped += 1
    report.count("already-recorded")
    log.info("mailbox %s: UID %s %s: already recorded (%s)", known.mailbox, raw.uid, known.message_id, reason)
