"""Who signs an approval or a rejection given at the command line: a console account whose password was checked,
or a bare name, recorded as such ("approved from the command line", the name unchecked)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import click

from mailtriage.compliance import COMMAND_LINE
from mailtriage.errors import AccountError
from mailtriage.settings import Settings
from mailtriage.store import Store
from mailtriage.store.accounts import NO_MAILBOX


@dataclass(frozen=True)
class Signer:
    by: str
    """The name recorded: the account's display name, or the name given."""
    account: str
    """The console account, its password checked; empty: none."""
    store: Store | None
    """Where the decision is audited; None without a configuration."""

    def audit(self, action: str, template: str, sha256: str, note: str, **extra: Any) -> None:
        if self.store is None:
            return
        detail = {"template": template, "sha256": sha256, "by": self.by, "account": self.account,
                  "via": COMMAND_LINE, "note": note, **extra}  # fmt: skip
        self.store.audit.add(NO_MAILBOX, action, detail, now=datetime.now(UTC))


def signer_for(settings: Settings | None, by: str, password_stdin: bool) -> Signer:
    """The signer ``by`` names: when it is a console account (of the configured store), its password is read
    (from standard input with ``password_stdin``, else asked) and checked.

    Raises:
        AccountError: the password is wrong, the account is disabled, or its role may not approve.
    """
    from mailtriage.console.auth import APPROVE, LoginLimit, check_password, login_wait
    from mailtriage.wiring import open_store

    if settings is None:
        click.echo("note: no configuration, so no console accounts: recorded as from the command line, the name "
                   "unchecked", err=True)  # fmt: skip
        return Signer(by, "", None)
    store = open_store(settings)
    account = store.accounts.get(by)
    if account is None:
        click.echo(f"note: {by!r} is no console account: recorded as from the command line, the name unchecked",
                   err=True)  # fmt: skip
        return Signer(by, "", store)
    if not account.active:
        raise AccountError(f"console account {by} is disabled")
    if account.role not in APPROVE:
        raise AccountError(f"console account {by} is a {account.role}: only compliance and admin accounts approve")
    wait = login_wait(store, LoginLimit.of(settings.console), by, None, datetime.now(UTC))
    if wait is not None:  # the console's limit: wrong passwords here count as the console's do
        _refused(store, by, "too many failed logins")
        minutes = max(1, round(wait.total_seconds() / 60))
        raise AccountError(f"too many wrong passwords for console account {by}: try again in {minutes} min")
    password = sys.stdin.readline().rstrip("\n") if password_stdin else click.prompt(
        f"password of console account {by}", hide_input=True, err=True
    )  # fmt: skip
    if not check_password(account, password):
        _refused(store, by, "wrong password")
        raise AccountError(f"wrong password for console account {by}")
    return Signer(account.display_name, account.name, store)


def _refused(store: Store, account: str, why: str) -> None:
    detail = {"account": account, "address": "command line", "why": why}
    store.audit.add(NO_MAILBOX, "console-login-refused", detail, now=datetime.now(UTC))
