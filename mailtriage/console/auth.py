"""Who may use the console: passwords (Argon2id), the limit on failed logins, and which role may do what.

Pure but for the hashing and ``login_wait``, which reads the audit log: the clock is the caller's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mailtriage.sections import ConsoleSettings
from mailtriage.store import Account, AuditEvent, Store

_HASHER = PasswordHasher()
"""argon2-cffi's defaults: Argon2id, RFC 9106's low-memory profile (64 MiB, 3 passes)."""
_DUMMY = _HASHER.hash("an account that does not exist still costs a hash")
"""Verified against when the account is unknown, so a wrong name takes as long as a wrong password."""

READ_TEMPLATES = frozenset({"compliance", "lead", "admin"})
APPROVE = frozenset({"compliance", "admin"})
"""Who approves and rejects templates."""
READ_MAIL = frozenset({"lead", "admin"})
"""Who sees what customers wrote (senders, subjects): waiting messages, the report, decisions."""
ADMIN = frozenset({"admin"})


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def check_password(account: Account | None, password: str) -> bool:
    """Whether ``password`` is ``account``'s: False for no account, a disabled one, or one without a password."""
    usable = account.password_hash if account is not None and account.active else None
    try:
        return _HASHER.verify(usable or _DUMMY, password) and usable is not None
    except (VerificationError, InvalidHashError):
        return False


def password_problem(password: str) -> str | None:
    """Why ``password`` is too weak to set, or None."""
    if len(password) < 12:
        return "a password of at least 12 characters"
    if len(set(password)) < 5:
        return "a password of more than a few repeated characters"
    return None


LOGIN_EVENTS = ("console-login", "console-login-refused")
"""What a login limit reads of the audit log."""
WRONG_PASSWORD = frozenset({"wrong name or password", "wrong password"})
"""The refusals it counts: not those it made itself, nor an expired form."""
READ_AT_MOST = 10_000
"""Events read per check: the newest, which hold the failures that count even under a flood of refusals."""


@dataclass(frozen=True)
class LoginLimit:
    """At most ``attempts`` wrong passwords per account and per client address within ``window``.

    Counted from the audit log's logins and refusals, not kept in memory: a restart forgets nothing, and every
    console process and the command line count the same failures. A login clears its account's failures, not its
    address's."""

    attempts: int
    window: timedelta

    @classmethod
    def of(cls, config: ConsoleSettings) -> LoginLimit:
        return cls(config.login_attempts, timedelta(minutes=config.login_window_minutes))

    def wait(self, events: Iterable[AuditEvent], account: str, address: str | None, now: datetime) -> timedelta | None:
        """How long until a login to ``account`` from ``address`` (None: the command line, whose one address all
        its users share) may be tried again; None: now. ``events``: the audit's ``LOGIN_EVENTS``, newest first."""
        name = account.casefold()
        mine: list[datetime] = []
        theirs: list[datetime] = []
        cleared = False
        for event in events:
            if event.at <= now - self.window:
                break
            who = str(event.detail.get("account", "")).casefold()
            if event.action == "console-login":
                cleared = cleared or who == name
            elif event.detail.get("why") in WRONG_PASSWORD:
                if who == name and not cleared:
                    mine.append(event.at)
                if address is not None and event.detail.get("address") == address:
                    theirs.append(event.at)
        # Newest first: once the attempts-th newest failure is out of the window, fewer than ``attempts`` are in it.
        full = [times for times in (mine, theirs) if len(times) >= self.attempts]
        return max((times[self.attempts - 1] + self.window - now for times in full), default=None)


def login_wait(store: Store, limit: LoginLimit, account: str, address: str | None, now: datetime) -> timedelta | None:
    """``limit.wait`` on the logins and refusals the store's audit log holds within the window."""
    events = store.audit.recent(LOGIN_EVENTS, READ_AT_MOST, since=now - limit.window)
    return limit.wait(events, account, address, now)


def trusted(address: str | None, proxies: Iterable[str]) -> bool:
    """Whether a request from ``address`` comes from one of the trusted proxies (addresses or networks)."""
    if not address:
        return False
    try:
        peer = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(peer in ipaddress.ip_network(proxy, strict=False) for proxy in proxies)
