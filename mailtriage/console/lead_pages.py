"""Team leads' pages, read-only: what waits for a first response by deadline state, the report and its chart, and
recent decisions with why; and the admin's page of accounts and the console's audit. Customers' words appear here
only as ``review`` shows them (sender, subject), escaped like everything else."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from io import BytesIO
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailtriage.console.app import Console, Visitor, endpoint
from mailtriage.console.auth import ADMIN, READ_MAIL
from mailtriage.deadlines import format_span, policy_from_settings
from mailtriage.report import Report, chart, store_report
from mailtriage.store import Filters, Status
from mailtriage.views import Waiting, decisions, waiting

PAGE = 100
"""Decisions shown on a page; the next page starts after its last."""
STATES = ("breached", "warning", "on-track")
"""The order the waiting page shows them in: the most urgent first."""
CONSOLE_EVENTS = (
    "console-login", "console-login-refused", "console-logout", "console-refused", "console-account-added",
    "console-account-changed", "template-approved", "template-rejected",
)  # fmt: skip


def routes() -> list[Route]:
    return [
        Route("/waiting", endpoint(READ_MAIL)(_waiting)),
        Route("/report", endpoint(READ_MAIL)(_report)),
        Route("/report/chart.svg", endpoint(READ_MAIL)(_chart)),
        Route("/decisions", endpoint(READ_MAIL)(_decisions)),
        Route("/accounts", endpoint(ADMIN)(_accounts)),
    ]


@dataclass(frozen=True)
class WaitingRow:
    message: Waiting
    due: str
    """In the calendar's time zone."""
    left: str


def _waiting(console: Console, request: Request, visitor: Visitor, form: FormData | None) -> Response:
    policy = policy_from_settings(console.settings)
    if policy is None:
        return console.render(request, "waiting.html", enabled=False, groups={}, zone="", now="", total=0)
    now, zone = console.clock(), policy.display_zone
    groups: dict[str, list[WaitingRow]] = {state: [] for state in STATES}
    for message in waiting(console.store, policy, now):
        due = datetime.fromisoformat(message.due_at)
        left = format_span(timedelta(seconds=message.left_seconds))
        groups[message.state].append(WaitingRow(message, _local(due, zone), left))
    total = sum(len(rows) for rows in groups.values())
    return console.render(request, "waiting.html", enabled=True, groups=groups, zone=zone, now=_local(now, zone),
                          total=total)  # fmt: skip


def _report(console: Console, request: Request, visitor: Visitor, form: FormData | None) -> Response:
    since, problem = _since(request)
    built = store_report(console.store, console.settings, since=since, mailbox=None, now=console.clock())
    shown_since = since.date().isoformat() if since else ""
    return console.render(request, "report.html", report=built, since=shown_since, problem=problem,
                          uses=_draft_uses(built))  # fmt: skip


def _chart(console: Console, request: Request, visitor: Visitor, form: FormData | None) -> Response:
    since, _ = _since(request)
    out = BytesIO()
    chart(store_report(console.store, console.settings, since=since, mailbox=None, now=console.clock()), out, "svg")
    return Response(out.getvalue(), media_type="image/svg+xml")


def _decisions(console: Console, request: Request, visitor: Visitor, form: FormData | None) -> Response:
    params = request.query_params
    mailboxes, categories = [m.name for m in console.settings.mailboxes], [c.name for c in console.settings.categories]
    statuses = [s.value for s in Status]
    mailbox, category, status = (_one_of(params.get(name), known) for name, known in (
        ("mailbox", mailboxes), ("category", categories), ("status", statuses)))  # fmt: skip
    before = int(params["before"]) if params.get("before", "").isdigit() else None
    shown = Filters(PAGE + 1, mailbox, category, Status(status) if status else None, before=before)
    rows = decisions(console.store, shown)
    chosen = {"mailbox": mailbox or "", "category": category or "", "status": status or ""}
    narrowed = {name: value for name, value in chosen.items() if value}
    older = urlencode({**narrowed, "before": rows[PAGE - 1].id}) if len(rows) > PAGE else ""
    newest = urlencode(narrowed) if before is not None else None
    return console.render(request, "decisions.html", rows=rows[:PAGE], chosen=chosen, mailboxes=mailboxes,
                          categories=categories, statuses=statuses, older=older, newest=newest)  # fmt: skip


def _one_of(value: str | None, known: list[str]) -> str | None:
    """A filter's value when it is one of those it may be (anything else shows every decision)."""
    return value if value in known else None


def _accounts(console: Console, request: Request, visitor: Visitor, form: FormData | None) -> Response:
    now = console.clock()
    sessions = console.store.accounts.live_sessions(now)
    live = {session.account: 0 for session in sessions}
    for session in sessions:
        live[session.account] += 1
    events = console.store.audit.recent(CONSOLE_EVENTS, 100)
    return console.render(request, "accounts.html", accounts=console.store.accounts.all(), live=live, events=events)


def _since(request: Request) -> tuple[datetime | None, str]:
    """The report's start from ``?since=YYYY-MM-DD`` (UTC), and what was wrong with it, if anything."""
    value = request.query_params.get("since", "")
    if not value:
        return None, ""
    try:
        return datetime.fromisoformat(value[:10]).replace(tzinfo=UTC), ""
    except ValueError:
        return None, "since: a day as YYYY-MM-DD; the whole record is shown"


def _draft_uses(report: Report) -> list[tuple[str, dict[str, int], int]]:
    """Per template: its counts of each use and their total."""
    return [(template, counts, sum(counts.values())) for template, counts in report.drafts.items()]


def _local(moment: datetime, zone: str) -> str:
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo(zone)).strftime("%a %d %b %H:%M")
