"""Moving a store to another database (SQLite to PostgreSQL, usually): every table of what the daemon recorded,
copied in one transaction, then checked by reading both sides back.

What is copied: the sync state, the messages, the audit log, the deadline signals and each mailbox's health, with
their ids, so the audit log's and the signals' references to messages still hold. What is not: the mailbox leases
and the daemons' registrations (``mailbox_leases``, ``daemons``), the state of daemons running on the old store;
the daemons make them again when they start on the new one. The copy is refused while a daemon holds a lease on the
source, and when the target already holds any row of a copied table.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailtriage.errors import StoreError
from mailtriage.store import Store
from mailtriage.store.database import shown
from mailtriage.store.leases import Lease

COPIED = ("sync_state", "messages", "audit_log", "deadline_signals", "mailbox_health", "console_accounts")
"""The tables copied, in foreign-key order: the messages before the audit events and signals that name them.
``mailbox_leases``, ``daemons`` and ``console_sessions`` are left out: they are the running daemons' and the
console's state, not the store's data (everyone signs in to the console again)."""
CHUNK = 5_000
"""Rows read, inserted and hashed at a time: memory stays bounded whatever the store's size."""


@dataclass(frozen=True)
class CopiedTable:
    """A table as it was checked on both sides: its rows and the SHA-256 of their canonical form."""

    name: str
    rows: int
    sha256: str


@dataclass(frozen=True)
class CopyReport:
    """A copy made and checked: ``target`` is its URL with the password hidden."""

    target: str
    tables: tuple[CopiedTable, ...]


def copy_store(
    source: Store,
    target_url: str,
    *,
    busy_timeout: float = 30.0,
    progress: Callable[[str, int], None] | None = None,
    now: datetime,
) -> CopyReport:
    """Copy every table of ``source`` listed in ``COPIED`` into the empty database at ``target_url`` (its schema
    is made there first), in one transaction, and check it: each table's rows and their SHA-256, read back from both.

    The source is read as one snapshot; ``progress`` hears a table's name and its rows copied so far after each
    chunk. On PostgreSQL the id sequences are set past the copied ids, so the daemon's next rows take new ones.

    Raises StoreError when a daemon holds a lease on the source at ``now``, when the target already holds rows,
    when either database fails, or when a table reads back differently from the target than from the source.
    """
    target = Store(target_url, busy_timeout)
    try:
        with source.batch(), source.database.transaction() as reading:
            _snapshot(reading)
            _refuse_working_daemons(source.leases.all(), now)
            with target.database.transaction() as writing:
                _take_for_writing(writing)
                _refuse_rows(writing, target, target_url)
                for name in COPIED:
                    _copy(reading, writing, source.database.tables[name], target.database.tables[name], progress)
                _advance_sequences(writing, target)
            expected = _digests(reading, source)
        copied = digests(target)
    finally:
        target.close()
    for was, got in zip(expected, copied, strict=True):
        if was != got:
            raise StoreError(
                f"the copy of {was.name} in {shown(target_url)} reads back differently from the source "
                f"({got.rows:,} rows, sha256 {got.sha256[:12]}; the source: {was.rows:,} rows, sha256 "
                f"{was.sha256[:12]}): do not use it; drop and recreate that database, then copy again"
            )
    return CopyReport(shown(target_url), copied)


def digests(store: Store) -> tuple[CopiedTable, ...]:
    """Each copied table of ``store`` with its rows and the SHA-256 of their canonical form, read as one snapshot:
    equal on two stores when they hold the same data, whichever databases they are."""
    with store.database.transaction() as db:
        _snapshot(db)
        return _digests(db, store)


def _snapshot(db: Connection) -> None:
    """Make ``db``'s transaction one consistent view of the database, before it reads anything.

    SQLite's driver opens a transaction only before a write, so each SELECT would see the database as it is then;
    PostgreSQL's default isolation also takes a new snapshot per statement.
    """
    if db.dialect.name == "sqlite":
        db.exec_driver_sql("BEGIN")
    elif db.dialect.name == "postgresql":
        db.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


def _take_for_writing(db: Connection) -> None:
    """On SQLite, take the write lock before checking that the target is empty: the check and the copy are then
    one transaction (PostgreSQL's unique ids refuse a row written meanwhile, and the copy is rolled back)."""
    if db.dialect.name == "sqlite":
        db.exec_driver_sql("BEGIN IMMEDIATE")


def _refuse_working_daemons(leases: Sequence[Lease], now: datetime) -> None:
    for lease in leases:
        if not lease.free_at(now):
            until = f" (until {lease.expires_at:%Y-%m-%d %H:%M:%S} UTC)" if lease.expires_at else ""
            raise StoreError(
                f"daemon {lease.owner} holds mailbox {lease.mailbox}'s lease{until}: stop the daemons first (then "
                "their leases are given back; a killed daemon's lease runs out by itself)"
            )


def _refuse_rows(db: Connection, target: Store, target_url: str) -> None:
    for name in COPIED:
        table = target.database.tables[name]
        rows = db.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
        if rows:
            held = f"{rows:,} row{'' if rows == 1 else 's'}"
            raise StoreError(
                f"the target store {shown(target_url)} is not empty ({name} holds {held}): copy into a new, empty "
                "database"
            )


def _copy(
    reading: Connection,
    writing: Connection,
    source: sa.Table,
    target: sa.Table,
    progress: Callable[[str, int], None] | None,
) -> None:
    """Insert the rows of ``source`` into ``target``, a chunk at a time (one executemany each), ids included.

    A JSON column's SQL NULL and JSON ``null`` both read as None, and are written as the daemon writes None there.
    """
    copied = 0
    for chunk in _chunks(reading, source):
        writing.execute(target.insert(), chunk)
        copied += len(chunk)
        if progress is not None:
            progress(source.name, copied)


def _chunks(db: Connection, table: sa.Table) -> Iterator[list[dict[str, Any]]]:
    """The rows of ``table`` in primary-key order, ``CHUNK`` at a time (streamed: a server-side cursor on
    PostgreSQL)."""
    result = db.execution_options(yield_per=CHUNK).execute(sa.select(table).order_by(*_key_order(db, table)))
    for rows in result.mappings().partitions(CHUNK):
        yield [dict(row) for row in rows]


def _key_order(db: Connection, table: sa.Table) -> list[sa.ColumnElement[Any]]:
    """The primary key, text compared byte by byte on either database (PostgreSQL's default collation orders
    'Zeta' after 'support', SQLite before it): both sides are hashed in the same order."""
    columns = list(table.primary_key.columns)
    if db.dialect.name != "postgresql":
        return list(columns)
    return [column.collate("C") if isinstance(column.type, sa.String) else column for column in columns]


def _advance_sequences(db: Connection, target: Store) -> None:
    """On PostgreSQL, set each serial id's sequence to the highest id copied: an insert without an id (every
    insert the daemon makes) takes the next one instead of colliding with a copied row."""
    if db.dialect.name != "postgresql":
        return  # SQLite gives a new row the highest id plus one
    for name in COPIED:
        table = target.database.tables[name]
        key = list(table.primary_key.columns)
        if len(key) == 1 and isinstance(key[0].type, sa.Integer):
            sequence = sa.func.pg_get_serial_sequence(name, key[0].name)
            db.execute(sa.select(sa.func.setval(sequence, sa.func.max(key[0]))))  # an empty table: left as it is


def _digests(db: Connection, store: Store) -> tuple[CopiedTable, ...]:
    return tuple(_digest(db, store.database.tables[name]) for name in COPIED)


def _digest(db: Connection, table: sa.Table) -> CopiedTable:
    """A table's rows counted and hashed: its column names, then one canonical JSON line per row, in primary-key
    order, each value as both databases agree on it (by its column's type: times as ISO strings, booleans as
    booleans where SQLite may hand back 0 or 1, JSON as the driver parsed it, dumped with sorted keys)."""
    columns = sorted(table.columns, key=lambda column: column.name)
    normal = [_normalizer(column.type) for column in columns]
    hashed = hashlib.sha256(json.dumps([column.name for column in columns]).encode() + b"\n")
    rows = 0
    query = sa.select(*columns).order_by(*_key_order(db, table))
    for chunk in db.execution_options(yield_per=CHUNK).execute(query).partitions(CHUNK):
        lines = (
            json.dumps([v if v is None or f is None else f(v) for f, v in zip(normal, row, strict=True)],
                       sort_keys=True, ensure_ascii=False)
            for row in chunk
        )  # fmt: skip
        hashed.update("".join(f"{line}\n" for line in lines).encode())
        rows += len(chunk)
    return CopiedTable(table.name, rows, hashed.hexdigest())


def _normalizer(kind: sa.types.TypeEngine[Any]) -> Callable[[Any], Any] | None:
    if isinstance(kind, sa.Boolean):
        return bool
    if isinstance(kind, sa.DateTime):
        return _iso
    return None


def _iso(value: datetime) -> str:
    """A stored time as an ISO string: naive, in UTC, as the store keeps times."""
    return (value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value).isoformat()
