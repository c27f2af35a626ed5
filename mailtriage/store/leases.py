"""Who works which mailbox: the daemons sharing a store, and a lease per mailbox held by one of them at a time.

A lease is a row (mailbox, owner, fencing token, expiry), not a PostgreSQL advisory lock: it works the same on
SQLite, outlives the connection that took it (a pooled connection dropped and reopened does not drop the lease, and
a proxy's transaction pooling cannot lose it), and ``status`` can show who holds it and since when. Its token rises
at every change of owner, and every batch a daemon records confirms its token in the same transaction, so a daemon
that lost a lease cannot record into that mailbox however late it notices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from mailtriage.store.database import Database
from mailtriage.store.records import naive, utc


@dataclass(frozen=True)
class Lease:
    """A mailbox held by ``owner`` until ``expires_at``, under fencing token ``token``."""

    mailbox: str
    owner: str | None
    token: int
    acquired_at: datetime | None
    expires_at: datetime | None

    def free_at(self, now: datetime) -> bool:
        """Whether anyone may take it at ``now``: nobody holds it, or its holder let it expire."""
        return self.owner is None or self.expires_at is None or self.expires_at <= now


@dataclass(frozen=True)
class DaemonRecord:
    """A daemon sharing the store: alive while it renews ``expires_at``."""

    name: str
    host: str
    pid: int
    started_at: datetime
    seen_at: datetime
    expires_at: datetime
    version: str


class Leases:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.table = database.tables["mailbox_leases"]
        self.daemons_table = database.tables["daemons"]

    # --- daemons --------------------------------------------------------------------------------------------------

    def join(self, daemon: DaemonRecord) -> None:
        """Register ``daemon`` (again, after a restart under the same name), and note each mailbox it may lease."""
        values = {"host": daemon.host, "pid": daemon.pid, "started_at": naive(daemon.started_at),
                  "seen_at": naive(daemon.seen_at), "expires_at": naive(daemon.expires_at),
                  "version": daemon.version}  # fmt: skip
        with self.database.transaction() as db:
            statement = _insert(db, self.daemons_table).values(name=daemon.name, **values)
            db.execute(statement.on_conflict_do_update(index_elements=["name"], set_=values))

    def offer(self, mailboxes: Sequence[str]) -> None:
        """Make sure each of these mailboxes has a lease row (free), without touching those that have one."""
        with self.database.transaction() as db:
            for mailbox in mailboxes:
                statement = _insert(db, self.table).values(mailbox=mailbox, owner=None, token=0)
                db.execute(statement.on_conflict_do_nothing(index_elements=["mailbox"]))

    def heartbeat(self, name: str, now: datetime, seconds: float) -> bool:
        """Say ``name`` is alive for another ``seconds``: False when its row is gone (it was taken for dead)."""
        until = naive(now + timedelta(seconds=seconds))
        column = self.daemons_table.c
        with self.database.transaction() as db:
            update = self.daemons_table.update().where(column.name == name)
            return bool(db.execute(update.values(seen_at=naive(now), expires_at=until)).rowcount)

    def leave(self, name: str) -> None:
        """``name`` stops: its leases are freed for the others at once and its row removed."""
        with self.database.transaction() as db:
            column = self.table.c
            db.execute(self.table.update().where(column.owner == name).values(owner=None, expires_at=None))
            db.execute(self.daemons_table.delete().where(self.daemons_table.c.name == name))

    def daemons(self) -> list[DaemonRecord]:
        """Every registered daemon, alive or not, oldest first."""
        column = self.daemons_table.c
        with self.database.transaction() as db:
            rows = db.execute(sa.select(self.daemons_table).order_by(column.started_at, column.name)).all()
        return [_daemon(row) for row in rows]

    def forget(self, names: Sequence[str]) -> None:
        """Remove the rows of daemons gone for good (their leases expired long ago)."""
        if names:
            with self.database.transaction() as db:
                db.execute(self.daemons_table.delete().where(self.daemons_table.c.name.in_(list(names))))

    # --- leases ---------------------------------------------------------------------------------------------------

    def all(self) -> list[Lease]:
        with self.database.transaction() as db:
            rows = db.execute(sa.select(self.table).order_by(self.table.c.mailbox)).all()
        return [_lease(row) for row in rows]

    def acquire(
        self, mailbox: str, owner: str, now: datetime, seconds: float, *, dead: Sequence[str] = ()
    ) -> Lease | None:
        """Take ``mailbox`` for ``owner`` if it is free at ``now`` (or held by one of the ``dead``, or by ``owner``
        itself before a restart), under a new fencing token; None when another daemon holds it."""
        column = self.table.c
        free = sa.or_(column.owner.is_(None), column.expires_at.is_(None), column.expires_at <= naive(now),
                      column.owner.in_([owner, *dead]))  # fmt: skip
        values = {"owner": owner, "token": column.token + 1, "acquired_at": naive(now),
                  "expires_at": naive(now + timedelta(seconds=seconds))}  # fmt: skip
        with self.database.transaction() as db:
            taken = db.execute(self.table.update().where(column.mailbox == mailbox, free).values(values)).rowcount
            if not taken:
                return None
            row = db.execute(sa.select(self.table).where(column.mailbox == mailbox)).one()
        return _lease(row)

    def renew(self, owner: str, leases: Sequence[Lease], now: datetime, seconds: float) -> list[Lease]:
        """Extend these leases of ``owner``: those it still holds under the same token, with their new expiry."""
        if not leases:
            return []
        column = self.table.c
        until = now + timedelta(seconds=seconds)
        kept: list[Lease] = []
        with self.database.transaction() as db:
            for lease in leases:
                held = column.mailbox == lease.mailbox, column.owner == owner, column.token == lease.token
                if db.execute(self.table.update().where(*held).values(expires_at=naive(until))).rowcount:
                    kept.append(Lease(lease.mailbox, owner, lease.token, lease.acquired_at, utc(naive(until))))
        return kept

    def release(self, lease: Lease) -> None:
        """Give a lease back: free for another daemon at once."""
        column = self.table.c
        held = column.mailbox == lease.mailbox, column.owner == lease.owner, column.token == lease.token
        with self.database.transaction() as db:
            db.execute(self.table.update().where(*held).values(owner=None, expires_at=None))

    def confirm(self, lease: Lease, now: datetime) -> bool:
        """Whether ``lease`` is still held, unexpired, under its token, checked inside the thread's transaction and
        kept so until it commits: a daemon taking the mailbox over waits for that commit (the row is locked by this
        update), then reads what it recorded."""
        column = self.table.c
        held = (column.mailbox == lease.mailbox, column.owner == lease.owner, column.token == lease.token,
                column.expires_at > naive(now))  # fmt: skip
        with self.database.transaction() as db:
            return bool(db.execute(self.table.update().where(*held).values(token=column.token)).rowcount)


def _insert(db: Connection, table: sa.Table) -> Any:
    """An INSERT that can say what to do on a conflict, in the dialect of ``db``."""
    dialect = postgresql if db.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _lease(row: sa.Row[Any]) -> Lease:
    return Lease(row.mailbox, row.owner, row.token, utc(row.acquired_at), utc(row.expires_at))


def _daemon(row: sa.Row[Any]) -> DaemonRecord:
    return DaemonRecord(row.name, row.host, row.pid, utc(row.started_at) or row.started_at,
                        utc(row.seen_at) or row.seen_at, utc(row.expires_at) or row.expires_at,
                        row.version)  # fmt: skip
