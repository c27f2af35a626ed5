"""``mailtriage console``: serve the web console; ``console user ...``: its accounts."""

from __future__ import annotations

import sys

import click

from mailtriage.cli.app import errors_as_lines, main, settings_of
from mailtriage.errors import AccountError
from mailtriage.store.accounts import ROLES

ADMIN_CLI = "command line"
"""Who the audit log says changed an account from the command line."""


@main.group("console", invoke_without_command=True)
@click.option("--host", help="Address to listen on (default: console.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on (default: console.port, 8025).")
@click.pass_context
@errors_as_lines
def console_group(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the web console, where compliance approves templates and team leads watch what waits. It listens on
    127.0.0.1 by default, for the company's reverse proxy to put TLS in front of it; nobody gets in without a
    console account.

    \b
    Example:
      mailtriage console user add amartin --role compliance --name "A. Martin"
      mailtriage console --port 8025
    """
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from mailtriage.console.app import create_app
    from mailtriage.scheduler import utcnow
    from mailtriage.wiring import open_store

    settings = settings_of(ctx)
    store = open_store(settings)
    if not store.accounts.all() and not settings.console.proxy_header:
        click.echo("note: no console accounts yet: add one with `mailtriage console user add`", err=True)
    app = create_app(settings, store, utcnow)
    uvicorn.run(app, host=host or settings.console.host, port=port or settings.console.port, log_config=None,
                proxy_headers=False, server_header=False)  # fmt: skip


@console_group.group("user")
def user_group() -> None:
    """The console's accounts: each has a role (compliance, lead, admin) and an Argon2-hashed password.

    \b
    Example:
      mailtriage console user add amartin --role compliance --name "A. Martin"
      mailtriage console user list
    """


@user_group.command("add")
@click.argument("account")
@click.option("--role", type=click.Choice(ROLES), required=True, help="compliance: templates; lead: mail; admin: both.")
@click.option("--name", "display_name", help="The person's name, shown with their approvals (default: ACCOUNT).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (else it is asked).")
@click.option("--proxy-only", is_flag=True, help="No password: signs in only through console.proxy_header.")
@click.pass_context
@errors_as_lines
def user_add(
    ctx: click.Context, account: str, role: str, display_name: str | None, password_stdin: bool, proxy_only: bool
) -> None:
    """Add a console account.

    \b
    Example:
      mailtriage console user add amartin --role compliance --name "A. Martin"
      printf '%s\\n' "$PASSWORD" | mailtriage console user add lead1 --role lead --password-stdin
      mailtriage console user add jdoe --role lead --proxy-only
    """
    from mailtriage.console.auth import hash_password
    from mailtriage.scheduler import utcnow
    from mailtriage.store import Account
    from mailtriage.wiring import open_store

    if not account.isprintable() or not 0 < len(account) <= 100 or account != account.strip():
        raise click.BadParameter("at most 100 printable characters, no spaces around", param_hint="ACCOUNT")
    store = open_store(settings_of(ctx))
    if store.accounts.get(account) is not None:
        raise AccountError(f"console account {account} exists already")
    hashed = None if proxy_only else hash_password(_new_password(account, password_stdin))
    now = utcnow()
    added = Account(account, (display_name or account).strip()[:200], role, hashed, now, now, None)
    if not store.accounts.add(added, by=ADMIN_CLI):
        raise AccountError(f"console account {account} exists already")
    click.echo(f"added console account {account} ({role})")


@user_group.command("list")
@click.pass_context
@errors_as_lines
def user_list(ctx: click.Context) -> None:
    """List the console's accounts with their roles and state.

    \b
    Example:
      mailtriage console user list
    """
    from mailtriage.terminal import clean
    from mailtriage.wiring import open_store

    accounts = open_store(settings_of(ctx)).accounts.all()
    for account in accounts:
        state = f"disabled {account.disabled_at:%Y-%m-%d}" if account.disabled_at else "active"
        sign_in = "password" if account.password_hash else "proxy only"
        click.echo(f"{clean(account.name)}\t{account.role}\t{sign_in}\t{state}\t{clean(account.display_name)}")
    if not accounts:
        click.echo("no console accounts (mailtriage console user add NAME --role ROLE)")


@user_group.command("password")
@click.argument("account")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
@click.pass_context
@errors_as_lines
def user_password(ctx: click.Context, account: str, password_stdin: bool) -> None:
    """Set a console account's password; its sessions end.

    \b
    Example:
      mailtriage console user password amartin
    """
    from mailtriage.console.auth import hash_password

    _change(ctx, account, "new password set", password_hash=hash_password(_new_password(account, password_stdin)))


@user_group.command("role")
@click.argument("account")
@click.argument("role", type=click.Choice(ROLES))
@click.pass_context
@errors_as_lines
def user_role(ctx: click.Context, account: str, role: str) -> None:
    """Give a console account another role; its sessions end.

    \b
    Example:
      mailtriage console user role jdoe admin
    """
    _change(ctx, account, f"role now {role}", role=role)


@user_group.command("disable")
@click.argument("account")
@click.pass_context
@errors_as_lines
def user_disable(ctx: click.Context, account: str) -> None:
    """Disable a console account: it cannot sign in, its sessions end; its approvals and audit stay.

    \b
    Example:
      mailtriage console user disable amartin
    """
    from mailtriage.scheduler import utcnow

    _change(ctx, account, "disabled", disabled_at=utcnow())


@user_group.command("enable")
@click.argument("account")
@click.pass_context
@errors_as_lines
def user_enable(ctx: click.Context, account: str) -> None:
    """Enable a disabled console account again.

    \b
    Example:
      mailtriage console user enable amartin
    """
    _change(ctx, account, "enabled", disabled_at=None)


def _change(ctx: click.Context, account: str, done: str, **values: object) -> None:
    from mailtriage.scheduler import utcnow
    from mailtriage.wiring import open_store

    if not open_store(settings_of(ctx)).accounts.change(account, utcnow(), by=ADMIN_CLI, **values):
        raise AccountError(f"no console account {account}")
    click.echo(f"console account {account}: {done}")


def _new_password(account: str, from_stdin: bool) -> str:
    from mailtriage.console.auth import password_problem

    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt(f"password for {account}", hide_input=True, confirmation_prompt=True, err=True)
    problem = password_problem(password)
    if problem:
        raise AccountError(f"refused: {problem}")
    return password
