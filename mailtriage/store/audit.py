"""The append-only audit log: every step the daemon takes on a message, and when (a trigger refuses changes)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailtriage.store.database import Database
from mailtriage.store.records import AuditEvent, audit_from_row, naive


class AuditLog:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.table = database.tables["audit_log"]
        self._insert = self.table.insert()

    def add(
        self, mailbox: str, action: str, detail: dict[str, Any], *, now: datetime, message: int | None = None
    ) -> None:
        with self.database.transaction() as db:
            self.write(db, mailbox, message, action, detail, now)

    def write(
        self, db: Connection, mailbox: str, message: int | None, action: str, detail: dict[str, Any], now: datetime
    ) -> None:
        """Add an event inside a transaction another repository holds (its change and the event go together)."""
        db.execute(self._insert, {"at": naive(now), "mailbox": mailbox, "message": message, "action": action,
                                  "detail": detail})  # fmt: skip

    def events(self, message: int, action: str) -> list[AuditEvent]:
        column = self.table.c
        query = sa.select(self.table).where(column.message == message, column.action == action)
        with self.database.transaction() as db:
            return [audit_from_row(row) for row in db.execute(query.order_by(column.id))]

    def has(self, message: int, action: str) -> bool:
        column = self.table.c
        query = sa.select(column.id).where(column.message == message, column.action == action).limit(1)
        with self.database.transaction() as db:
            return db.execute(query).first() is not None

    def having(self, messages: Sequence[int], action: str) -> set[int]:
        """Which of these messages have an ``action`` event: ``has`` for a batch, in one query."""
        column = self.table.c
        found: set[int] = set()
        with self.database.transaction() as db:
            for start in range(0, len(messages), 500):  # a bound on the IN list's parameters
                chunk = list(messages[start : start + 500])
                query = sa.select(column.message).where(column.message.in_(chunk), column.action == action)
                found.update(int(row[0]) for row in db.execute(query.distinct()))
        return found

    def all(self, mailbox: str | None = None, *, actions: Sequence[str] = ()) -> list[AuditEvent]:
        """Every event (of ``mailbox``; of ``actions``), oldest first."""
        query = sa.select(self.table).order_by(self.table.c.id)
        if mailbox is not None:
            query = query.where(self.table.c.mailbox == mailbox)
        if actions:
            query = query.where(self.table.c.action.in_(list(actions)))
        with self.database.transaction() as db:
            return [audit_from_row(row) for row in db.execute(query)]

    def recent(self, actions: Sequence[str], limit: int = 100, *, since: datetime | None = None) -> list[AuditEvent]:
        """The latest events of these actions (any mailbox), newest first."""
        column = self.table.c
        query = sa.select(self.table).where(column.action.in_(list(actions)))
        if since is not None:
            query = query.where(column.at >= naive(since))
        with self.database.transaction() as db:
            return [audit_from_row(row) for row in db.execute(query.order_by(column.id.desc()).limit(limit))]
