"""The store: per-folder sync state, one row per message with every decision about it, deadlines and the signals
they owe, each mailbox's health, the leases through which daemons share the mailboxes, the web console's accounts
and sessions, and an append-only audit log.

SQLite by default (WAL), or PostgreSQL (psycopg 3) for several daemons sharing the mailboxes, through SQLAlchemy
Core; the schema is versioned by Alembic migrations under ``mailtriage/migrations`` and brought up to date whenever
a store is opened. Each concern is a small repository over one engine and one transaction scope:
``store.messages``, ``store.sync``, ``store.deadlines``, ``store.health``, ``store.leases``, ``store.accounts``,
``store.audit``; ``store.batch()`` makes the calls inside one transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mailtriage.store.accounts import Account, Accounts, Session
from mailtriage.store.audit import AuditLog
from mailtriage.store.database import Database
from mailtriage.store.deadlines import Deadlines
from mailtriage.store.health import Health
from mailtriage.store.leases import DaemonRecord, Lease, Leases
from mailtriage.store.messages import Messages, SyncStates
from mailtriage.store.records import (
    AuditEvent,
    Filters,
    MailboxHealth,
    MessageRecord,
    Outcome,
    Signal,
    Status,
    SyncState,
)

__all__ = [
    "Account", "AuditEvent", "DaemonRecord", "Filters", "Lease", "MailboxHealth", "MessageRecord", "Outcome", "Session",
    "Signal", "Status", "Store", "SyncState",
]  # fmt: skip


class Store:
    """The database behind mailtriage; safe to share between threads (one connection per transaction).

    Raises StoreError when it cannot be opened (unreachable, a driver missing, a schema newer than this version).
    """

    def __init__(self, url: str, busy_timeout: float = 30.0, *, daemon: str | None = None) -> None:
        """``daemon``: the name of the daemon using the store, noted on every message it records."""
        self.database = Database(url, busy_timeout)
        self.url = url
        self.engine = self.database.engine
        self.audit = AuditLog(self.database)
        self.sync = SyncStates(self.database)
        self.messages = Messages(self.database, self.sync, self.audit, daemon)
        self.deadlines = Deadlines(self.database, self.audit)
        self.health = Health(self.database)
        self.leases = Leases(self.database)
        self.accounts = Accounts(self.database, self.audit)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make the store calls inside, in this thread, one transaction: all of them are recorded, or none."""
        with self.database.batch():
            yield

    def reconnect(self) -> None:
        """Let go of every pooled connection: the next transaction opens a fresh one."""
        self.database.reconnect()

    def close(self) -> None:
        self.database.close()
