"""The web console's accounts and sessions.

An account is a name, a role and an Argon2 hash of its password (None for an account that signs in only through a
trusted reverse proxy). A session is a row keyed by the SHA-256 of its token: the browser holds the token, the
store only its hash, so neither a copy of the database nor its logs let anyone into a session. Every login, logout
and change to an account is written to the audit log in the same transaction as the change.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from mailtriage.store.audit import AuditLog
from mailtriage.store.database import Database
from mailtriage.store.records import naive, utc

ROLES = ("compliance", "lead", "admin")
"""compliance: reads and approves templates; lead: reads what waits, the report and the decisions; admin: both."""
NO_MAILBOX = ""
"""The audit log's mailbox column for the console's events: they belong to no mailbox."""


@dataclass(frozen=True)
class Account:
    name: str
    display_name: str
    role: str
    password_hash: str | None = field(repr=False)
    """Argon2id, as argon2-cffi encodes it; None: signs in only through the trusted proxy."""
    created_at: datetime
    changed_at: datetime
    disabled_at: datetime | None

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True)
class Session:
    """A signed-in browser: ``csrf`` is the token each of its forms must carry."""

    token_hash: str
    account: str
    csrf: str
    method: str
    """How it signed in: "password" or "proxy"."""
    address: str
    created_at: datetime
    seen_at: datetime
    expires_at: datetime
    ended_at: datetime | None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Accounts:
    def __init__(self, database: Database, audit: AuditLog) -> None:
        self.database = database
        self.audit = audit
        self.table = database.tables["console_accounts"]
        self.sessions = database.tables["console_sessions"]

    # --- accounts -------------------------------------------------------------------------------------------------

    def get(self, name: str) -> Account | None:
        with self.database.transaction() as db:
            row = db.execute(sa.select(self.table).where(self.table.c.name == name)).first()
        return None if row is None else _account(row)

    def all(self) -> list[Account]:
        with self.database.transaction() as db:
            return [_account(row) for row in db.execute(sa.select(self.table).order_by(self.table.c.name))]

    def add(self, account: Account, *, by: str) -> bool:
        """Add ``account``: False when the name is taken (nothing changes)."""
        with self.database.transaction() as db:
            if db.execute(sa.select(self.table.c.name).where(self.table.c.name == account.name)).first():
                return False
            db.execute(self.table.insert().values(
                name=account.name, display_name=account.display_name, role=account.role,
                password_hash=account.password_hash, created_at=naive(account.created_at),
                changed_at=naive(account.changed_at), disabled_at=None,
            ))  # fmt: skip
            detail = {"account": account.name, "role": account.role, "by": by}
            self.audit.write(db, NO_MAILBOX, None, "console-account-added", detail, account.created_at)
        return True

    def change(self, name: str, now: datetime, *, by: str, **values: Any) -> bool:
        """Set ``password_hash``, ``role``, ``display_name`` or ``disabled_at`` of account ``name``; a new password,
        role or disabling ends its sessions. False when there is no such account."""
        allowed = {"password_hash", "role", "display_name", "disabled_at"}
        assert set(values) <= allowed, set(values) - allowed
        column = self.table.c
        with self.database.transaction() as db:
            stored = {key: naive(value) if isinstance(value, datetime) else value for key, value in values.items()}
            update = self.table.update().where(column.name == name).values(changed_at=naive(now), **stored)
            if not db.execute(update).rowcount:
                return False
            if set(values) & {"password_hash", "role", "disabled_at"}:
                self._end_all(db, name, now)
            shown = sorted("password" if key == "password_hash" else key for key in values)
            detail = {"account": name, "changed": shown, "by": by,
                      **({"role": values["role"]} if "role" in values else {})}  # fmt: skip
            self.audit.write(db, NO_MAILBOX, None, "console-account-changed", detail, now)
        return True

    # --- sessions -------------------------------------------------------------------------------------------------

    def open_session(
        self, account: str, method: str, address: str, now: datetime, lifetime: timedelta
    ) -> tuple[str, Session]:
        """A new session for ``account`` (its login is audited): the token to give the browser, and the session."""
        token = secrets.token_urlsafe(32)
        session = Session(token_hash(token), account, secrets.token_urlsafe(32), method, address[:100], now, now,
                          now + lifetime, None)  # fmt: skip
        with self.database.transaction() as db:
            db.execute(self.sessions.insert().values(
                token_hash=session.token_hash, account=account, csrf=session.csrf, method=method,
                address=session.address, created_at=naive(now), seen_at=naive(now),
                expires_at=naive(session.expires_at), ended_at=None,
            ))  # fmt: skip
            detail = {"account": account, "method": method, "address": session.address}
            self.audit.write(db, NO_MAILBOX, None, "console-login", detail, now)
        return token, session

    def session(self, token: str, now: datetime, idle: timedelta) -> Session | None:
        """The live session whose token this is: not ended, not expired, used within ``idle``, its account active."""
        column, account = self.sessions.c, self.table.c
        query = (
            sa.select(self.sessions)
            .join(self.table, account.name == column.account)
            .where(column.token_hash == token_hash(token), column.ended_at.is_(None),
                   column.expires_at > naive(now), column.seen_at > naive(now - idle), account.disabled_at.is_(None))
        )  # fmt: skip
        with self.database.transaction() as db:
            row = db.execute(query).first()
        return None if row is None else _session(row)

    def touch(self, session: Session, now: datetime) -> None:
        """Note that ``session`` was used (at most once a minute: a page view is not worth a write)."""
        if now - session.seen_at < timedelta(minutes=1):
            return
        with self.database.transaction() as db:
            update = self.sessions.update().where(self.sessions.c.token_hash == session.token_hash)
            db.execute(update.values(seen_at=naive(now)))

    def end_session(self, session: Session, now: datetime, why: str) -> None:
        """End ``session`` (a logout, or its proxy identity changed); audited."""
        with self.database.transaction() as db:
            column = self.sessions.c
            ended = db.execute(
                self.sessions.update()
                .where(column.token_hash == session.token_hash, column.ended_at.is_(None))
                .values(ended_at=naive(now))
            ).rowcount
            if ended:
                detail = {"account": session.account, "method": session.method, "why": why}
                self.audit.write(db, NO_MAILBOX, None, "console-logout", detail, now)

    def live_sessions(self, now: datetime) -> list[Session]:
        column = self.sessions.c
        query = sa.select(self.sessions).where(column.ended_at.is_(None), column.expires_at > naive(now))
        with self.database.transaction() as db:
            return [_session(row) for row in db.execute(query.order_by(column.created_at))]

    def _end_all(self, db: sa.Connection, name: str, now: datetime) -> None:
        column = self.sessions.c
        db.execute(
            self.sessions.update().where(column.account == name, column.ended_at.is_(None)).values(ended_at=naive(now))
        )


def _account(row: sa.Row[Any]) -> Account:
    return Account(row.name, row.display_name, row.role, row.password_hash, _at(row.created_at),
                   _at(row.changed_at), utc(row.disabled_at))  # fmt: skip


def _session(row: sa.Row[Any]) -> Session:
    return Session(row.token_hash, row.account, row.csrf, row.method, row.address, _at(row.created_at),
                   _at(row.seen_at), _at(row.expires_at), utc(row.ended_at))  # fmt: skip


def _at(value: datetime) -> datetime:
    aware = utc(value)
    assert aware is not None
    return aware
