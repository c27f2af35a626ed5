"""The ``mailtriage`` command: thin wrappers over the library.

Exit codes: 0 success; 1 unexpected error; 2 bad configuration; 3 a mailbox could not be read; 4 the store failed.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from mailtriage.errors import MailboxError, MailtriageError
from mailtriage.pipeline import CycleReport
from mailtriage.settings import Settings, find_config, load_settings, masked

RET_OK = 0
RET_MAILBOX = MailboxError.exit_code

F = TypeVar("F", bound=Callable[..., Any])


def _errors_as_lines(command: F) -> F:
    """Turn a MailtriageError into one line on stderr and its exit code, never a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MailtriageError as exc:
            click.echo(f"mailtriage: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for noisy in ("apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def _settings(ctx: click.Context) -> Settings:
    path = find_config(ctx.obj["config"])
    settings = load_settings(path)
    _setup_logging(ctx.obj["log_level"] or settings.logging.level)
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c", "--config", type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (default: $MAILTRIAGE_CONFIG, else ./mailtriage.toml).",
)  # fmt: skip
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), help="Override logging.level.")
@click.version_option(package_name="mailtriage")
@click.pass_context
def main(ctx: click.Context, config: Path | None, log_level: str | None) -> None:
    """Triage a customer-support inbox: read new mail from IMAP or a Maildir, exactly once, and record it.

    \b
    Example:
      mailtriage demo
      mailtriage --config /etc/mailtriage.toml run
    """
    ctx.obj = {"config": config, "log_level": log_level}


@main.group()
def config() -> None:
    """Inspect the configuration.

    \b
    Example:
      mailtriage config check mailtriage.toml
    """


@config.command("check")
@click.argument("file", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.pass_context
@_errors_as_lines
def config_check(ctx: click.Context, file: Path | None) -> None:
    """Validate FILE and print the effective configuration, secrets masked (exit 2 on any bad value).

    Environment overrides (MAILTRIAGE_SECTION__KEY=value) are applied, relative paths resolved, and secret
    files and variables checked for readability.

    \b
    Example:
      mailtriage config check config.example.toml
      MAILTRIAGE_SCHEDULE__POLL_INTERVAL=30 mailtriage config check
    """
    path = find_config(file or ctx.obj["config"])
    settings = load_settings(path)
    click.echo(f"# {path}: OK")
    click.echo(json.dumps(masked(settings), indent=2, ensure_ascii=False))


@main.command()
@click.option("--once", is_flag=True, help="Run one cycle for every mailbox, print a summary per mailbox, exit.")
@click.option("--json", "as_json", is_flag=True, help="With --once: print the summary as JSON.")
@click.pass_context
@_errors_as_lines
def run(ctx: click.Context, once: bool, as_json: bool) -> None:
    """Watch the configured mailboxes and triage new mail until stopped (SIGTERM or Ctrl-C).

    With --once, do one cycle and exit: 0 when every mailbox was read, 3 when one could not be.

    \b
    Example:
      mailtriage --config mailtriage.toml run
      mailtriage run --once --json     # from cron or a monitoring check
    """
    from mailtriage.scheduler import daemon_from_settings

    daemon = daemon_from_settings(_settings(ctx))
    if not once:
        daemon.run_forever()
        return
    reports = daemon.run_once()
    if as_json:
        click.echo(json.dumps([asdict(report) for report in reports], indent=2))
    else:
        for report in reports:
            click.echo(_summary(report))
    sys.exit(RET_OK if all(report.ok for report in reports) else RET_MAILBOX)


def _summary(report: CycleReport) -> str:
    if not report.ok:
        return f"{report.mailbox}: FAILED: {report.error}"
    backlog = f", {report.backlog} left for the next cycle" if report.backlog else ""
    return f"{report.mailbox}: {report.new} new, {report.skipped} skipped, {report.failed} failed{backlog}"


@main.command()
@click.option("--keep", type=click.Path(path_type=Path, file_okay=False), help="Build the demo in DIR and keep it.")
@click.pass_context
@_errors_as_lines
def demo(ctx: click.Context, keep: Path | None) -> None:
    """Triage ~30 sample support mails (English, French, German) from a temporary Maildir and show the result.

    Needs no configuration and no server.

    \b
    Example:
      mailtriage demo
      mailtriage demo --keep ./demo    # keep the Maildir and the store to look at
    """
    from mailtriage.demo import run_demo

    _setup_logging(ctx.obj["log_level"] or "WARNING")
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        reports, records = run_demo(keep)
    else:
        with tempfile.TemporaryDirectory(prefix="mailtriage-demo-") as workdir:
            reports, records = run_demo(Path(workdir))
    table = Table(title="mailtriage demo: what one cycle did", expand=True)
    table.add_column("UID", justify="right", no_wrap=True)
    table.add_column("From", no_wrap=True, overflow="ellipsis", ratio=2)
    table.add_column("Subject", no_wrap=True, overflow="ellipsis", ratio=3)
    table.add_column("Kind", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    for record in records:
        table.add_row(str(record.uid), record.sender, record.subject, record.kind, record.status)
    console = Console()
    console.print(table)
    for report in reports:
        console.print(_summary(report))
    if keep is not None:
        console.print(f"Maildir and store kept in {keep}")
