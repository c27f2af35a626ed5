"""Commands for reading what the daemon did and what waits: ``review``, ``deadlines``, ``report``."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from mailtriage.cli.app import errors_as_lines, main, settings_of
from mailtriage.store import Status
from mailtriage.terminal import cell
from mailtriage.views import Waiting

STATUSES = click.Choice([status.value for status in Status])


@main.command()
@click.option("-n", "--limit", default=50, show_default=True, help="How many decisions, newest first.")
@click.option("--mailbox", help="Only this mailbox.")
@click.option("--category", help="Only this category.")
@click.option("--status", type=STATUSES, help="Only messages with this status.")
@click.option("--decided-by", help="Only decisions by this: 'model', 'fallback', 'rule' or 'rule:NAME'.")
@click.option("--since", type=click.DateTime(), help="Only messages recorded since (UTC), e.g. 2026-11-23.")
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
@click.pass_context
@errors_as_lines
def review(
    ctx: click.Context,
    limit: int,
    mailbox: str | None,
    category: str | None,
    status: str | None,
    decided_by: str | None,
    since: datetime | None,
    as_json: bool,
) -> None:
    """Recent decisions: who decided each message's category (a rule or the model) and what was done; with
    --json, each draft's template, its content hash and who approved it.

    \b
    Example:
      mailtriage review
      mailtriage review --decided-by rule --since 2026-11-23
      mailtriage review --status needs-human --json
    """
    from mailtriage.store import Filters
    from mailtriage.views import decisions
    from mailtriage.wiring import open_store

    filters = Filters(limit, mailbox, category, Status(status) if status else None, decided_by, since)
    rows = decisions(open_store(settings_of(ctx)), filters)
    if as_json:
        click.echo(json.dumps([asdict(row) for row in rows], indent=2, ensure_ascii=False))
        return
    table = Table(title=f"the {len(rows)} latest decisions", expand=True)
    for column in ("Time", "From", "Subject", "Category", "Conf.", "Lang", "Decided by", "Draft", "Folder", "Status"):
        table.add_column(column, no_wrap=column not in ("From", "Subject", "Draft"), overflow="ellipsis")
    for row in rows:
        table.add_row(
            row.time[5:16].replace("T", " "), cell(row.sender), cell(row.subject), cell(row.category),
            f"{row.confidence:.2f}" if row.confidence is not None else "", cell(row.language),
            cell(row.decided_by), cell("; ".join(["yes", *row.notes]) if row.draft else "no"), cell(row.folder),
            cell(row.status),
        )  # fmt: skip
    Console().print(table)


@main.command()
@click.option("--at", "at", help="Show the states as they will be then: '2026-11-24 09:00', 'tomorrow 9:00', '+3h'.")
@click.option("--mailbox", help="Only this mailbox.")
@click.option("--json", "as_json", is_flag=True, help="Print the messages as JSON.")
@click.pass_context
@errors_as_lines
def deadlines(ctx: click.Context, at: str | None, mailbox: str | None, as_json: bool) -> None:
    """Messages waiting for a first response, soonest due first: sender, subject, category, due time, time
    left and state (on-track, warning, breached). Times are in the calendar's time zone; --at without a zone too.

    \b
    Example:
      mailtriage deadlines
      mailtriage deadlines --at "tomorrow 9:00"     # what is overdue by tomorrow at nine?
      mailtriage deadlines --json
    """
    from mailtriage.deadlines import parse_when, policy_from_settings
    from mailtriage.scheduler import utcnow
    from mailtriage.views import waiting
    from mailtriage.wiring import open_store

    settings = settings_of(ctx)
    policy = policy_from_settings(settings)
    if policy is None:
        click.echo("Deadlines are turned off (deadlines.enabled = false).")
        return
    now = utcnow()
    try:
        moment = parse_when(at, now, policy.display_zone) if at else now
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--at") from None
    rows = waiting(open_store(settings), policy, moment, mailbox)
    if as_json:
        out = {"at": moment.isoformat(), "messages": [asdict(row) for row in rows]}
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    _print_waiting(rows, policy.display_zone, None if at is None else moment)


def _print_waiting(rows: list[Waiting], zone_name: str, at: datetime | None) -> None:
    from zoneinfo import ZoneInfo

    from mailtriage.deadlines import format_span

    zone = ZoneInfo(zone_name)
    when = "now" if at is None else at.astimezone(zone).strftime("at %a %d %b %H:%M %Z")
    table = Table(title=f"{len(rows)} messages waiting for a first response, {when}", expand=True)
    for column in ("From", "Subject", "Category", "Due", "Left", "State"):
        table.add_column(column, no_wrap=column not in ("From", "Subject"), overflow="ellipsis")
    colours = {"on-track": "green", "warning": "yellow", "breached": "bold red"}
    for row in rows:
        due = datetime.fromisoformat(row.due_at).astimezone(zone).strftime("%a %d %b %H:%M")
        left, style = format_span(timedelta(seconds=row.left_seconds)), colours[row.state]
        table.add_row(cell(row.sender), cell(row.subject), cell(row.category), due, left,
                      f"[{style}]{row.state}[/{style}]")  # fmt: skip
    Console().print(table)


@main.command()
@click.option("--since", type=click.DateTime(), help="Only mail received since this day (UTC), e.g. 2026-11-01.")
@click.option("--mailbox", help="Only this mailbox.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print one CSV line per category and language.")
@click.option("--png", type=click.Path(path_type=Path, dir_okay=False), help="Also draw a chart into this PNG file.")
@click.pass_context
@errors_as_lines
def report(
    ctx: click.Context, since: datetime | None, mailbox: str | None, as_json: bool, as_csv: bool, png: Path | None
) -> None:
    """Per category and language: volume, median and 90th-percentile first-response time (on the configured
    clock), share answered within target, breaches, share classified automatically above the threshold,
    corrections by agents; and the words and phrases customers use most in each category.

    \b
    Example:
      mailtriage report --since 2026-11-01
      mailtriage report --csv > november.csv
      mailtriage report --since 2026-11-01 --png november.png
    """
    from mailtriage.report import chart, render, store_report, to_csv, to_json
    from mailtriage.scheduler import utcnow
    from mailtriage.wiring import open_store

    if as_json and as_csv:
        raise click.UsageError("--json or --csv, not both")
    settings = settings_of(ctx)
    start = since.replace(tzinfo=UTC) if since else None
    built = store_report(open_store(settings), settings, since=start, mailbox=mailbox, now=utcnow())
    if as_json:
        click.echo(json.dumps(to_json(built), indent=2, ensure_ascii=False))
    elif as_csv:
        click.echo(to_csv(built), nl=False)
    else:
        render(built, Console())
    if png is not None:
        chart(built, png)
        click.echo(f"Chart written to {png}", err=as_json or as_csv)
