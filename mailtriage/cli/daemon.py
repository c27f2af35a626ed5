"""Commands that set up and run the daemon: ``config check``, ``run``, ``demo``, ``status``."""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from mailtriage.cli.app import RET_MAILBOX, RET_OK, RET_STALE, errors_as_lines, main, settings_of, setup_logging
from mailtriage.compliance import template_warnings
from mailtriage.errors import MailboxError
from mailtriage.files import file_warnings
from mailtriage.mailbox import open_mailbox
from mailtriage.pipeline import CycleReport
from mailtriage.settings import Settings, find_config, load_settings, masked
from mailtriage.store import MessageRecord
from mailtriage.terminal import cell, clean, inline


@main.group()
def config() -> None:
    """Inspect the configuration.

    \b
    Example:
      mailtriage config check mailtriage.toml
    """


@config.command("check")
@click.argument("file", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--connect", is_flag=True, help="Also log in to every mailbox and say what its server offers.")
@click.pass_context
@errors_as_lines
def config_check(ctx: click.Context, file: Path | None, connect: bool) -> None:
    """Validate FILE and print the effective configuration, secrets masked (exit 2 on any bad value).

    Environment overrides (MAILTRIAGE_SECTION__KEY=value) are applied, relative paths resolved, and secret
    files and variables checked for readability. With --connect, log in to each mailbox and print what its
    server offers (IDLE, MOVE, UIDPLUS, SPECIAL-USE, NAMESPACE, CONDSTORE, keywords), what mailtriage will
    therefore do there, and the folders it resolved; exit 3 if a mailbox cannot be reached.

    \b
    Example:
      mailtriage config check config.example.toml
      mailtriage config check --connect mailtriage.toml
      MAILTRIAGE_SCHEDULE__POLL_INTERVAL=30 mailtriage config check
    """
    path = find_config(file or ctx.obj["config"])
    settings = load_settings(path)
    for warning in [*template_warnings(settings), *file_warnings(settings)]:
        click.echo(f"mailtriage: warning: {warning}", err=True)
    click.echo(f"# {path}: OK")
    click.echo(json.dumps(masked(settings), indent=2, ensure_ascii=False))
    if connect:
        sys.exit(_connect_all(settings))


def _connect_all(settings: Settings) -> int:
    """Describe every mailbox's server; the exit code: 0, or 3 when one could not be reached."""
    from mailtriage.mailbox.server import describe

    folders = [category.folder for category in settings.categories if category.folder]
    failed = False
    for configured in settings.mailboxes:
        mailbox = open_mailbox(configured)
        try:
            lines = describe(mailbox.profile(folders))  # folder names are the server's words
            click.echo(clean("\n".join(lines), newlines=True))
        except MailboxError as exc:
            click.echo(f"mailtriage: {exc}", err=True)
            failed = True
        finally:
            mailbox.close()
    return RET_MAILBOX if failed else RET_OK


@main.command()
@click.option("--once", is_flag=True, help="Run one cycle for every mailbox, print a summary per mailbox, exit.")
@click.option("--json", "as_json", is_flag=True, help="With --once: print the summary as JSON.")
@click.pass_context
@errors_as_lines
def run(ctx: click.Context, once: bool, as_json: bool) -> None:
    """Watch the configured mailboxes and triage new mail until stopped (SIGTERM or Ctrl-C).

    With --once, do one cycle and exit: 0 when every mailbox was read, 3 when one could not be.

    \b
    Example:
      mailtriage --config mailtriage.toml run
      mailtriage run --once --json     # from cron or a monitoring check
    """
    from mailtriage.wiring import daemon_from_settings

    settings = settings_of(ctx, secrets=True)
    for warning in template_warnings(settings):
        logging.getLogger("mailtriage").warning("%s", warning)
    daemon = daemon_from_settings(settings)
    if not once:
        daemon.run_forever()
        return
    reports = daemon.run_once()
    if as_json:
        click.echo(json.dumps([{**asdict(r), "reasons": sorted(r.reasons)} for r in reports], indent=2))
    else:
        for report in reports:
            click.echo(summary(report))
    sys.exit(RET_OK if all(report.ok for report in reports) else RET_MAILBOX)


def summary(report: CycleReport) -> str:
    if not report.ok:
        return f"{report.mailbox}: FAILED: {clean(report.error)}"  # the server's words are in it
    backlog = f", {report.backlog} left for the next cycle" if report.backlog else ""
    return f"{report.mailbox}: {report.new} new, {report.skipped} skipped, {report.failed} failed{backlog}"


@main.command()
@click.option("--keep", type=click.Path(path_type=Path, file_okay=False), help="Build the demo in DIR and keep it.")
@click.pass_context
@errors_as_lines
def demo(ctx: click.Context, keep: Path | None) -> None:
    """Triage ~30 sample support mails (English, French, German) from a temporary Maildir and show the result.

    Needs no configuration and no server.

    \b
    Example:
      mailtriage demo
      mailtriage demo --keep ./demo    # keep the Maildir, the store and a config to run the daemon on
    """
    from mailtriage.demo import run_demo, write_config

    setup_logging(ctx.obj["log_level"] or "WARNING")
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        reports, records = run_demo(keep)
    else:
        with tempfile.TemporaryDirectory(prefix="mailtriage-demo-") as workdir:
            reports, records = run_demo(Path(workdir))
    console = Console()
    console.print(_demo_table(records))
    for report in reports:
        console.print(summary(report))
    drafted = sum(1 for record in records if record.route and record.route.template)
    console.print(f"{drafted} reply drafts written to the Maildir's Drafts folder, threaded to their messages")
    if keep is not None:
        config = write_config(keep)
        click.echo(f"Maildir (drafts in {keep / 'Maildir' / '.Drafts'}) and store kept in {keep}")
        click.echo(f"Run the daemon on it (mail dropped into {keep / 'Maildir' / 'new'} is triaged within 10 s):")
        click.echo(f"  mailtriage --config {config} run")


def _demo_table(records: list[MessageRecord]) -> Table:
    table = Table(title="mailtriage demo: what one cycle did", expand=True)
    table.add_column("UID", justify="right", no_wrap=True)
    table.add_column("From", no_wrap=True, overflow="ellipsis", ratio=2)
    table.add_column("Subject", no_wrap=True, overflow="ellipsis", ratio=3)
    table.add_column("Lang", no_wrap=True)
    table.add_column("Decision", no_wrap=True)
    for record in records:
        decided = (
            f"{record.category} {record.confidence or 0:.2f}" if record.category else f"{record.status} ({record.kind})"
        )
        table.add_row(str(record.uid), cell(record.sender), cell(record.subject), record.language or "", decided)
    return table


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@click.pass_context
@errors_as_lines
def status(ctx: click.Context, as_json: bool) -> None:
    """Is the daemon working? Per mailbox: its last successful cycle, failures in a row and the last error, the
    backlog, today's mail by status and what waits for an answer; then the model, the templates and the heartbeat.

    Exits 0 when every mailbox completed a cycle within health.stale_after seconds, 5 otherwise: a monitoring
    check can alert on the exit code alone.

    \b
    Example:
      mailtriage status
      mailtriage status --json
      mailtriage status > /dev/null || echo "mailtriage needs a look"
    """
    from mailtriage.health import status as health_status
    from mailtriage.scheduler import utcnow
    from mailtriage.wiring import open_store

    settings = settings_of(ctx)
    now = utcnow()
    state = health_status(settings, open_store(settings), now)
    if as_json:
        click.echo(json.dumps(state, indent=2, ensure_ascii=False))
    else:
        _print_status(state, now)
    if not state["healthy"]:
        sys.exit(RET_STALE)


def _print_status(state: dict[str, Any], now: datetime) -> None:
    from mailtriage.deadlines import format_span

    def ago(moment: str | None) -> str:
        return "never" if moment is None else f"{format_span(now - datetime.fromisoformat(moment))} ago"

    console = Console()
    table = Table(title="mailboxes", expand=True)
    for column in ("Mailbox", "Last good cycle", "Failing", "Backlog", "Last 24 h", "Waiting for an answer"):
        table.add_column(column, overflow="fold")
    for box in state["mailboxes"]:
        counts = box["last_24h"]
        recorded = ", ".join(f"{n} {k.split(':', 1)[1]}" for k, n in sorted(counts.items()) if k.startswith("rec"))
        waiting = ", ".join(f"{n} {k.split(':', 1)[1]}" for k, n in sorted(counts.items()) if k.startswith("open"))
        last = ago(box["last_ok_at"])
        failing = f"{box['failures']} in a row: {box['last_error']}" if box["failures"] else "no"
        table.add_row(cell(box["name"]), f"[red]{last}[/red]" if box["stale"] else last,
                      f"[red]{inline(failing)}[/red]" if box["failures"] else failing, str(box["backlog"]),
                      cell(recorded or "nothing"), cell(waiting or "nothing"))  # fmt: skip
    console.print(table)
    model = state["model"]
    trained = f"version {model['version']}, trained {model['trained_at']}, macro-F1 {model['macro_f1']}"
    shown = f"[red]{inline(model['problem'])}[/red]" if model["problem"] else inline(trained)
    console.print(f"model {inline(model['path'])}: {shown}")
    if state["templates"]:
        console.print("templates: [yellow]" + inline("; ".join(state["templates"])) + "[/yellow]")
    else:
        console.print("templates: every template in use is approved as it is")
    if state["heartbeat"]:
        heartbeat = state["heartbeat"]
        console.print(f"heartbeat {inline(heartbeat['file'])}: written {ago(heartbeat['written_at'])}")
    verdict = "healthy" if state["healthy"] else "[red]not healthy[/red]: a mailbox has no recent good cycle"
    console.print(f"{verdict} (stale after {state['stale_after_seconds']:.0f} s)")
