"""Who may use the console: passwords (Argon2id), the limit on failed logins, and which role may do what.

Pure but for the hashing: the clock is the caller's.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mailtriage.store import Account

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


@dataclass
class LoginLimit:
    """At most ``attempts`` failed logins per account and per client address within ``window``; thread-safe.

    Kept in the console's memory: a restart forgets the failures (every one is in the audit log regardless)."""

    attempts: int
    window: timedelta

    def __post_init__(self) -> None:
        self._failures: dict[str, deque[datetime]] = {}
        self._lock = threading.Lock()

    def refused(self, keys: Iterable[str], now: datetime) -> timedelta | None:
        """How long until a login for these keys (account, address) may be tried again; None: now."""
        with self._lock:
            waits = [self._wait(key, now) for key in keys]
        return max((wait for wait in waits if wait is not None), default=None)

    def failed(self, keys: Iterable[str], now: datetime) -> None:
        with self._lock:
            for key in keys:
                self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, account_key: str) -> None:
        """A good password clears the account's failures (not the address's)."""
        with self._lock:
            self._failures.pop(account_key, None)

    def _wait(self, key: str, now: datetime) -> timedelta | None:
        times = self._failures.get(key)
        if not times:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        if len(times) < self.attempts:
            return None
        return times[0] + self.window - now


def trusted(address: str | None, proxies: Iterable[str]) -> bool:
    """Whether a request from ``address`` comes from one of the trusted proxies (addresses or networks)."""
    if not address:
        return False
    try:
        peer = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(peer in ipaddress.ip_network(proxy, strict=False) for proxy in proxies)
