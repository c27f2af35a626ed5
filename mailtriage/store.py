"""The store: per-folder sync state, one row per message with every decision about it, an append-only audit log.

SQLite by default (WAL), through SQLAlchemy Core so that a PostgreSQL URL works too; the schema is versioned by
Alembic migrations under ``mailtriage/migrations`` and brought up to date whenever a store is opened.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from mailtriage.deadlines import OPEN
from mailtriage.errors import StoreError
from mailtriage.files import create_private
from mailtriage.models import Classification, ParsedEmail, RawMessage, RouteDecision

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class SyncState:
    """How far a folder has been read: every UID up to ``last_uid`` under ``uidvalidity`` is recorded."""

    uidvalidity: int
    last_uid: int


@dataclass(frozen=True)
class MessageRecord:
    """A message as the store knows it."""

    id: int
    mailbox: str
    folder: str
    uidvalidity: int
    uid: int
    message_id: str
    content_hash: str
    sender: str
    subject: str
    kind: str
    status: str
    received_at: datetime | None
    recorded_at: datetime
    defects: tuple[str, ...]
    error: str | None
    category: str | None = None
    confidence: float | None = None
    language: str | None = None
    model_version: str | None = None
    new_text: str = ""
    decided_by: str | None = None
    route: dict[str, Any] | None = None
    corrected: str | None = None
    """The category an agent gave the message (by filing it), which overrides ``category`` for training."""
    due_at: datetime | None = None
    deadline_state: str | None = None
    """on-track, warning, breached or answered; None: no deadline (not customer mail, or a follow-up)."""
    answered_at: datetime | None = None
    answered_how: str | None = None
    thread_of: int | None = None
    """The open message this one followed up on, in the same thread: its clock is that message's."""
    message_id_synthetic: bool = False
    """The message had no Message-ID: ``message_id`` was made from its content and no server can search for it."""

    @property
    def response_time(self) -> timedelta | None:
        """From arrival to first response, in real time; None while unanswered."""
        return None if self.answered_at is None else self.response_time_at(self.answered_at)

    def response_time_at(self, answered_at: datetime) -> timedelta:
        return answered_at - (self.received_at or self.recorded_at)


@dataclass(frozen=True)
class Signal:
    """A signal owed for a deadline transition: ``channel`` is flags, digest or webhook."""

    id: int
    message: MessageRecord
    state: str
    channel: str
    attempts: int


@dataclass(frozen=True)
class MailboxHealth:
    """How a mailbox's cycles have gone: what ``mailtriage status`` shows."""

    mailbox: str
    last_cycle_at: datetime | None
    last_ok_at: datetime | None
    failures: int
    last_error: str | None
    last_error_at: datetime | None
    backlog: int


@dataclass(frozen=True)
class AuditEvent:
    at: datetime
    mailbox: str
    message: int | None
    action: str
    detail: dict[str, Any]


def _utc(value: datetime | None) -> datetime | None:
    """Datetimes are stored as naive UTC (SQLite has no time zones) and handed out as aware UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _naive(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None)


class Store:
    """The database behind mailtriage; safe to share between threads (one connection per transaction)."""

    def __init__(self, url: str, busy_timeout: float = 30.0) -> None:
        self.url = url
        try:
            self.engine = _engine(url, busy_timeout)
            self.migrate()
            # The migrations are the one definition of the schema; the tables are read back from the database.
            schema = sa.MetaData()
            schema.reflect(
                self.engine, only=["sync_state", "messages", "audit_log", "deadline_signals", "mailbox_health"]
            )
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"cannot open the store at {_shown(url)}: {_reason(exc)}") from None
        except ImportError as exc:  # the database's driver is an extra: pip install 'mailtriage[postgresql]'
            raise StoreError(
                f"cannot open the store at {_shown(url)}: its database driver is not installed ({exc}); for "
                "PostgreSQL: pip install 'psycopg[binary]'"
            ) from None
        except CommandError as exc:  # a schema revision this version does not know: written by a newer one
            raise StoreError(
                f"cannot open the store at {_shown(url)}: its schema is newer than this version of mailtriage "
                f"knows ({exc}); upgrade mailtriage, or restore a backup made with this version"
            ) from None
        self.sync_state_table = schema.tables["sync_state"]
        self.messages_table = schema.tables["messages"]
        self.audit_table = schema.tables["audit_log"]
        self.signals_table = schema.tables["deadline_signals"]
        self.health_table = schema.tables["mailbox_health"]
        # The statements of the hot path, built once: building one costs more than running it.
        state, message = self.sync_state_table.c, self.messages_table.c
        self._known = sa.select(self.messages_table).where(
            message.mailbox == sa.bindparam("b_mailbox"),
            message.content_hash.in_(sa.bindparam("b_hashes", expanding=True)),
        )
        self._update_state = self.sync_state_table.update().where(
            state.mailbox == sa.bindparam("b_mailbox"), state.folder == sa.bindparam("b_folder")
        )
        self._insert_message = self.messages_table.insert()
        self._insert_audit = self.audit_table.insert()
        self._local = threading.local()

    def migrate(self) -> None:
        """Bring the schema up to the newest migration (a no-op when it already is)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make the store calls inside, in this thread, one transaction: all of them are recorded, or none.

        The cycle records a fetched batch at a time: a commit per message cost more than parsing it, and a crash
        before the commit only means the batch is read again.
        """
        if self._local.__dict__.get("db") is not None:
            yield
            return
        with self._transaction() as db:
            self._local.db = db
            try:
                yield
            finally:
                self._local.db = None

    def reconnect(self) -> None:
        """Let go of every pooled connection: the next transaction opens a fresh one."""
        self.engine.dispose()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        joined = self._local.__dict__.get("db")
        if joined is not None:
            yield joined
            return
        try:
            with self.engine.begin() as connection:
                yield connection
        except SQLAlchemyError as exc:
            if isinstance(exc, sa.exc.OperationalError):
                # The next transaction opens a fresh connection: SQLite keeps a file it opened read-only read-only
                # for the connection's life, and a server connection may be gone. Without this a store whose
                # permissions or server came back kept failing until the daemon was restarted.
                self.reconnect()
            raise StoreError(f"store {_shown(self.url)}: {_reason(exc)}") from None

    # --- sync state ----------------------------------------------------------------------------------------------

    def sync_state(self, mailbox: str, folder: str) -> SyncState | None:
        with self._transaction() as db:
            row = db.execute(
                sa.select(self.sync_state_table.c.uidvalidity, self.sync_state_table.c.last_uid).where(
                    self.sync_state_table.c.mailbox == mailbox, self.sync_state_table.c.folder == folder
                )
            ).first()
        return None if row is None else SyncState(row.uidvalidity, row.last_uid)

    def set_sync_state(self, mailbox: str, folder: str, state: SyncState, now: datetime) -> None:
        with self._transaction() as db:
            self._save_state(db, mailbox, folder, state, now)

    def _save_state(self, db: Connection, mailbox: str, folder: str, state: SyncState, now: datetime) -> None:
        values = {"uidvalidity": state.uidvalidity, "last_uid": state.last_uid, "updated_at": _naive(now)}
        updated = db.execute(self._update_state, {"b_mailbox": mailbox, "b_folder": folder, **values})
        if updated.rowcount == 0:
            db.execute(self.sync_state_table.insert(), {"mailbox": mailbox, "folder": folder, **values})

    # --- messages ------------------------------------------------------------------------------------------------

    def known(self, mailbox: str, content_hashes: Sequence[str]) -> dict[str, MessageRecord]:
        """The messages of ``mailbox`` already recorded with these contents, by content hash (one query).

        Identical bytes mean the same message: the hash covers the Message-ID too, and tells apart two different
        mails that share one.
        """
        if not content_hashes:
            return {}
        with self._transaction() as db:
            rows = db.execute(self._known, {"b_mailbox": mailbox, "b_hashes": list(set(content_hashes))})
            return {row.content_hash: _record(row) for row in rows}

    def record(
        self,
        mailbox: str,
        raw: RawMessage,
        parsed: ParsedEmail,
        *,
        status: str,
        now: datetime,
        error: str | None = None,
        classification: Classification | None = None,
        decision: RouteDecision | None = None,
        due_at: datetime | None = None,
        thread_of: int | None = None,
    ) -> int:
        """Record a newly read message and advance the folder's sync state past it, in one transaction (or in
        the enclosing ``batch``).

        A crash before the commit leaves neither, so the message is read again; after it, both, so it is not.
        """
        values = {
            "mailbox": mailbox,
            "folder": raw.folder,
            "uidvalidity": raw.uidvalidity,
            "uid": raw.uid,
            "message_id": parsed.message_id,
            "message_id_synthetic": parsed.message_id_synthetic,
            "content_hash": parsed.content_hash,
            "size": parsed.size,
            "sender": parsed.sender.email if parsed.sender else "",
            "sender_name": parsed.sender.name if parsed.sender else "",
            "subject": parsed.subject,
            "sent_at": _naive(parsed.date),
            "received_at": _naive(parsed.internal_date),
            "in_reply_to": parsed.in_reply_to,
            "kind": parsed.kind.value,
            "kind_reason": parsed.kind_reason,
            "status": status,
            "new_text": parsed.new_text,
            "attachments": [[a.filename, a.content_type, a.size] for a in parsed.attachments],
            "defects": list(parsed.defects),
            "error": error,
            "recorded_at": _naive(now),
            "category": decision.category if decision else classification.category if classification else None,
            "predicted": classification.predicted if classification else None,
            "confidence": classification.confidence if classification else None,
            "language": classification.language if classification else None,
            "model_version": classification.model_version if classification else None,
            "decided_by": decision.decided_by if decision else None,
            "route": asdict(decision) if decision else None,
            "due_at": _naive(due_at),
            "deadline_state": "on-track" if due_at is not None else None,
            "thread_of": thread_of,
        }
        with self._transaction() as db:
            message = int(db.execute(self._insert_message, values).inserted_primary_key[0])  # type: ignore[index]
            detail: dict[str, Any] = {"uid": raw.uid, "status": status, "kind": parsed.kind.value}
            if classification is not None:
                detail |= {"predicted": classification.predicted, "confidence": round(classification.confidence, 3)}
            if decision is not None:
                detail |= {"decided_by": decision.decided_by, "reason": decision.reason}
            if due_at is not None:
                detail |= {"due": due_at.astimezone(UTC).isoformat()}
            if thread_of is not None:
                detail |= {"follows_up": thread_of}
            self._audit(db, mailbox, message, "recorded", detail, now)
            self._save_state(db, mailbox, raw.folder, SyncState(raw.uidvalidity, raw.uid), now)
        return message

    def correct(self, record: MessageRecord, category: str, raw: RawMessage, *, now: datetime) -> None:
        """Record that an agent filed a message under ``category``, and where it now is."""
        with self._transaction() as db:
            self._locate(db, record, raw, corrected=category)
            was = record.corrected or record.category
            self._audit(
                db, record.mailbox, record.id, "corrected", {"from": was, "to": category, "folder": raw.folder}, now
            )

    def locate(self, record: MessageRecord, raw: RawMessage) -> None:
        """Note a message's new place after a move (ours or an agent's, to the folder of its own category)."""
        with self._transaction() as db:
            self._locate(db, record, raw)

    def _locate(self, db: Connection, record: MessageRecord, raw: RawMessage, **values: Any) -> None:
        place = {"folder": raw.folder, "uidvalidity": raw.uidvalidity, "uid": raw.uid}
        db.execute(self.messages_table.update().where(self.messages_table.c.id == record.id).values(place | values))

    def relocate(self, record: MessageRecord, raw: RawMessage, *, reason: str, now: datetime) -> None:
        """Note that a known message now sits at ``raw``'s folder and UID, and advance the sync state past it."""
        with self._transaction() as db:
            self._locate(db, record, raw)
            detail = {
                "from": [record.folder, record.uidvalidity, record.uid],
                "to": [raw.folder, raw.uidvalidity, raw.uid],
                "reason": reason,
            }
            self._audit(db, record.mailbox, record.id, "relocated", detail, now)
            self._save_state(db, record.mailbox, raw.folder, SyncState(raw.uidvalidity, raw.uid), now)

    def messages(self, mailbox: str | None = None, since: datetime | None = None) -> list[MessageRecord]:
        """Every message (of ``mailbox``, recorded since ``since``), oldest first."""
        query = sa.select(self.messages_table).order_by(self.messages_table.c.id)
        if mailbox is not None:
            query = query.where(self.messages_table.c.mailbox == mailbox)
        if since is not None:
            query = query.where(self.messages_table.c.recorded_at >= _naive(since))
        with self._transaction() as db:
            return [_record(row) for row in db.execute(query)]

    def with_status(self, mailbox: str, status: str) -> list[MessageRecord]:
        column = self.messages_table.c
        query = sa.select(self.messages_table).where(column.mailbox == mailbox, column.status == status)
        with self._transaction() as db:
            return [_record(row) for row in db.execute(query.order_by(column.id))]

    def set_status(self, record: MessageRecord, status: str, *, now: datetime, error: str | None = None) -> None:
        """Change a message's status (and error), with an audit event saying so."""
        with self._transaction() as db:
            db.execute(
                self.messages_table.update()
                .where(self.messages_table.c.id == record.id)
                .values(status=status, error=error)
            )
            self._audit(db, record.mailbox, record.id, f"status:{status}", {"error": error} if error else {}, now)

    def classified(self, exclude: str) -> list[MessageRecord]:
        """Customer messages with a category other than ``exclude`` (the fallback), or corrected by an agent: what
        training can learn from."""
        column = self.messages_table.c
        final = sa.func.coalesce(column.corrected, column.category)
        query = (
            sa.select(self.messages_table)
            .where(column.kind == "customer", final.is_not(None), final != exclude)
            .order_by(column.id)
        )
        with self._transaction() as db:
            return [_record(row) for row in db.execute(query)]

    def recent(
        self,
        *,
        limit: int = 50,
        mailbox: str | None = None,
        category: str | None = None,
        status: str | None = None,
        decided_by: str | None = None,
        since: datetime | None = None,
    ) -> list[MessageRecord]:
        """The latest recorded messages, newest first, filtered by whichever of these are given."""
        column = self.messages_table.c
        query = sa.select(self.messages_table).order_by(column.id.desc()).limit(limit)
        if mailbox is not None:
            query = query.where(column.mailbox == mailbox)
        if category is not None:
            query = query.where(column.category == category)
        if status is not None:
            query = query.where(column.status == status)
        if decided_by is not None:
            query = query.where(column.decided_by.like(f"{decided_by}%"))
        if since is not None:
            query = query.where(column.recorded_at >= _naive(since))
        with self._transaction() as db:
            return [_record(row) for row in db.execute(query)]

    def categorized_since(self, mailbox: str, since: datetime) -> list[MessageRecord]:
        """Messages of ``mailbox`` recorded since ``since`` that have a category: what an agent may still re-file."""
        column = self.messages_table.c
        query = sa.select(self.messages_table).where(
            column.mailbox == mailbox, column.category.is_not(None), column.recorded_at >= _naive(since)
        )
        with self._transaction() as db:
            return [_record(row) for row in db.execute(query.order_by(column.id))]

    def recategorize(self, record: MessageRecord, category: str, *, how: str, now: datetime) -> None:
        """Record that an agent gave a message ``category`` (``how``: by keyword), with an audit event."""
        with self._transaction() as db:
            db.execute(
                self.messages_table.update().where(self.messages_table.c.id == record.id).values(corrected=category)
            )
            was = record.corrected or record.category
            self._audit(db, record.mailbox, record.id, "corrected", {"from": was, "to": category, "by": how}, now)

    def first_recorded(self, mailbox: str) -> datetime | None:
        """When the first message of ``mailbox`` was recorded: when mailtriage started on it."""
        column = self.messages_table.c
        with self._transaction() as db:
            found = db.execute(sa.select(sa.func.min(column.recorded_at)).where(column.mailbox == mailbox)).scalar()
        return _utc(found)

    def count(self, mailbox: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(self.messages_table)
        if mailbox is not None:
            query = query.where(self.messages_table.c.mailbox == mailbox)
        with self._transaction() as db:
            return int(db.execute(query).scalar_one())

    # --- deadlines -----------------------------------------------------------------------------------------------

    def open_thread(self, mailbox: str, message_ids: Sequence[str]) -> MessageRecord | None:
        """The earliest message still waiting for an answer among ``message_ids`` (or that they follow up on)."""
        if not message_ids:
            return None
        column = self.messages_table.c
        named = sa.select(column.id, column.thread_of).where(
            column.mailbox == mailbox, column.message_id.in_(list(set(message_ids)))
        )
        with self._transaction() as db:
            ids = {row.thread_of or row.id for row in db.execute(named)}
            if not ids:
                return None
            query = sa.select(self.messages_table).where(
                column.id.in_(ids), column.deadline_state.in_([s.value for s in OPEN])
            )
            row = db.execute(query.order_by(column.id).limit(1)).first()
        return None if row is None else _record(row)

    def watched(self, mailbox: str, now: datetime, watch: timedelta) -> list[MessageRecord]:
        """The messages of ``mailbox`` waiting for a first response, due no longer than ``watch`` ago (one indexed
        query: what the sweep costs follows these, not the mailbox)."""
        column = self.messages_table.c
        query = sa.select(self.messages_table).where(
            column.mailbox == mailbox,
            column.deadline_state.in_([s.value for s in OPEN]),
            column.due_at >= _naive(now - watch),
        )
        with self._transaction() as db:
            return [_record(row) for row in db.execute(query.order_by(column.due_at))]

    def open_deadlines(self, mailbox: str | None = None) -> list[MessageRecord]:
        """Every message still waiting for its first response, soonest due first."""
        column = self.messages_table.c
        query = sa.select(self.messages_table).where(column.deadline_state.in_([s.value for s in OPEN]))
        if mailbox is not None:
            query = query.where(column.mailbox == mailbox)
        with self._transaction() as db:
            return [_record(row) for row in db.execute(query.order_by(column.due_at))]

    def follow_ups(self, ids: Sequence[int]) -> list[MessageRecord]:
        """The follow-ups recorded in the threads of these messages."""
        if not ids:
            return []
        column = self.messages_table.c
        query = sa.select(self.messages_table).where(column.thread_of.in_(list(ids)))
        with self._transaction() as db:
            return [_record(row) for row in db.execute(query.order_by(column.id))]

    def by_message_ids(self, mailbox: str, message_ids: Sequence[str]) -> list[MessageRecord]:
        if not message_ids:
            return []
        column = self.messages_table.c
        query = sa.select(self.messages_table).where(
            column.mailbox == mailbox, column.message_id.in_(list(set(message_ids)))
        )
        with self._transaction() as db:
            return [_record(row) for row in db.execute(query.order_by(column.id))]

    def transition(self, record: MessageRecord, state: str, channels: Sequence[str], *, now: datetime) -> bool:
        """Move a message's deadline to ``state`` and owe a signal on each channel, once: False when another
        sweep got there first (the state is compared and set in one statement)."""
        column = self.messages_table.c
        with self._transaction() as db:
            changed = db.execute(
                self.messages_table.update()
                .where(column.id == record.id, column.deadline_state == record.deadline_state)
                .values(deadline_state=state)
            ).rowcount
            if not changed:
                return False
            detail = {"from": record.deadline_state, "due": record.due_at.isoformat() if record.due_at else None}
            self._audit(db, record.mailbox, record.id, f"deadline:{state}", detail, now)
            for channel in channels:
                db.execute(
                    self.signals_table.insert(),
                    {"message": record.id, "mailbox": record.mailbox, "state": state, "channel": channel,
                     "created_at": _naive(now), "attempts": 0},
                )  # fmt: skip
        return True

    def answer(self, record: MessageRecord, at: datetime, how: str, *, now: datetime) -> bool:
        """Stop a message's clock: answered at ``at`` (``how``: a reply in Sent, the \\Answered flag). Signals
        not yet given for it are dropped. False when it was answered already."""
        column = self.messages_table.c
        with self._transaction() as db:
            changed = db.execute(
                self.messages_table.update()
                .where(column.id == record.id, column.deadline_state.in_([s.value for s in OPEN]))
                .values(deadline_state="answered", answered_at=_naive(at), answered_how=how)
            ).rowcount
            if not changed:
                return False
            signals = self.signals_table.c
            db.execute(
                self.signals_table.update()
                .where(signals.message == record.id, signals.done_at.is_(None))
                .values(done_at=_naive(now), error="answered before it was given")
            )
            response = None if record.received_at is None else (at - record.received_at).total_seconds()
            detail = {"how": how, "at": at.astimezone(UTC).isoformat(), "response_seconds": response,
                      "within_target": None if record.due_at is None else at <= record.due_at}  # fmt: skip
            self._audit(db, record.mailbox, record.id, "answered", detail, now)
        return True

    def pending_signals(self, mailbox: str) -> list[Signal]:
        """The signals owed for ``mailbox``'s deadline transitions that have not been given yet, oldest first."""
        signals = self.signals_table.c
        query = sa.select(self.signals_table).where(signals.mailbox == mailbox, signals.done_at.is_(None))
        with self._transaction() as db:
            owed = db.execute(query.order_by(signals.id)).all()
            ids = list({row.message for row in owed})
            query = sa.select(self.messages_table).where(self.messages_table.c.id.in_(ids))
            messages = {row.id: _record(row) for row in db.execute(query)} if ids else {}
        return [Signal(row.id, messages[row.message], row.state, row.channel, row.attempts) for row in owed]

    def signal_given(self, signal: Signal, *, now: datetime) -> None:
        with self._transaction() as db:
            db.execute(
                self.signals_table.update().where(self.signals_table.c.id == signal.id).values(done_at=_naive(now))
            )
            detail = {"state": signal.state, "channel": signal.channel}
            self._audit(db, signal.message.mailbox, signal.message.id, "deadline-signalled", detail, now)

    def signal_failed(self, signal: Signal, error: str, *, now: datetime) -> None:
        """Note a signal that could not be given: it is tried again at the next sweep."""
        with self._transaction() as db:
            db.execute(
                self.signals_table.update()
                .where(self.signals_table.c.id == signal.id)
                .values(attempts=self.signals_table.c.attempts + 1, error=error)
            )
            detail = {"state": signal.state, "channel": signal.channel, "error": error}
            self._audit(db, signal.message.mailbox, signal.message.id, "deadline-signal-failed", detail, now)

    # --- health ------------------------------------------------------------------------------------------------

    def cycle_done(self, mailbox: str, *, error: str | None, backlog: int, now: datetime) -> None:
        """Note how a mailbox's cycle ended: ``error`` None for success."""
        column = self.health_table.c
        if error is None:
            values: dict[str, Any] = {"last_cycle_at": _naive(now), "last_ok_at": _naive(now), "failures": 0,
                                      "backlog": backlog}  # fmt: skip
        else:
            values = {"last_cycle_at": _naive(now), "failures": column.failures + 1, "last_error": error,
                      "last_error_at": _naive(now)}  # fmt: skip
        with self._transaction() as db:
            if not db.execute(self.health_table.update().where(column.mailbox == mailbox).values(values)).rowcount:
                first = {**values, "failures": 0 if error is None else 1}
                db.execute(self.health_table.insert().values(mailbox=mailbox, **first))

    def health(self) -> dict[str, MailboxHealth]:
        with self._transaction() as db:
            rows = db.execute(sa.select(self.health_table)).all()
        return {
            row.mailbox: MailboxHealth(
                row.mailbox,
                _utc(row.last_cycle_at),
                _utc(row.last_ok_at),
                row.failures,
                row.last_error,
                _utc(row.last_error_at),
                row.backlog,
            )  # fmt: skip
            for row in rows
        }

    def status_counts(self, mailbox: str, since: datetime) -> dict[str, int]:
        """Messages of ``mailbox`` recorded since ``since`` by status, and those waiting for an answer by state."""
        column = self.messages_table.c
        with self._transaction() as db:
            statuses = db.execute(
                sa.select(column.status, sa.func.count())
                .where(column.mailbox == mailbox, column.recorded_at >= _naive(since))
                .group_by(column.status)
            ).all()
            states = db.execute(
                sa.select(column.deadline_state, sa.func.count())
                .where(column.mailbox == mailbox, column.deadline_state.in_([s.value for s in OPEN]))
                .group_by(column.deadline_state)
            ).all()
        return {**{f"recorded:{s}": n for s, n in statuses}, **{f"open:{s}": n for s, n in states}}

    def metric_counts(self) -> dict[str, dict[tuple[str, ...], int]]:
        """Messages by (mailbox, status, category) and those waiting for an answer by (mailbox, state)."""
        column = self.messages_table.c
        category = sa.func.coalesce(column.corrected, column.category, "")
        with self._transaction() as db:
            messages = db.execute(
                sa.select(column.mailbox, column.status, category, sa.func.count()).group_by(
                    column.mailbox, column.status, category
                )
            ).all()
            waiting = db.execute(
                sa.select(column.mailbox, column.deadline_state, sa.func.count())
                .where(column.deadline_state.in_([s.value for s in OPEN]))
                .group_by(column.mailbox, column.deadline_state)
            ).all()
        return {
            "messages": {(m, s, c): n for m, s, c, n in messages},
            "open": {(m, s): n for m, s, n in waiting},
        }

    # --- audit log -----------------------------------------------------------------------------------------------

    def audit(
        self, mailbox: str, action: str, detail: dict[str, Any], *, now: datetime, message: int | None = None
    ) -> None:
        with self._transaction() as db:
            self._audit(db, mailbox, message, action, detail, now)

    def _audit(
        self, db: Connection, mailbox: str, message: int | None, action: str, detail: dict[str, Any], now: datetime
    ) -> None:
        values = {"at": _naive(now), "mailbox": mailbox, "message": message, "action": action, "detail": detail}
        db.execute(self._insert_audit, values)

    def events(self, message: int, action: str) -> list[AuditEvent]:
        column = self.audit_table.c
        query = sa.select(self.audit_table).where(column.message == message, column.action == action)
        with self._transaction() as db:
            rows = db.execute(query.order_by(column.id))
            return [AuditEvent(_utc(r.at) or r.at, r.mailbox, r.message, r.action, _json(r.detail)) for r in rows]

    def has_event(self, message: int, action: str) -> bool:
        column = self.audit_table.c
        query = sa.select(column.id).where(column.message == message, column.action == action).limit(1)
        with self._transaction() as db:
            return db.execute(query).first() is not None

    def audit_events(self, mailbox: str | None = None) -> list[AuditEvent]:
        query = sa.select(self.audit_table).order_by(self.audit_table.c.id)
        if mailbox is not None:
            query = query.where(self.audit_table.c.mailbox == mailbox)
        with self._transaction() as db:
            return [
                AuditEvent(_utc(r.at) or r.at, r.mailbox, r.message, r.action, _json(r.detail))
                for r in db.execute(query)
            ]


def _record(row: sa.Row[Any]) -> MessageRecord:
    values = {f.name: getattr(row, f.name) for f in fields(MessageRecord)}
    values.update(
        received_at=_utc(row.received_at),
        due_at=_utc(row.due_at),
        answered_at=_utc(row.answered_at),
        recorded_at=_utc(row.recorded_at) or row.recorded_at,
        message_id_synthetic=bool(row.message_id_synthetic),
        defects=tuple(_json(row.defects)),
        route=_json(row.route),
    )
    return MessageRecord(**values)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _engine(url: str, busy_timeout: float) -> Engine:
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:":
            create_private(Path(database))  # before SQLite opens it: its -wal and -shm take the same mode

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL lets readers (status, review) work beside the daemon; NORMAL sync is durable across process
            # crashes, which is what exactly-once needs; a busy timeout rides out a moment of contention.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    return engine


def _shown(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def _reason(exc: Exception) -> str:
    original = getattr(exc, "orig", None)
    return str(original or exc).splitlines()[0]
