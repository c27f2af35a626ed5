"""Deadline sweep benchmark: what one ``watch.sweep_deadlines`` costs as the store grows, with the open set fixed.

What it measures, in one run:

1. The time of a steady-state sweep of one mailbox, ``support``, for stores of ``--sizes`` messages (10, 100, 1,000
   and 50,000 by default) of which ``--open`` (100) are open: waiting for a first response, on track, due between
   4 h and 24 h after the sweep's ``now`` (the 4 h warning never comes, so no sweep changes anything). A store
   smaller than ``--open`` has all its messages open, and its row says so. Of the other messages, 70 % are
   answered (``deadline_state`` answered, ``answered_at`` set) and 30 % have no deadline (automatic mail,
   ``deadline_state`` NULL); they are older than the open ones.
2. Control rows that make the claim falsifiable: ``--control-open`` (1,000) open messages in a store of that many,
   and the same open messages in the largest store. If the sweep follows the open messages, those cost several
   times the 100-open rows, whatever the store's size; if it followed the store, the 50,000-message rows would.

Every store is a fresh SQLite file, filled with one executemany (the columns ``store.messages.record`` writes),
beside a ``MemoryMailbox`` whose INBOX holds every message at the UID the store records (flags: ``\\Seen``, plus
``\\Answered`` on the answered ones) and whose Sent folder holds 20 replies to answered messages. A sweep is
``sweep_deadlines(mailbox, store, policy, clock)`` with a clock that always says ``now``, the default signals (flags
only) and a 24 h target with a 4 h warning, as the daemon calls it: STATUS of Sent, the watched query, the flags of
the open messages, their state at ``now``, the owed signals. The first sweep of each store reads the Sent folder (as
the daemon's first sweep does) and a second warms up; then every sweep is timed with ``time.perf_counter``,
``--repeat`` (50) per store, the stores taking turns so that a slow moment of the machine falls on all of them. Each
sweep is checked to have changed nothing. One more sweep per store, untimed, counts the SQL statements it runs; the
largest store's are shown with SQLite's query plan, which says whether a statement reads an index or the whole
table.

The mailbox is in memory, so the figures are the sweep's own cost (the store and the Python around it) without the
IMAP round trips a real server adds: one STATUS of Sent and one flags fetch per folder of open messages per sweep.

Run it from the repository root (about ten seconds, most of it filling the two largest stores)::

    .venv/bin/python benchmarks/deadlines.py
    .venv/bin/python benchmarks/deadlines.py --sizes 100 1000 --repeat 20 --json deadlines.json

Machines are noisy, so the figures are read as ratios against a baseline from the same run: the sweep of the
smallest store that holds the full ``--open`` open messages (100 messages, all 100 open, by default).
Progress goes to stderr, the table to stdout; ``--json FILE`` writes the figures to FILE too (the JSON is
described in ``benchmarks/common.py``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from common import Figure, Machine, argument_parser, log, options_of, write_json

from mailtriage.deadlines import Policy, State, WarningRule
from mailtriage.mailbox.memory import MemoryMailbox
from mailtriage.models import MessageKind
from mailtriage.store import Status, Store
from mailtriage.watch import BY_SENT, Signals, sweep_deadlines

MAILBOX = "support"
SIZES = (10, 100, 1_000, 50_000)
OPEN = 100
CONTROL_OPEN = 1_000
ANSWERED_SHARE = 0.7
"""Of the messages not open: answered; the rest have no deadline (automatic mail)."""
SENT_REPLIES = 20
WARM_UP_SWEEPS = 2
"""The first reads the Sent folder (once per store, as in the daemon); the second is a steady-state sweep."""
SEED = 0
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
POLICY = Policy(target=timedelta(hours=24), warning=WarningRule(left=timedelta(hours=4)))
FIRST_DUE = timedelta(hours=4, minutes=1)
"""The soonest an open message is due after ``NOW``: past the 4 h warning, so every sweep finds it on track."""
LAST_DUE = timedelta(hours=24)
HISTORY = timedelta(days=180)
"""The messages not open arrived over this span, before the open ones."""


def naive(moment: datetime) -> datetime:
    """The store keeps naive UTC."""
    return moment.astimezone(UTC).replace(tzinfo=None)


@dataclass
class Case:
    """One store: its size, how many of its messages are open, and the sweeps timed on it."""

    messages: int
    open: int
    control: bool = False
    answered: int = 0
    no_deadline: int = 0
    statements: int = 0
    seconds: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.messages}-{self.open}"

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def p95_ms(self) -> float:
        ordered = sorted(self.seconds)  # nearest rank: a time one of the sweeps really took
        return ordered[math.ceil(0.95 * len(ordered)) - 1] * 1000


def cases(sizes: Sequence[int], open_count: int, control_open: int) -> list[Case]:
    """The rows: each size with ``open_count`` open (all of them when fewer), then the two control rows."""
    found = [Case(n, min(n, open_count)) for n in sorted(set(sizes))]
    controls = [control_open, max(sizes)] if max(sizes) > control_open else [control_open]
    found += [Case(n, control_open, control=True) for n in controls]
    return found


# --- the store and the mailbox -------------------------------------------------------------------------------------


def message_bytes(number: int, received: datetime, kind: str) -> bytes:
    sender = f"Customer {number} <customer{number}@example.com>"
    extra = ""
    if kind != "customer":
        sender, extra = f"Notifications <noreply{number}@service.example>", "Auto-Submitted: auto-generated\r\n"
    return (
        f"Message-ID: <q{number}@customer.example>\r\nFrom: {sender}\r\nTo: support@example.com\r\n"
        f"Subject: Question {number}\r\nDate: {format_datetime(received)}\r\n{extra}"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\nHello, question {number} here.\r\n"
    ).encode()


def row(number: int, data: bytes, received: datetime, kind: str) -> dict[str, Any]:
    """The columns ``store.messages.record`` writes for a message, as the pipeline would have recorded it."""
    customer = kind != "no-deadline"
    return {
        "mailbox": MAILBOX,
        "folder": "INBOX",
        "uidvalidity": 1,
        "uid": number,
        "message_id": f"<q{number}@customer.example>",
        "message_id_synthetic": False,
        "content_hash": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "sender": f"customer{number}@example.com" if customer else f"noreply{number}@service.example",
        "sender_name": f"Customer {number}" if customer else "Notifications",
        "subject": f"Question {number}",
        "sent_at": naive(received),
        "received_at": naive(received),
        "in_reply_to": None,
        "kind": MessageKind.CUSTOMER.value if customer else MessageKind.AUTO_REPLY.value,
        "kind_reason": "" if customer else "Auto-Submitted: auto-generated",
        "status": Status.ROUTED.value if customer else Status.SKIPPED.value,
        "new_text": f"Hello, question {number} here.",
        "attachments": [],
        "defects": [],
        "error": None,
        "recorded_at": naive(received + timedelta(seconds=30)),
        "category": "billing" if customer else None,
        "decided_by": "rule:billing" if customer else None,
        "due_at": naive(received + POLICY.target) if customer else None,
        "deadline_state": {"open": State.ON_TRACK.value, "answered": State.ANSWERED.value}.get(kind),
        "answered_at": naive(received + timedelta(hours=3)) if kind == "answered" else None,
        "answered_how": BY_SENT if kind == "answered" else None,
    }


def kinds(case: Case, rng: random.Random) -> list[str]:
    """What each message is, oldest first: the closed ones (answered and no-deadline, shuffled), then the open."""
    closed = case.messages - case.open
    case.answered = round(closed * ANSWERED_SHARE)
    case.no_deadline = closed - case.answered
    older = ["answered"] * case.answered + ["no-deadline"] * case.no_deadline
    rng.shuffle(older)
    return older + ["open"] * case.open


def received_times(case: Case) -> list[datetime]:
    """Arrival times, oldest first: the open ones so that they fall due from 4 h to 24 h after ``NOW``."""
    closed = case.messages - case.open
    start = NOW - POLICY.target - HISTORY
    older = [start + HISTORY * i / max(closed, 1) for i in range(closed)]
    spread = LAST_DUE - FIRST_DUE
    due = [NOW + FIRST_DUE + spread * i / max(case.open - 1, 1) for i in range(case.open)]
    return older + [moment - POLICY.target for moment in due]


def build(case: Case, workdir: Path, rng: random.Random) -> tuple[MemoryMailbox, Store]:
    """A fresh store holding ``case``'s messages and a mailbox whose INBOX holds them at the same UIDs."""
    store = Store(f"sqlite:///{workdir / f'store-{case.label}.db'}")
    mailbox = MemoryMailbox(MAILBOX)
    rows = []
    answered_ids = []
    for number, (kind, received) in enumerate(zip(kinds(case, rng), received_times(case), strict=True), start=1):
        data = message_bytes(number, received, kind)
        flags = {"\\Seen", "\\Answered"} if kind == "answered" else {"\\Seen"}
        uid = mailbox.append("INBOX", data, flags, internal_date=received)
        assert uid == number
        rows.append(row(number, data, received, kind))
        if kind == "answered":
            answered_ids.append(number)
    with store.engine.begin() as db:
        db.execute(store.messages.table.insert(), rows)
    # Replies already sent (to answered messages, or to mail older than the store): read by the first sweep only.
    for index in range(SENT_REPLIES):
        to = f"<q{answered_ids[-1 - index]}@customer.example>" if index < len(answered_ids) else f"<old{index}@x>"
        reply = (
            f"Message-ID: <r{index}@support.example>\r\nFrom: support@example.com\r\nTo: someone@example.com\r\n"
            f"Subject: Re: your question\r\nIn-Reply-To: {to}\r\nReferences: {to}\r\n\r\nAnswered.\r\n"
        ).encode()
        mailbox.append("Sent", reply, {"\\Seen"}, internal_date=NOW - timedelta(days=1))
    return mailbox, store


# --- sweeping ------------------------------------------------------------------------------------------------------


def sweep(mailbox: MemoryMailbox, store: Store) -> float:
    """One sweep at ``NOW``, checked to have changed nothing: its seconds."""
    start = time.perf_counter()
    # MemoryMailbox.append returns the new UID where the Mailbox protocol's returns None: nothing else differs.
    report = sweep_deadlines(mailbox, store, POLICY, lambda: NOW, Signals())  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    if report.answered or report.transitions or report.signalled or report.failed:
        raise RuntimeError(f"a sweep was not a steady-state sweep: {report}")
    return elapsed


def traced(store: Store, mailbox: MemoryMailbox) -> list[tuple[str, Any]]:
    """The SQL statements one (untimed) sweep runs, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def note(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", note)
    try:
        sweep(mailbox, store)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", note)
    return seen


def query_plans(store: Store, statements: list[tuple[str, Any]]) -> list[str]:
    """SQLite's query plan of each SELECT, one line each: the table it reads from, then the plan's steps."""
    lines = []
    with store.engine.connect() as db:
        for statement, parameters in statements:
            words = statement.split()
            if words[0].upper() != "SELECT":
                continue
            plan = db.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            table = words[[w.upper() for w in words].index("FROM") + 1]
            lines.append(f"  from {table:<16} " + "; ".join(str(step[-1]) for step in plan))
    return lines


def run(all_cases: list[Case], repeat: int, workdir: Path) -> list[str]:
    """Build every store, time ``repeat`` sweeps of each (taking turns), and return the largest store's plans."""
    rng = random.Random(SEED)
    opened: list[tuple[Case, MemoryMailbox, Store]] = []
    for case in all_cases:
        started = time.perf_counter()
        mailbox, store = build(case, workdir, rng)
        if store.messages.count(MAILBOX) != case.messages or len(store.deadlines.waiting(MAILBOX)) != case.open:
            raise RuntimeError(f"the store for {case.label} does not hold what it should")
        log(f"store of {case.messages:,} messages, {case.open:,} open: built in {time.perf_counter() - started:.1f} s")
        opened.append((case, mailbox, store))
    try:
        for _case, mailbox, store in opened:
            for _ in range(WARM_UP_SWEEPS):
                sweep(mailbox, store)
        log(f"timing {repeat} sweeps of each of {len(opened)} stores, taking turns")
        for index in range(repeat):
            for case, mailbox, store in opened[index % len(opened) :] + opened[: index % len(opened)]:
                case.seconds.append(sweep(mailbox, store))
        plans: list[str] = []
        largest = max(opened, key=lambda item: (item[0].messages, -item[0].open))
        for case, mailbox, store in opened:
            statements = traced(store, mailbox)
            case.statements = len(statements)
            if case is largest[0]:
                plans = query_plans(store, statements)
        return plans
    finally:
        for _, _, store in opened:
            store.close()


# --- the report ----------------------------------------------------------------------------------------------------


def baseline_of(all_cases: list[Case], open_count: int) -> Case:
    """The smallest store holding the full ``open_count`` open messages (else the first row)."""
    full = [c for c in all_cases if not c.control and c.open == open_count]
    return full[0] if full else all_cases[0]


def table(machine: Machine, all_cases: list[Case], open_count: int, repeat: int, plans: list[str]) -> str:
    base = baseline_of(all_cases, open_count)
    lines = [
        *machine.lines("mailtriage deadline sweep benchmark"),
        f"one sweep of mailbox {MAILBOX!r} at a fixed now, nothing to change (open messages due in 4-24 h, "
        f"24 h target, 4 h warning); median and p95 of {repeat} sweeps per store, stores taking turns",
        "",
        f"{'messages in store':>17} | {'open':>5} | {'answered':>8} | {'no deadline':>11} | {'median ms':>9} | "
        f"{'p95 ms':>7} | {'x baseline':>10} | {'SQL/sweep':>9}",
    ]
    lines.append("-" * len(lines[-1]))
    for case in all_cases:
        note = "  <- baseline" if case is base else "  (control)" if case.control else ""
        note = note or ("  (all open: store smaller than --open)" if case.open < open_count else "")
        lines.append(
            f"{case.messages:>17,} | {case.open:>5,} | {case.answered:>8,} | {case.no_deadline:>11,} | "
            f"{case.median_ms:>9.3f} | {case.p95_ms:>7.3f} | {case.median_ms / base.median_ms:>10.2f} | "
            f"{case.statements:>9}{note}"
        )
    lines += [
        "",
        *summary(all_cases, base),
        "",
        "query plans of the largest store's sweep (SQLite EXPLAIN QUERY PLAN):",
    ]
    lines += plans
    return "\n".join(lines)


def comparisons(all_cases: list[Case], base: Case) -> tuple[Case, list[tuple[Case, Case]]]:
    """What the findings compare: the largest store with the baseline's open count (store size at a fixed open
    count), and each control row with the row of its store size and the baseline's open count (open count at a
    fixed store size)."""
    same_open = [c for c in all_cases if not c.control and c.open == base.open]
    largest = max(same_open, key=lambda c: c.messages)
    pairs = []
    for control in (c for c in all_cases if c.control):
        peer = next((c for c in same_open if c.messages == control.messages), None)
        if peer is not None:
            pairs.append((control, peer))
    return largest, pairs


def summary(all_cases: list[Case], base: Case) -> list[str]:
    """The findings in words."""
    largest, pairs = comparisons(all_cases, base)
    lines = []
    if largest is not base:
        lines.append(
            f"{largest.messages:,} messages cost {largest.median_ms / base.median_ms:.2f}x what {base.messages:,} "
            f"cost with the same {base.open:,} open (~1 if the sweep ignores the closed messages)"
        )
    for control, peer in pairs:
        lines.append(
            f"in a store of {control.messages:,}, {control.open:,} open cost "
            f"{control.median_ms / peer.median_ms:.1f}x what {peer.open:,} open cost "
            f"(up to {control.open / peer.open:.0f} if the sweep follows the open messages; "
            "its fixed part makes it less)"
        )
    return lines


def headlines(all_cases: list[Case], open_count: int) -> list[Figure]:
    """The findings as run_all.py's summary shows them."""
    base = baseline_of(all_cases, open_count)
    largest, pairs = comparisons(all_cases, base)
    found = [
        Figure(f"one sweep, store of {base.messages:,} ({base.open:,} open): median", f"{base.median_ms:.2f} ms",
               "(baseline)"),
    ]  # fmt: skip
    if largest is not base:
        figure = f"one sweep, store of {largest.messages:,} vs {base.messages:,}, {base.open:,} open"
        found.append(Figure.flat(figure, largest.median_ms / base.median_ms))
    for control, peer in pairs:
        figure = f"control: {control.open:,} vs {peer.open:,} open, store of {control.messages:,}"
        found.append(Figure(figure, f"{control.median_ms / peer.median_ms:.2f}", "> 1 (follows the open set)"))
    return found


def figures(all_cases: list[Case], open_count: int, repeat: int, plans: list[str]) -> dict[str, Any]:
    base = baseline_of(all_cases, open_count)
    rows = []
    for case in all_cases:
        values = asdict(case)
        del values["seconds"]
        values |= {
            "median_ms": round(case.median_ms, 4),
            "p95_ms": round(case.p95_ms, 4),
            "ratio_to_baseline": round(case.median_ms / base.median_ms, 3),
        }
        rows.append(values)
    return {
        "repeat": repeat,
        "now": NOW.isoformat(),
        "baseline": base.label,
        "rows": rows,
        "query_plans": [line.strip() for line in plans],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="store sizes (default %(default)s)")
    parser.add_argument("--open", type=int, default=OPEN, help="open messages per store (default %(default)s)")
    parser.add_argument(
        "--control-open", type=int, default=CONTROL_OPEN, help="open messages of the control rows (default %(default)s)"
    )
    parser.add_argument("--repeat", type=int, default=50, help="timed sweeps per store (default %(default)s)")
    args = parser.parse_args(argv)
    if min(args.sizes) < 1 or args.open < 1 or args.control_open < 1 or args.repeat < 1:
        parser.error("--sizes, --open, --control-open and --repeat must be at least 1")
    logging.basicConfig(level=logging.WARNING)  # a steady-state sweep logs nothing at INFO anyway

    machine = Machine({"SQLite": sqlite3.sqlite_version})
    all_cases = cases(args.sizes, args.open, args.control_open)
    with tempfile.TemporaryDirectory(prefix="mailtriage-bench-") as workdir:
        plans = run(all_cases, args.repeat, Path(workdir))
    print(table(machine, all_cases, args.open, args.repeat, plans))
    write_json(args.json, "deadlines", machine, options_of(args), headlines(all_cases, args.open),
               figures(all_cases, args.open, args.repeat, plans))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
