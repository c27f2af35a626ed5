"""Commands that set up and run the daemon: ``config check``, ``run``, ``demo``, ``status``."""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from mailtriage import demo as sample
from mailtriage.cli.app import RET_MAILBOX, RET_OK, RET_STALE, errors_as_lines, main, settings_of, setup_logging
from mailtriage.compliance import template_warnings
from mailtriage.demo import DemoRun
from mailtriage.errors import MailboxError
from mailtriage.files import file_warnings
from mailtriage.mailbox import open_mailbox
from mailtriage.pipeline import CycleReport
from mailtriage.settings import Settings, find_config, load_settings, masked
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
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@errors_as_lines
def init(directory: Path) -> None:
    """Write a deployment to start from into DIRECTORY: a config with what a first mailbox needs, the reply
    templates with their lint policy and approvals (yours to edit and approve), and a models folder.

    Nothing is overwritten.

    \b
    Example:
      mailtriage init /etc/mailtriage
      mailtriage init site && mailtriage --config site/mailtriage.toml config check
    """
    from mailtriage.deployment import create, next_steps

    config = create(directory)
    click.echo(f"wrote {config}, {directory / 'templates'} and {directory / 'models'}. Next:")
    for number, step in enumerate(next_steps(config), start=1):
        click.echo(f"  {number}. {step}")


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
    if report.held_by is not None:
        return f"{report.mailbox}: not read, daemon {clean(report.held_by)} holds it"
    if not report.ok:
        return f"{report.mailbox}: FAILED: {clean(report.error)}"  # the server's words are in it
    backlog = f", {report.backlog} left for the next cycle" if report.backlog else ""
    return f"{report.mailbox}: {report.new} new, {report.skipped} skipped, {report.failed} failed{backlog}"


@main.command()
@click.option("--keep", type=click.Path(path_type=Path, file_okay=False), help="Build the demo in DIR and keep it.")
@click.option("--add-mail", is_flag=True, help="With --keep: drop one fresh sample mail into the kept demo, and stop.")
@click.pass_context
@errors_as_lines
def demo(ctx: click.Context, keep: Path | None, add_mail: bool) -> None:
    """Triage ~30 sample support mails (English, French, German) from a Maildir and show what was done with each.

    Needs no configuration and no server. With --keep the Maildir, the store and a config stay in DIR, to run
    the daemon on; --add-mail then drops a new sample mail into DIR for that daemon to triage.

    \b
    Example:
      mailtriage demo
      mailtriage demo --keep demo                        # keep it, with a config to run the daemon on
      mailtriage --config demo/mailtriage.toml run       # the daemon, on the kept demo
      mailtriage demo --keep demo --add-mail             # a new mail: the running daemon triages it
    """
    console = Console(highlight=False)
    setup_logging(ctx.obj["log_level"] or "WARNING")
    if add_mail:
        if keep is None:
            raise click.UsageError("--add-mail adds to a kept demo: give its folder with --keep DIR")
        added = sample.add_mail(keep)
        config = keep / "mailtriage.toml"
        console.print(f"added a sample mail to {inline(keep / sample.MAILDIR)} ({inline(added.name)}): a running "
                      "daemon triages it within seconds; then:")  # fmt: skip
        console.print(f"  mailtriage --config {inline(config)} review", soft_wrap=True)
        return
    console.print("mailtriage demo: 30 sample support mails in English, French and German, triaged as the daemon does")
    with console.status("starting") as status:
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            run = sample.run_demo(keep, status.update)
        else:
            with tempfile.TemporaryDirectory(prefix="mailtriage-demo-") as workdir:
                run = sample.run_demo(Path(workdir), status.update)
    _print_demo(console, run, keep)


def _print_demo(console: Console, run: DemoRun, keep: Path | None) -> None:
    if run.done:
        console.print(_demo_table(run))
    for report in run.reports:
        console.print(summary(report))
    if not run.done and run.earlier:
        console.print(f"nothing new: an earlier run triaged these {run.earlier} mails. Add one:")
        console.print(f"  mailtriage demo --keep {inline(keep)} --add-mail", soft_wrap=True)
    if keep is None:
        console.print(f"{run.drafted} reply drafts written. That Maildir was temporary; keep one, with a config to "
                      "run the daemon on:")  # fmt: skip
        console.print("  mailtriage demo --keep demo", soft_wrap=True)
        return
    config = sample.write_config(keep)
    drafts = keep / sample.MAILDIR / ".Drafts"
    console.print(f"{run.drafted} reply drafts written to {inline(drafts)}, threaded to their messages; the store is "
                  f"{inline(keep / 'mailtriage.db')}")  # fmt: skip
    console.print("Next: the daemon on this Maildir; a new mail for it to triage; what was decided, and why:")
    for command in (f"mailtriage --config {config} run", f"mailtriage demo --keep {keep} --add-mail",
                    f"mailtriage --config {config} review"):  # fmt: skip
        console.print(f"  {inline(command)}", soft_wrap=True)  # a command to copy: never broken over lines


def _demo_table(run: DemoRun) -> Table:
    table = Table(title="what this run did with each mail", expand=True)
    table.add_column("From", ratio=2, overflow="fold")
    table.add_column("Subject", ratio=3, overflow="fold")
    table.add_column("Lang", no_wrap=True)
    table.add_column("Category", ratio=2, overflow="fold")
    table.add_column("Done", ratio=3, overflow="fold")
    for item in run.done:
        record = item.record
        table.add_row(cell(record.sender), cell(record.subject), record.language or "", cell(item.decided),
                      cell(item.done))  # fmt: skip
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
    for column in ("Mailbox", "Worked by", "Last good cycle", "Failing", "Backlog", "Last 24 h",
                   "Waiting for an answer"):  # fmt: skip
        table.add_column(column, overflow="fold")
    for box in state["mailboxes"]:
        counts = box["last_24h"]
        recorded = ", ".join(f"{n} {k.split(':', 1)[1]}" for k, n in sorted(counts.items()) if k.startswith("rec"))
        waiting = ", ".join(f"{n} {k.split(':', 1)[1]}" for k, n in sorted(counts.items()) if k.startswith("open"))
        last = ago(box["last_ok_at"])
        failing = f"{box['failures']} in a row: {box['last_error']}" if box["failures"] else "no"
        owner = f"{cell(box['owner'])}, since {ago(box['owner_since'])}" if box["owner"] else "nobody now"
        table.add_row(cell(box["name"]), owner, f"[red]{last}[/red]" if box["stale"] else last,
                      f"[red]{inline(failing)}[/red]" if box["failures"] else failing, str(box["backlog"]),
                      cell(recorded or "nothing"), cell(waiting or "nothing"))  # fmt: skip
    console.print(table)
    if state["daemons"]:
        console.print(_daemons_table(state["daemons"], ago))
    model = state["model"]
    f1 = model["macro_f1"]
    measured = f"cross-validated macro-F1 {f1:.3f}" if f1 is not None else "not cross-validated (mailtriage evaluate)"
    trained = f"version {model['version']}, trained {model['trained_at']}, {measured}"
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


def _daemons_table(daemons: list[dict[str, Any]], ago: Callable[[str | None], str]) -> Table:
    table = Table(title="daemons sharing the store", expand=True)
    for column in ("Daemon", "Host, PID", "Version", "Started", "Last seen", "Mailboxes", "Recorded, 24 h"):
        table.add_column(column, overflow="fold")
    for daemon in daemons:
        seen = ago(daemon["seen_at"])
        table.add_row(cell(daemon["name"]), cell(f"{daemon['host']}, {daemon['pid']}"), cell(daemon["version"]),
                      ago(daemon["started_at"]), seen if daemon["alive"] else f"[red]{seen} (gone)[/red]",
                      str(daemon["mailboxes"]), str(daemon["recorded_24h"]))  # fmt: skip
    return table
