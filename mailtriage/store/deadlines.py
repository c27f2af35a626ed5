"""First-response deadlines in the store: the messages still waiting, their transitions (each once), the
answers that stop their clocks, and the signals owed until given."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from mailtriage.deadlines import OPEN, State
from mailtriage.store.audit import AuditLog
from mailtriage.store.database import Database
from mailtriage.store.records import MessageRecord, Signal, message_from_row, naive

_OPEN = [state.value for state in OPEN]
FLAG_SIGNAL = "flags"
"""The signal that flags a message on the server for its state (``\\Flagged`` and a keyword)."""
UNFLAG_SIGNAL = "unflag"
"""Owed when a flagged message is answered: its state's keyword comes off again (an agent's flags stay)."""


class Deadlines:
    def __init__(self, database: Database, audit: AuditLog) -> None:
        self.database = database
        self.audit = audit
        self.messages = database.tables["messages"]
        self.signals = database.tables["deadline_signals"]

    def watched(self, mailbox: str, now: datetime, watch: timedelta) -> list[MessageRecord]:
        """The messages of ``mailbox`` waiting for a first response, due no longer than ``watch`` ago (one indexed
        query: what the sweep costs follows these, not the mailbox)."""
        column = self.messages.c
        query = sa.select(self.messages).where(
            column.mailbox == mailbox, column.deadline_state.in_(_OPEN), column.due_at >= naive(now - watch)
        )
        return self._records(query.order_by(column.due_at))

    def waiting(self, mailbox: str | None = None) -> list[MessageRecord]:
        """Every message still waiting for its first response, soonest due first."""
        column = self.messages.c
        query = sa.select(self.messages).where(column.deadline_state.in_(_OPEN))
        if mailbox is not None:
            query = query.where(column.mailbox == mailbox)
        return self._records(query.order_by(column.due_at))

    def follow_ups(self, ids: Sequence[int]) -> list[MessageRecord]:
        """The follow-ups recorded in the threads of these messages."""
        if not ids:
            return []
        column = self.messages.c
        return self._records(sa.select(self.messages).where(column.thread_of.in_(list(ids))).order_by(column.id))

    def transition(self, record: MessageRecord, state: State, channels: Sequence[str], *, now: datetime) -> bool:
        """Move a message's deadline to ``state`` and owe a signal on each channel, once: False when another
        sweep got there first (the state is compared and set in one statement)."""
        column = self.messages.c
        with self.database.transaction() as db:
            changed = db.execute(
                self.messages.update()
                .where(column.id == record.id, column.deadline_state == record.deadline_state)
                .values(deadline_state=state.value)
            ).rowcount
            if not changed:
                return False
            detail = {"from": record.deadline_state, "due": record.due_at.isoformat() if record.due_at else None}
            self.audit.write(db, record.mailbox, record.id, f"deadline:{state.value}", detail, now)
            for channel in channels:
                db.execute(
                    self.signals.insert(),
                    {"message": record.id, "mailbox": record.mailbox, "state": state.value, "channel": channel,
                     "created_at": naive(now), "attempts": 0},
                )  # fmt: skip
        return True

    def answer(self, record: MessageRecord, at: datetime, how: str, *, now: datetime) -> bool:
        """Stop a message's clock: answered at ``at`` (``how``: a reply in Sent, the \\\\Answered flag). Signals
        not yet given for it are dropped, and for each state whose flags were given an ``unflag`` signal is owed.
        False when it was answered already."""
        column = self.messages.c
        with self.database.transaction() as db:
            changed = db.execute(
                self.messages.update()
                .where(column.id == record.id, column.deadline_state.in_(_OPEN))
                .values(deadline_state=State.ANSWERED.value, answered_at=naive(at), answered_how=how)
            ).rowcount
            if not changed:
                return False
            signals = self.signals.c
            flagged = db.execute(  # the keywords mailtriage set on it: taken off again, by a signal of their own
                sa.select(signals.state).where(
                    signals.message == record.id, signals.channel == FLAG_SIGNAL, signals.done_at.is_not(None)
                )
            ).scalars().all()  # fmt: skip
            db.execute(
                self.signals.update()
                .where(signals.message == record.id, signals.done_at.is_(None))
                .values(done_at=naive(now), error="answered before it was given")
            )
            for state in sorted(set(flagged)):
                db.execute(self.signals.insert(), {"message": record.id, "mailbox": record.mailbox, "state": state,
                                                   "channel": UNFLAG_SIGNAL, "created_at": naive(now),
                                                   "attempts": 0})  # fmt: skip
            response = None if record.received_at is None else (at - record.received_at).total_seconds()
            detail = {"how": how, "at": at.astimezone(UTC).isoformat(), "response_seconds": response,
                      "within_target": None if record.due_at is None else at <= record.due_at}  # fmt: skip
            self.audit.write(db, record.mailbox, record.id, "answered", detail, now)
        return True

    def owed(self, mailbox: str) -> list[Signal]:
        """The signals owed for ``mailbox``'s deadline transitions that have not been given yet, oldest first."""
        signals = self.signals.c
        query = sa.select(self.signals).where(signals.mailbox == mailbox, signals.done_at.is_(None))
        with self.database.transaction() as db:
            owed = db.execute(query.order_by(signals.id)).all()
            ids = list({row.message for row in owed})
            query = sa.select(self.messages).where(self.messages.c.id.in_(ids))
            messages = {row.id: message_from_row(row) for row in db.execute(query)} if ids else {}
        return [Signal(row.id, messages[row.message], State(row.state), row.channel, row.attempts) for row in owed]

    def given(self, signal: Signal, *, now: datetime) -> None:
        with self.database.transaction() as db:
            db.execute(self.signals.update().where(self.signals.c.id == signal.id).values(done_at=naive(now)))
            detail = {"state": signal.state.value, "channel": signal.channel}
            self.audit.write(db, signal.message.mailbox, signal.message.id, "deadline-signalled", detail, now)

    def failed(self, signal: Signal, error: str, *, now: datetime) -> None:
        """Note a signal that could not be given: it is tried again at the next sweep."""
        with self.database.transaction() as db:
            db.execute(
                self.signals.update()
                .where(self.signals.c.id == signal.id)
                .values(attempts=self.signals.c.attempts + 1, error=error)
            )
            detail = {"state": signal.state.value, "channel": signal.channel, "error": error}
            self.audit.write(db, signal.message.mailbox, signal.message.id, "deadline-signal-failed", detail, now)

    def _records(self, query: sa.Select[tuple[object, ...]]) -> list[MessageRecord]:
        with self.database.transaction() as db:
            return [message_from_row(row) for row in db.execute(query)]
