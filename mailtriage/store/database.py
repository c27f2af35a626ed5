"""The database under the store: one engine, the tables as the migrations made them, and one transaction scope
that every repository shares (so a batch of them commits together or not at all)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from mailtriage.errors import StoreError
from mailtriage.files import create_private

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
MIGRATION_LOCK = 0x6D61696C74726961
"""The PostgreSQL advisory lock held while migrating ("mailtria")."""
TABLES = (
    "sync_state", "messages", "audit_log", "deadline_signals", "mailbox_health", "mailbox_leases", "daemons",
    "console_accounts", "console_sessions",
)  # fmt: skip


class Database:
    """An engine on ``url`` with the schema brought up to date; safe to share between threads (one connection per
    transaction, or per ``batch`` in a thread)."""

    def __init__(self, url: str, busy_timeout: float = 30.0) -> None:
        self.url = url
        try:
            self.engine = _engine(url, busy_timeout)
            self.migrate()
            # The migrations are the one definition of the schema; the tables are read back from the database.
            schema = sa.MetaData()
            schema.reflect(self.engine, only=list(TABLES))
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"cannot open the store at {shown(url)}: {reason(exc)}") from None
        except ImportError as exc:  # the database's driver is an extra: pip install 'mailtriage[postgresql]'
            raise StoreError(
                f"cannot open the store at {shown(url)}: its database driver is not installed ({exc}); for "
                "PostgreSQL: pip install 'psycopg[binary]'"
            ) from None
        except CommandError as exc:  # a schema revision this version does not know: written by a newer one
            raise StoreError(
                f"cannot open the store at {shown(url)}: its schema is newer than this version of mailtriage "
                f"knows ({exc}); upgrade mailtriage, or restore a backup made with this version"
            ) from None
        self.tables = schema.tables
        self._local = threading.local()

    def migrate(self) -> None:
        """Bring the schema up to the newest migration (a no-op when it already is)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Daemons started together on a new database would each create the tables: one at a time, the
                # others then find the schema up to date. (SQLite's write lock does this by itself.)
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def close(self) -> None:
        self.engine.dispose()

    def reconnect(self) -> None:
        """Let go of every pooled connection: the next transaction opens a fresh one."""
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
        with self.transaction() as db:
            self._local.db = db
            try:
                yield
            finally:
                self._local.db = None

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in a transaction: the thread's ``batch`` if one is open, else a new one."""
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
            raise StoreError(f"store {shown(self.url)}: {reason(exc)}") from None


def _engine(url: str, busy_timeout: float) -> Engine:
    parsed = sa.engine.make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3, the driver of the postgresql extra
    if parsed.get_backend_name() == "postgresql":
        # pre_ping: a connection the server or a network cut dropped is replaced before use, not failed on; a row
        # lock held longer than the busy timeout is an error, as SQLite's busy timeout is; the pool is sized for a
        # daemon's threads (one per mailbox job, its sweeps and listeners, at most a few at once).
        milliseconds = int(busy_timeout * 1000)
        return sa.create_engine(
            parsed, pool_pre_ping=True, pool_size=10, max_overflow=20, pool_timeout=busy_timeout,
            connect_args={"connect_timeout": max(1, int(busy_timeout)),
                          "options": f"-c lock_timeout={milliseconds} -c idle_in_transaction_session_timeout="
                                     f"{milliseconds * 4}"},
        )  # fmt: skip
    engine = sa.create_engine(parsed)
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


def shown(url: str) -> str:
    """A store URL with its password hidden."""
    return sa.engine.make_url(url).render_as_string(hide_password=True)


LOCKED = {"55P03", "40001", "40P01"}
"""PostgreSQL's lock timeout, serialization failure and deadlock: what SQLite calls "database is locked"."""


def reason(exc: Exception) -> str:
    """The database's own words, one line; a lock waited out is called so on either database."""
    original = getattr(exc, "orig", None)
    said = str(original or exc).strip().splitlines()[0]
    if getattr(original, "sqlstate", None) in LOCKED:
        return f"database is locked ({said}): another process holds it"
    return said


def storable(table: sa.Table, values: dict[str, Any]) -> dict[str, Any]:
    """A row as every database takes it: text within its column's width (SQLite ignores widths, PostgreSQL
    refuses a longer value), and no NUL character (PostgreSQL's text cannot hold one). Mail is hostile: a
    Message-ID of 100,000 characters, a subject with NULs, are stored cut short or with U+FFFD, never refused."""
    fitted = dict(values)
    for name, value in values.items():
        if isinstance(value, str):
            value = value.replace("\x00", "\ufffd")
            length = getattr(table.c[name].type, "length", None)
            fitted[name] = value[:length] if length else value
    return fitted
