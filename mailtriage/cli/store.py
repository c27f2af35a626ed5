"""Commands for the store itself: ``store copy``."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from mailtriage.cli.app import errors_as_lines, main, settings_of


@main.group("store")
def store_group() -> None:
    """The store itself: copy it, all of it and checked, to another database (SQLite to PostgreSQL, usually).

    \b
    Example:
      mailtriage --config /etc/mailtriage/mailtriage.toml store copy --to postgresql://mailtriage@db.example.com/mailtriage
    """


@store_group.command("copy")
@click.option("--to", "to", required=True, metavar="URL",
              help="The database to copy into: new and empty (its schema is made), e.g. postgresql://USER@HOST/DB; "
                   "the password in ~/.pgpass or PGPASSWORD, not in the URL.")  # fmt: skip
@click.pass_context
@errors_as_lines
def store_copy(ctx: click.Context, to: str) -> None:
    """Copy the configured store into an empty database in one transaction, then check the copy: each table's
    rows and a SHA-256 of their contents, read back from both databases. Prints each table's rows and hash.

    Stop the daemons first: the copy is refused while a daemon holds a mailbox's lease. The mailbox leases and
    the daemons' registrations are not copied (they are the running daemons' state, made again when the daemons
    start on the new store). Nothing in the configured store is changed.

    \b
    Example:
      systemctl stop mailtriage
      mailtriage --config /etc/mailtriage/mailtriage.toml store copy --to postgresql://mailtriage@db.example.com/mailtriage
    """
    from mailtriage.scheduler import utcnow
    from mailtriage.settings import find_config
    from mailtriage.store.copy import copy_store
    from mailtriage.wiring import open_store

    settings = settings_of(ctx)
    source = open_store(settings)
    try:
        report = copy_store(source, to, busy_timeout=settings.store.busy_timeout, progress=_progress(), now=utcnow())
    finally:
        source.close()
    for table in report.tables:
        click.echo(f"{table.name}: {table.rows:,} rows, sha256 {table.sha256[:12]}")
    config = find_config(ctx.obj["config"])
    click.echo(
        f'copied and checked; next: set url = "{report.target}" under [store] in {config}, then start the daemons'
    )


def _progress() -> Callable[[str, int], None] | None:
    """Each chunk copied, on a terminal's stderr; nothing when stderr is a file or a pipe."""
    if not sys.stderr.isatty():
        return None
    return lambda table, rows: click.echo(f"copying {table}: {rows:,} rows", err=True)
