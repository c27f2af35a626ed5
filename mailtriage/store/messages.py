"""Messages and how far each folder has been read: one row per message with every decision about it, recorded
with the folder's sync state in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailtriage.deadlines import OPEN, State
from mailtriage.models import MessageKind, ParsedEmail, RawMessage
from mailtriage.store.audit import AuditLog
from mailtriage.store.database import Database, storable
from mailtriage.store.records import (
    Filters,
    MessageRecord,
    Outcome,
    Status,
    SyncState,
    message_from_row,
    naive,
    utc,
)  # fmt: skip

_OPEN = [state.value for state in OPEN]


class SyncStates:
    """How far each folder has been read (see ``cursor``)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.table = database.tables["sync_state"]
        column = self.table.c
        self._update = self.table.update().where(
            column.mailbox == sa.bindparam("b_mailbox"), column.folder == sa.bindparam("b_folder")
        )

    def get(self, mailbox: str, folder: str) -> SyncState | None:
        column = self.table.c
        query = sa.select(column.uidvalidity, column.last_uid).where(column.mailbox == mailbox, column.folder == folder)
        with self.database.transaction() as db:
            row = db.execute(query).first()
        return None if row is None else SyncState(row.uidvalidity, row.last_uid)

    def set(self, mailbox: str, folder: str, state: SyncState, now: datetime) -> None:
        with self.database.transaction() as db:
            self.write(db, mailbox, folder, state, now)

    def write(self, db: Connection, mailbox: str, folder: str, state: SyncState, now: datetime) -> None:
        values = {"uidvalidity": state.uidvalidity, "last_uid": state.last_uid, "updated_at": naive(now)}
        if db.execute(self._update, {"b_mailbox": mailbox, "b_folder": folder, **values}).rowcount == 0:
            db.execute(self.table.insert(), {"mailbox": mailbox, "folder": folder, **values})


class Messages:
    def __init__(self, database: Database, sync: SyncStates, audit: AuditLog, daemon: str | None = None) -> None:
        self.database = database
        self.daemon = daemon
        self.sync = sync
        self.audit = audit
        self.table = database.tables["messages"]
        # The statements of the hot path, built once: building one costs more than running it.
        column = self.table.c
        self._known = sa.select(self.table).where(
            column.mailbox == sa.bindparam("b_mailbox"),
            column.content_hash.in_(sa.bindparam("b_hashes", expanding=True)),
        )
        self._insert = self.table.insert()

    def known(self, mailbox: str, content_hashes: Sequence[str]) -> dict[str, MessageRecord]:
        """The messages of ``mailbox`` already recorded with these contents, by content hash (one query).

        Identical bytes mean the same message: the hash covers the Message-ID too, and tells apart two different
        mails that share one.
        """
        if not content_hashes:
            return {}
        with self.database.transaction() as db:
            rows = db.execute(self._known, {"b_mailbox": mailbox, "b_hashes": list(set(content_hashes))})
            return {row.content_hash: message_from_row(row) for row in rows}

    def record(self, mailbox: str, raw: RawMessage, parsed: ParsedEmail, outcome: Outcome, now: datetime) -> int:
        """Record a newly read message with what was decided about it, and advance the folder's sync state past
        it, in one transaction (or in the enclosing ``batch``).

        A crash before the commit leaves neither, so the message is read again; after it, both, so it is not.
        """
        with self.database.transaction() as db:
            values = storable(self.table, {**_row(mailbox, raw, parsed, outcome, now), "daemon": self.daemon})
            message = int(db.execute(self._insert, values).inserted_primary_key[0])  # type: ignore[index]
            self.audit.write(db, mailbox, message, "recorded", _recorded(raw, parsed, outcome), now)
            self.sync.write(db, mailbox, raw.folder, SyncState(raw.uidvalidity, raw.uid), now)
        return message

    def correct(
        self, record: MessageRecord, category: str, *, by: str, now: datetime, place: RawMessage | None = None
    ) -> None:
        """Record that an agent gave a message ``category`` (``by``: filing it in the category's folder, then
        ``place`` is where it now is; or by keyword), with an audit event."""
        with self.database.transaction() as db:
            self._update(db, record, corrected=category, **(_place(place) if place else {}))
            detail = {"from": record.category_now, "to": category, "by": by}
            if place is not None:
                detail["folder"] = place.folder
            self.audit.write(db, record.mailbox, record.id, "corrected", detail, now)

    def locate(self, record: MessageRecord, place: RawMessage) -> None:
        """Note a message's new place after a move (ours or an agent's, to the folder of its own category)."""
        with self.database.transaction() as db:
            self._update(db, record, **_place(place))

    def seen_again(self, record: MessageRecord, raw: RawMessage, *, reason: str, now: datetime) -> None:
        """A known message read again at ``raw``'s folder and UID (renumbered, moved back, delivered twice): note
        the place, audit it, and advance the sync state past it."""
        with self.database.transaction() as db:
            self._update(db, record, **_place(raw))
            detail = {"from": [record.folder, record.uidvalidity, record.uid],
                      "to": [raw.folder, raw.uidvalidity, raw.uid], "reason": reason}  # fmt: skip
            self.audit.write(db, record.mailbox, record.id, "relocated", detail, now)
            self.sync.write(db, record.mailbox, raw.folder, SyncState(raw.uidvalidity, raw.uid), now)

    def set_status(self, record: MessageRecord, status: Status, *, now: datetime, error: str | None = None) -> None:
        """Change a message's status (and error), with an audit event saying so."""
        with self.database.transaction() as db:
            self._update(db, record, status=status.value, error=error)
            self.audit.write(db, record.mailbox, record.id, f"status:{status.value}", {"error": error} if error else {},
                             now)  # fmt: skip

    def all(self, mailbox: str | None = None, since: datetime | None = None) -> list[MessageRecord]:
        """Every message (of ``mailbox``, recorded since ``since``), oldest first."""
        query = sa.select(self.table).order_by(self.table.c.id)
        if mailbox is not None:
            query = query.where(self.table.c.mailbox == mailbox)
        if since is not None:
            query = query.where(self.table.c.recorded_at >= naive(since))
        return self._records(query)

    def with_status(self, mailbox: str, status: Status) -> list[MessageRecord]:
        column = self.table.c
        return self._records(
            sa.select(self.table).where(column.mailbox == mailbox, column.status == status.value).order_by(column.id)
        )

    def learnable(self, exclude: str) -> list[MessageRecord]:
        """Customer messages with a category other than ``exclude`` (the fallback), or corrected by an agent: what
        training can learn from."""
        column = self.table.c
        final = sa.func.coalesce(column.corrected, column.category)
        return self._records(
            sa.select(self.table)
            .where(column.kind == MessageKind.CUSTOMER.value, final.is_not(None), final != exclude)
            .order_by(column.id)
        )

    def recent(self, filters: Filters) -> list[MessageRecord]:
        """The latest recorded messages, newest first, as ``filters`` narrow them."""
        column, since = self.table.c, filters.since
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        conditions = [
            column.id < filters.before if filters.before is not None else None,
            column.mailbox == filters.mailbox if filters.mailbox is not None else None,
            column.category == filters.category if filters.category is not None else None,
            column.status == filters.status.value if filters.status is not None else None,
            column.decided_by.like(f"{filters.decided_by}%") if filters.decided_by is not None else None,
            column.recorded_at >= naive(since) if since is not None else None,
        ]
        query = sa.select(self.table).where(*(c for c in conditions if c is not None))
        return self._records(query.order_by(column.id.desc()).limit(filters.limit))

    def categorized_since(self, mailbox: str, since: datetime) -> list[MessageRecord]:
        """Messages of ``mailbox`` recorded since ``since`` that have a category: what an agent may still re-file."""
        column = self.table.c
        query = sa.select(self.table).where(
            column.mailbox == mailbox, column.category.is_not(None), column.recorded_at >= naive(since)
        )
        return self._records(query.order_by(column.id))

    def first_recorded(self, mailbox: str) -> datetime | None:
        """When the first message of ``mailbox`` was recorded: when mailtriage started on it."""
        column = self.table.c
        with self.database.transaction() as db:
            found = db.execute(sa.select(sa.func.min(column.recorded_at)).where(column.mailbox == mailbox)).scalar()
        return utc(found)

    def count(self, mailbox: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(self.table)
        if mailbox is not None:
            query = query.where(self.table.c.mailbox == mailbox)
        with self.database.transaction() as db:
            return int(db.execute(query).scalar_one())

    def open_thread(self, mailbox: str, message_ids: Sequence[str]) -> MessageRecord | None:
        """The earliest message still waiting for an answer among ``message_ids`` (or that they follow up on)."""
        if not message_ids:
            return None
        column = self.table.c
        named = sa.select(column.id, column.thread_of).where(
            column.mailbox == mailbox, column.message_id.in_(list(set(message_ids)))
        )
        with self.database.transaction() as db:
            ids = {row.thread_of or row.id for row in db.execute(named)}
            if not ids:
                return None
            query = sa.select(self.table).where(column.id.in_(ids), column.deadline_state.in_(_OPEN))
            row = db.execute(query.order_by(column.id).limit(1)).first()
        return None if row is None else message_from_row(row)

    def _update(self, db: Connection, record: MessageRecord, **values: Any) -> None:
        db.execute(self.table.update().where(self.table.c.id == record.id).values(**storable(self.table, values)))

    def _records(self, query: sa.Select[tuple[object, ...]]) -> list[MessageRecord]:
        with self.database.transaction() as db:
            return [message_from_row(row) for row in db.execute(query)]


def _place(raw: RawMessage) -> dict[str, Any]:
    return {"folder": raw.folder, "uidvalidity": raw.uidvalidity, "uid": raw.uid}


def _row(mailbox: str, raw: RawMessage, parsed: ParsedEmail, outcome: Outcome, now: datetime) -> dict[str, Any]:
    """The messages row of a newly read message."""
    classification, decision = outcome.classification, outcome.decision
    category = decision.category if decision else classification.category if classification else None
    return {
        **_place(raw), "mailbox": mailbox, "message_id": parsed.message_id,
        "message_id_synthetic": parsed.message_id_synthetic, "content_hash": parsed.content_hash, "size": parsed.size,
        "sender": parsed.sender.email if parsed.sender else "",
        "sender_name": parsed.sender.name if parsed.sender else "",
        "subject": parsed.subject, "sent_at": naive(parsed.date), "received_at": naive(parsed.internal_date),
        "in_reply_to": parsed.in_reply_to, "kind": parsed.kind.value, "kind_reason": parsed.kind_reason,
        "status": outcome.status.value, "new_text": parsed.new_text,
        "attachments": [[a.filename, a.content_type, a.size] for a in parsed.attachments],
        "defects": list(parsed.defects), "error": outcome.error, "recorded_at": naive(now), "category": category,
        "predicted": classification.predicted if classification else None,
        "confidence": classification.confidence if classification else None,
        "language": classification.language if classification else None,
        "model_version": classification.model_version if classification else None,
        "decided_by": decision.decided_by if decision else None, "route": asdict(decision) if decision else None,
        "due_at": naive(outcome.due_at), "deadline_state": State.ON_TRACK.value if outcome.due_at else None,
        "thread_of": outcome.thread_of,
    }  # fmt: skip


def _recorded(raw: RawMessage, parsed: ParsedEmail, outcome: Outcome) -> dict[str, Any]:
    """The detail of a message's 'recorded' audit event."""
    detail: dict[str, Any] = {"uid": raw.uid, "status": outcome.status.value, "kind": parsed.kind.value}
    if outcome.classification is not None:
        c = outcome.classification
        detail |= {"predicted": c.predicted, "confidence": round(c.confidence, 3)}
    if outcome.decision is not None:
        detail |= {"decided_by": outcome.decision.decided_by, "reason": outcome.decision.reason}
    if outcome.due_at is not None:
        detail |= {"due": outcome.due_at.astimezone(UTC).isoformat()}
    if outcome.thread_of is not None:
        detail |= {"follows_up": outcome.thread_of}
    return detail
