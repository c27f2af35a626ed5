"""How each mailbox's cycles have gone, and the counts ``status`` and the metrics show."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mailtriage.deadlines import OPEN
from mailtriage.store.database import Database, storable
from mailtriage.store.records import MailboxHealth, naive, utc

_OPEN = [state.value for state in OPEN]


class Health:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.table = database.tables["mailbox_health"]
        self.messages = database.tables["messages"]

    def cycle_done(self, mailbox: str, *, error: str | None, backlog: int, now: datetime) -> None:
        """Note how a mailbox's cycle ended: ``error`` None for success."""
        column = self.table.c
        if error is None:
            values: dict[str, Any] = {"last_cycle_at": naive(now), "last_ok_at": naive(now), "failures": 0,
                                      "backlog": backlog}  # fmt: skip
        else:
            values = {"last_cycle_at": naive(now), "failures": column.failures + 1, "last_error": error,
                      "last_error_at": naive(now)}  # fmt: skip
        values = storable(self.table, values)  # an error quotes the server, whatever it sent
        with self.database.transaction() as db:
            if not db.execute(self.table.update().where(column.mailbox == mailbox).values(values)).rowcount:
                first = {**values, "failures": 0 if error is None else 1}
                db.execute(self.table.insert().values(mailbox=mailbox, **first))

    def all(self) -> dict[str, MailboxHealth]:
        with self.database.transaction() as db:
            rows = db.execute(sa.select(self.table)).all()
        return {
            row.mailbox: MailboxHealth(
                row.mailbox,
                utc(row.last_cycle_at),
                utc(row.last_ok_at),
                row.failures,
                row.last_error,
                utc(row.last_error_at),
                row.backlog,
            )  # fmt: skip
            for row in rows
        }

    def status_counts(self, mailbox: str, since: datetime) -> dict[str, int]:
        """Messages of ``mailbox`` recorded since ``since`` by status, and those waiting for an answer by state."""
        column = self.messages.c
        with self.database.transaction() as db:
            statuses = db.execute(
                sa.select(column.status, sa.func.count())
                .where(column.mailbox == mailbox, column.recorded_at >= naive(since))
                .group_by(column.status)
            ).all()
            states = db.execute(
                sa.select(column.deadline_state, sa.func.count())
                .where(column.mailbox == mailbox, column.deadline_state.in_(_OPEN))
                .group_by(column.deadline_state)
            ).all()
        return {**{f"recorded:{s}": n for s, n in statuses}, **{f"open:{s}": n for s, n in states}}

    def recorded_by(self, since: datetime) -> dict[str, int]:
        """Messages recorded since ``since``, by the daemon that recorded them."""
        column = self.messages.c
        query = (sa.select(column.daemon, sa.func.count()).where(column.recorded_at >= naive(since),
                 column.daemon.is_not(None)).group_by(column.daemon))  # fmt: skip
        with self.database.transaction() as db:
            return {daemon: count for daemon, count in db.execute(query)}

    def metric_counts(self) -> dict[str, dict[tuple[str, ...], int]]:
        """Messages by (mailbox, status, category) and those waiting for an answer by (mailbox, state)."""
        column = self.messages.c
        category = sa.func.coalesce(column.corrected, column.category, "")
        with self.database.transaction() as db:
            messages = db.execute(
                sa.select(column.mailbox, column.status, category, sa.func.count()).group_by(
                    column.mailbox, column.status, category
                )
            ).all()
            waiting = db.execute(
                sa.select(column.mailbox, column.deadline_state, sa.func.count())
                .where(column.deadline_state.in_(_OPEN))
                .group_by(column.mailbox, column.deadline_state)
            ).all()
        return {
            "messages": {(m, s, c): n for m, s, c, n in messages},
            "open": {(m, s): n for m, s, n in waiting},
        }
