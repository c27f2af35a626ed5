"""Scale benchmark: throughput of 1, 2 and 3 ``mailtriage run`` daemons sharing one store and 30 mailboxes, as
ratios measured in the same run, and how long the others take to take over from a daemon that is killed or cut off.

What it measures, on one private Dovecot (``tests/dovecot.py``) and one private PostgreSQL (``tests/postgres.py``),
with a model trained once from the shipped seed mails (as the tests' ``seed_model`` fixture trains it):

1. Throughput. For N = 1, 2 and 3: a fresh database, 30 fresh Dovecot accounts and N daemon processes
   (``python -m mailtriage --config C run``, the configuration of ``tests/test_daemons.py``: every setting at its
   default but the mailboxes, the store, the model, ``schedule.poll_interval`` (2 s) and ``[cluster]`` with a
   ``name`` of each daemon's own and ``lease_seconds`` (6 s)). Once the daemons have split the 30 leases evenly
   (each owner's count within one of 30/N, read from ``mailbox_leases``), ``--mails-per-mailbox`` (M) customer
   mails (``tests/helpers.py`` ``order_mail``) are APPENDed to every INBOX, ten accounts at a time, and the clock
   runs from the start of that delivery to the moment the store's ``messages`` table holds all 30 * M of them with
   none ``pending`` (read every 0.1 s): each classified, routed, drafted and recorded. Throughput is messages over
   seconds; the figures are msg/s for each N and the ratios 2/1 and 3/1. How long the delivery alone took, and how
   many messages each daemon recorded, are printed beside them.
2. Takeover, on a fresh database and 30 fresh, empty accounts, with three daemons running and idle, the third of
   them reaching the database through a TCP proxy (``tests/proxy.py``):

   a. the first is sent SIGKILL: the time from the kill until every one of its mailboxes' leases is held by the
      others (``mailbox_leases.owner``, and the latest ``acquired_at``, written by the daemon that took it). On
      the same machine the dead process is known at once (mailtriage checks the pid of a daemon registered from
      its own host), so the bound is the next tick: ``min(lease_seconds / 3, poll_interval)``;
   b. once the two left have split the mailboxes evenly, the proxy is closed: the third daemon runs on but reaches
      the database no more, which is what a machine gone looks like to the others (its hostname is this machine's,
      and it cannot be faked, but its process stays alive, so its pid says nothing). Its leases must be waited out:
      the time from the cut to the takeover, against the bound ``lease_seconds + poll_interval``.

The CPU cores are shared: with N daemons, Dovecot, PostgreSQL and this benchmark on a machine of few cores, the
ratios say how well the work spreads over the daemons, not a speed-up that machine can give; the output says how
many cores there were (``os.cpu_count()``).

Run it by hand, as root (the private Dovecot stores mail as the ``mail`` user; PostgreSQL runs as ``postgres``),
with dovecot-imapd and postgresql installed (``tests/install-servers.sh``)::

    sudo .venv/bin/python benchmarks/scale.py                          # M = 200 mails a mailbox: about 5 minutes
    sudo .venv/bin/python benchmarks/scale.py --quick                  # M = 20: about 2 minutes
    sudo .venv/bin/python benchmarks/scale.py --mails-per-mailbox 100 --json scale.json

Progress goes to stderr, the table to stdout; ``--json FILE`` writes the figures to FILE too (the JSON is described
in ``benchmarks/common.py``).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from common import (
    INFO,
    ROOT,
    Figure,
    Machine,
    argument_parser,
    dovecot_missing,
    dovecot_version,
    log,
    options_of,
    private_dovecot,
    span,
    write_json,
)

from mailtriage.classify import save, seed_examples, train
from tests.dovecot import write_config
from tests.helpers import order_mail

if TYPE_CHECKING:
    from tests.dovecot import Account, DovecotServer
    from tests.postgres import PostgresServer
    from tests.proxy import Proxy

MAILBOXES = 30
DAEMONS = (1, 2, 3)
WARM_UP = 1
"""Mails a mailbox triaged before the timed ones (not counted): each daemon's first classification loads what it
loads lazily."""
DELIVERERS = 10
"""Accounts APPENDed to at once, each on a connection of its own."""
TICK_S = 0.1
"""How often the store is read while waiting."""
SPLIT_TIMEOUT_S = 120.0
EVENTS = {
    "errors": (" ERROR ", "Traceback"),
    "dropped": ("no longer holds its lease", "stopped acting on it"),
    "moved": ("taken over from",),
}
"""What ``Daemons.events`` counts in the daemons' logs: the words that mark each kind of line."""


# --- the daemons and what the store says of them ------------------------------------------------------------------


class Daemons:
    """``mailtriage run`` processes, each with its config and log in ``folder``; all ended by ``stop``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(folder / "cache")}

    def start(self, name: str, config: Path) -> None:
        command = [sys.executable, "-m", "mailtriage", "--config", str(config), "--log-level", "INFO", "run"]
        with self.log(name).open("wb") as errors:
            self.processes[name] = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors
            )

    def log(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def kill(self, name: str) -> float:
        """SIGKILL ``name``; the moment it was sent (time.time())."""
        process = self.processes[name]
        moment = time.time()
        process.send_signal(signal.SIGKILL)
        process.wait()
        return moment

    def check(self) -> None:
        """RuntimeError, with the end of its log, if a daemon not killed on purpose has ended."""
        for name, process in self.processes.items():
            if process.returncode is None and process.poll() is not None:
                tail = "\n".join(self.log(name).read_text(errors="replace").splitlines()[-15:])
                raise RuntimeError(f"daemon {name} exited with status {process.returncode}:\n{tail}")

    def mark(self) -> None:
        """From now on: what ``events`` counts."""
        self.marks = {name: self.log(name).stat().st_size for name in self.processes}

    def events(self, only: Sequence[str] | None = None) -> dict[str, int]:
        """Lines of every daemon's log since ``mark`` (or its start), by kind: ``errors`` (an ERROR or a traceback),
        ``dropped`` (a daemon stopped acting on a mailbox: its lease ran short or was lost) and ``moved`` (a mailbox
        taken over from another daemon)."""
        found: Counter[str] = Counter({kind: 0 for kind in EVENTS})
        for name in only or list(self.processes):
            with self.log(name).open("rb") as log_file:
                log_file.seek(getattr(self, "marks", {}).get(name, 0))
                for line in log_file.read().decode(errors="replace").splitlines():
                    found.update(kind for kind, words in EVENTS.items() if any(word in line for word in words))
        return dict(found)

    def stop(self) -> None:
        """SIGTERM to every daemon still running, then SIGKILL to any that has not ended 30 s later."""
        running = [process for process in self.processes.values() if process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class StoreView:
    """What the benchmark reads of the shared store, on a connection of its own (as ``tests/test_daemons.py``)."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url)

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        """The rows of ``query``; none while the daemons have not made the schema yet."""
        try:
            with self.engine.connect() as db:
                return [tuple(row) for row in db.execute(sa.text(query))]
        except sa.exc.ProgrammingError:
            return []

    def owners(self) -> Counter[str]:
        return Counter(str(row[0]) for row in self.rows("SELECT owner FROM mailbox_leases") if row[0] is not None)

    def even(self, names: Sequence[str]) -> bool:
        """Every mailbox leased, to exactly these daemons, each holding within one of its share."""
        owners = self.owners()
        share = MAILBOXES / len(names)
        return (sum(owners.values()) == MAILBOXES and set(owners) == set(names)
                and all(abs(count - share) < 1 for count in owners.values()))  # fmt: skip

    def settled(self, count: int) -> bool:
        """``count`` messages recorded and none left half done."""
        rows = self.rows("SELECT count(*), count(*) FILTER (WHERE status = 'pending') FROM messages")
        return rows == [(count, 0)]

    def recorded_by(self) -> dict[str, int]:
        return {str(d): int(n) for d, n in self.rows("SELECT daemon, count(*) FROM messages GROUP BY 1 ORDER BY 1")}

    def distinct(self) -> int:
        rows = self.rows("SELECT count(*) FROM (SELECT DISTINCT mailbox, message_id FROM messages) AS m")
        return int(rows[0][0]) if rows else 0

    def held_by(self, name: str) -> list[str]:
        return [str(row[0]) for row in self.rows(f"SELECT mailbox FROM mailbox_leases WHERE owner = '{name}'")]

    def taken(self, mailboxes: Sequence[str], gone: str) -> tuple[float, float] | None:
        """When the first and the last of these mailboxes were taken by another daemon (time.time(), from
        ``acquired_at``), once none is ``gone``'s or free; None before."""
        rows = [row for row in self.rows("SELECT mailbox, owner, acquired_at FROM mailbox_leases")
                if row[0] in mailboxes]  # fmt: skip
        if len(rows) != len(mailboxes) or any(owner in (gone, None) for _, owner, _ in rows):
            return None
        moments = [at.replace(tzinfo=UTC).timestamp() for _, _, at in rows]
        return min(moments), max(moments)

    def close(self) -> None:
        self.engine.dispose()


def wait_for(what: str, done: Callable[[], bool], daemons: Daemons, timeout: float) -> float:
    """Wait until ``done()`` (every TICK_S), checking that the daemons live on; the moment it was (time.time())."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return time.time()
        daemons.check()
        time.sleep(TICK_S)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


# --- the parts -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    dovecot: DovecotServer
    postgres: PostgresServer
    model: Path
    folder: Path
    lease_seconds: float
    poll_interval: float

    def accounts(self) -> list[Account]:
        accounts = [self.dovecot.new_account() for _ in range(MAILBOXES)]
        accounts[0].client().logout()  # a user just added logs in at once (one passwd-file each), checked once
        return accounts

    def config(self, name: str, accounts: Sequence[Account], url: str, folder: Path) -> Path:
        return write_config(
            folder / f"{name}.toml", accounts, url, self.model,
            schedule={"poll_interval": self.poll_interval},
            cluster={"name": name, "lease_seconds": self.lease_seconds},
        )  # fmt: skip


@dataclass(frozen=True)
class Throughput:
    daemons: int
    messages: int
    split_s: float
    """From the daemons' start until they had split the leases evenly."""
    delivery_s: float
    seconds: float
    """From the start of delivery until every message was recorded, none pending."""
    recorded_by: dict[str, int]
    """Messages each daemon recorded, the warm-up mails among them."""
    events: dict[str, int]
    """The daemons' log lines from the start of delivery on, by kind (``Daemons.events``)."""
    warm_up_s: float
    """From the end of the split until the warm-up mails were all recorded."""
    warm_up_events: dict[str, int]
    """The same, from their start to the end of the warm-up."""

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def throughput(setup: Setup, count: int, mails: int) -> Throughput:
    """``count`` daemons on a fresh database and 30 fresh accounts: M mails a mailbox, delivered once the leases
    are split, timed until all are recorded."""
    folder = setup.folder / f"n{count}"
    folder.mkdir()
    url = setup.postgres.new_database()
    accounts = setup.accounts()
    names = [f"d{i}" for i in range(1, count + 1)]
    daemons, store = Daemons(folder), StoreView(url)
    try:
        started = time.time()
        for name in names:
            daemons.start(name, setup.config(name, accounts, url, folder))
        split = wait_for(f"{count} daemon(s) to split the leases", lambda: store.even(names), daemons, SPLIT_TIMEOUT_S)
        log(f"  {count} daemon(s): leases split {dict(sorted(store.owners().items()))} after {split - started:.1f} s")
        warm = [order_mail(n, tag="w") for n in range(WARM_UP)]
        with ThreadPoolExecutor(DELIVERERS) as pool:
            list(pool.map(lambda account: account.append_many(warm), accounts))
        warmed = wait_for("the warm-up mails", lambda: store.settled(MAILBOXES * WARM_UP), daemons, 120)
        warm_up_events = daemons.events()
        daemons.mark()
        messages = [order_mail(n) for n in range(mails)]
        total = MAILBOXES * mails
        begun = time.time()
        with ThreadPoolExecutor(DELIVERERS) as pool:
            delivered = sum(pool.map(lambda account: account.append_many(messages), accounts))
        delivery = time.time() - begun
        assert delivered == total, (delivered, total)
        log(f"  delivered {total:,} mails in {delivery:.1f} s; waiting until all are recorded")
        everything = total + MAILBOXES * WARM_UP
        done = wait_for(f"{total:,} messages recorded", lambda: store.settled(everything), daemons, 120 + total / 5)
        seconds = done - begun
        if store.distinct() != everything:
            raise RuntimeError(f"{store.distinct()} distinct messages recorded, {everything} expected")
        recorded = store.recorded_by()
        result = Throughput(
            count, total, split - started, delivery, seconds, recorded, {}, warmed - split, warm_up_events
        )
        log(f"  {total:,} messages in {seconds:.1f} s: {result.rate:.1f} msg/s, by daemon {result.recorded_by}")
    finally:
        daemons.stop()
        store.close()
    return Throughput(**{**asdict(result), "events": daemons.events()})


@dataclass(frozen=True)
class Takeover:
    case: str
    gone: str
    mailboxes: int
    """How many mailboxes the daemon gone held."""
    first_s: float
    """From the kill (or cut) to the first of its mailboxes taken by another daemon (its ``acquired_at``)."""
    seconds: float
    """From the kill (or cut) to the last of them taken: the takeover time."""
    seen_s: float
    """From the kill (or cut) to the moment the benchmark saw them all taken (a check on the above)."""
    bound_s: float
    by: dict[str, int]
    """Who took them, how many each."""

    @property
    def meets(self) -> bool:
        return self.seconds <= self.bound_s


def lose(
    store: StoreView, daemons: Daemons, gone: str, case: str, bound: float, end: Callable[[], float]
) -> Takeover:  # fmt: skip
    """``end()`` ends ``gone`` (and says when): how long the others took to take its mailboxes over."""
    mailboxes = store.held_by(gone)
    log(f"  split {dict(sorted(store.owners().items()))}: {gone} {case}")
    moment = end()
    seen = wait_for(f"{gone}'s mailboxes taken over", lambda: store.taken(mailboxes, gone) is not None, daemons, 60)
    first, last = store.taken(mailboxes, gone) or (0.0, 0.0)
    by = Counter(str(row[1]) for row in store.rows("SELECT mailbox, owner FROM mailbox_leases") if row[0] in mailboxes)
    result = Takeover(case, gone, len(mailboxes), first - moment, last - moment, seen - moment, bound, dict(by))
    log(f"  {gone}'s {len(mailboxes)} mailboxes taken over {result.first_s:.2f} s (first) to {result.seconds:.2f} s"
        f" (last) after, by {result.by}")  # fmt: skip
    return result


def takeover(setup: Setup, rng: random.Random) -> tuple[Takeover, Takeover, dict[str, dict[str, int]]]:
    """Three idle daemons, the third through a proxy: d1 killed, then d3 cut off from the database; each at a
    random moment of the daemons' ticks."""
    from tests.proxy import Proxy

    folder = setup.folder / "takeover"
    folder.mkdir()
    url = setup.postgres.new_database()
    accounts = setup.accounts()
    proxy: Proxy | None = None
    daemons, store = Daemons(folder), StoreView(url)
    tick = min(setup.lease_seconds / 3, setup.poll_interval)

    def cut() -> float:
        assert proxy is not None
        proxy.close()
        return time.time()

    try:
        proxy = Proxy(setup.postgres.port)
        through_proxy = sa.engine.make_url(url).set(port=proxy.port).render_as_string(hide_password=False)
        for name in ("d1", "d2", "d3"):
            daemons.start(name, setup.config(name, accounts, through_proxy if name == "d3" else url, folder))
        wait_for("three daemons to split the leases", lambda: store.even(["d1", "d2", "d3"]), daemons,
                 SPLIT_TIMEOUT_S)  # fmt: skip
        time.sleep(2 * setup.poll_interval + rng.uniform(0, tick))  # idle: their first cycles (of empty mailboxes)
        killed = lose(store, daemons, "d1", "killed (SIGKILL), same host", tick, lambda: daemons.kill("d1"))
        wait_for("two daemons to split the leases", lambda: store.even(["d2", "d3"]), daemons, SPLIT_TIMEOUT_S)
        time.sleep(setup.poll_interval + rng.uniform(0, tick))
        bound = setup.lease_seconds + setup.poll_interval
        cut_off = lose(store, daemons, "d3", "cut off from the database", bound, cut)
    finally:
        if proxy is not None:
            proxy.close()
        daemons.stop()
        store.close()
    return killed, cut_off, {name: daemons.events([name]) for name in daemons.processes}


# --- the report ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Results:
    machine: Machine
    mails: int
    lease_seconds: float
    poll_interval: float
    runs: list[Throughput]
    killed: Takeover
    cut: Takeover
    takeover_events: dict[str, dict[str, int]]
    """Each takeover daemon's log lines, by kind (``Daemons.events``)."""

    def ratio(self, count: int) -> float:
        rates = {run.daemons: run.rate for run in self.runs}
        return rates[count] / rates[1]


def cores_note() -> str:
    cores = os.cpu_count() or 1
    if cores < max(DAEMONS) + 2:
        return (f"{cores} CPU cores: the daemons compete for them with Dovecot, PostgreSQL and this benchmark, so "
                "the ratios say how well the work spreads over the daemons, not a speed-up this machine can give "
                "(a daemon's work is bound by CPU: on too few cores a perfect spread shows as ratios that stay "
                "short of N)")  # fmt: skip
    return (f"{cores} CPU cores: room for {max(DAEMONS)} daemons beside Dovecot and PostgreSQL, so a ratio near N is "
            "a speed-up, as long as other processes leave the cores free")  # fmt: skip


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def headlines(results: Results) -> list[Figure]:
    rows = [Figure(f"throughput, {plural(run.daemons, 'daemon')}, {run.messages:,} msgs", f"{run.rate:.1f} msg/s")
            for run in results.runs]  # fmt: skip
    rows += [Figure(f"throughput ratio {n}/1 ({os.cpu_count()} cores)", f"{results.ratio(n):.2f}") for n in (2, 3)]
    for case, target in ((results.killed, "next tick"), (results.cut, "lease + poll")):
        rows.append(Figure.check(f"takeover after {case.gone} {case.case}, {case.mailboxes} mailboxes",
                                 f"{case.seconds:.2f} s", f"<= {case.bound_s:g} s ({target})", case.meets))  # fmt: skip
    return rows


def table(results: Results) -> str:
    lines = [
        *results.machine.lines("mailtriage scale benchmark"),
        f"{MAILBOXES} Dovecot mailboxes, one PostgreSQL store, {results.mails} mails a mailbox (after {WARM_UP} "
        f"not timed); daemons with lease_seconds {results.lease_seconds:g}, poll_interval {results.poll_interval:g},"
        " other settings default",
        "",
        "daemons | messages | split after | delivery | all recorded | of which after delivery |  msg/s | ratio | "
        "dropped | moved | recorded by daemon",
    ]
    for run in results.runs:
        by = ", ".join(f"{name} {count:,}" for name, count in run.recorded_by.items())
        ratio = results.ratio(run.daemons)
        tail = run.seconds - run.delivery_s
        lines.append(f"{run.daemons:>7} | {run.messages:>8,} | {run.split_s:>9.1f} s | {run.delivery_s:>6.1f} s | "
                     f"{run.seconds:>10.1f} s | {tail:>21.1f} s | {run.rate:>6.1f} | {ratio:>5.2f} | "
                     f"{run.events['dropped']:>7} | {run.events['moved']:>5} | {by}")  # fmt: skip
    warm = ", ".join(f"{run.daemons}: {run.warm_up_events['dropped']}" for run in results.runs)
    warm_times = ", ".join(f"{run.daemons}: {run.warm_up_s:.1f} s" for run in results.runs)
    errors = sum(run.events["errors"] + run.warm_up_events["errors"] for run in results.runs)
    lines += [
        "(all recorded: from the start of delivery to the last message recorded, none pending; the daemons work"
        " while the mail comes in, so where little is left after delivery, the delivery bounds the figure."
        " dropped: the times a"
        " daemon stopped acting on a mailbox, its lease ran short; moved: mailboxes taken over from another daemon;"
        " both from the start of delivery on. recorded by daemon counts the warm-up mails too)",
        f"warm-up ({WARM_UP} mail a mailbox, not timed), by number of daemons: {warm_times};"
        f" leases dropped during it by daemons {warm}",
        f"daemon log lines with ERROR or a traceback in the throughput runs: {errors}",
        f"note: {cores_note()}",
        "",
        "takeover, three idle daemons            | mailboxes | first taken | last taken | seen   | bound",
    ]
    for case in (results.killed, results.cut):
        lines.append(f"{case.gone + ' ' + case.case:<40} | {case.mailboxes:>9} | {case.first_s:>9.2f} s | "
                     f"{case.seconds:>8.2f} s | {case.seen_s:>4.2f} s | {case.bound_s:g} s")  # fmt: skip
    lines += [
        "(seconds from the kill or the cut, by the leases' acquired_at; taken over by "
        f"{results.killed.by} and {results.cut.by}. Bounds: a daemon killed on this host has its pid seen gone, "
        f"so the next tick, min(lease_seconds / 3, poll_interval) = {results.killed.bound_s:g} s; one cut off (as a "
        f"machine gone) has its leases waited out: lease_seconds + poll_interval = {results.cut.bound_s:g} s)",
    ]
    takeover = "; ".join(f"{name} {', '.join(f'{kind} {n}' for kind, n in counts.items())}"
                         for name, counts in results.takeover_events.items())  # fmt: skip
    lines.append(f"takeover daemons' log lines: {takeover} (d3's errors: it lost the database on purpose)")
    lines += ["", "summary:"]
    for row in headlines(results):
        target = f" (target {row.target}: {row.verdict})" if row.verdict != INFO else ""
        lines.append(f"  {row.figure}: {row.value}{target}")
    return "\n".join(lines)


def figures(results: Results) -> Mapping[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cores_note": cores_note(),
        "mailboxes": MAILBOXES,
        "mails_per_mailbox": results.mails,
        "warm_up_per_mailbox": WARM_UP,
        "lease_seconds": results.lease_seconds,
        "poll_interval": results.poll_interval,
        "throughput": [{**asdict(run), "msgs_per_s": round(run.rate, 2)} for run in results.runs],
        "ratios": {f"{n}/1": round(results.ratio(n), 3) for n in (2, 3)},
        "takeover": {"killed": asdict(results.killed), "cut_off": asdict(results.cut)},
        "takeover_events": results.takeover_events,
    }


# --- the run -------------------------------------------------------------------------------------------------------


def postgres_missing() -> bool:
    from tests.postgres import unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        print(f"scale benchmark: cannot start a private PostgreSQL: {reason}", file=sys.stderr)
    return reason is not None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--mails-per-mailbox", type=int, default=100, help="mails to each of the 30 mailboxes (100)")
    parser.add_argument("--lease-seconds", type=float, default=6.0, help="the daemons' lease_seconds (6)")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="the daemons' poll_interval (2)")
    parser.add_argument("--seed", type=int, default=0, help="for the random moments of the kill and the cut (0)")
    parser.add_argument("--quick", action="store_true", help="20 mails a mailbox")
    args = parser.parse_args(argv)
    if args.quick:
        args.mails_per_mailbox = 20
    if args.mails_per_mailbox < 1 or args.lease_seconds < 3 or args.poll_interval <= 0:
        parser.error("--mails-per-mailbox at least 1, --lease-seconds at least 3, --poll-interval above 0")
    if dovecot_missing("scale benchmark") or postgres_missing():
        return 1

    from tests.postgres import start_server

    machine = Machine({"Dovecot": dovecot_version()})
    with private_dovecot() as dovecot, tempfile.TemporaryDirectory(prefix="mailtriage-scale-") as name:
        folder = Path(name)
        postgres = start_server()
        try:
            versions = postgres.admin("SHOW server_version")
            machine.versions["PostgreSQL"] = str(versions[0][0]).split()[0]
            log(f"private PostgreSQL {machine.versions['PostgreSQL']} on 127.0.0.1:{postgres.port}")
            model = folder / "model" / "default.npz"
            model.parent.mkdir()
            begun = time.perf_counter()
            save(train(seed_examples(), folds=3, sources=["seed"]), model)
            log(f"seed model trained in {time.perf_counter() - begun:.1f} s")
            setup = Setup(dovecot, postgres, model, folder, args.lease_seconds, args.poll_interval)
            runs = []
            for count in DAEMONS:
                log(f"throughput with {count} daemon(s), {MAILBOXES} mailboxes x {args.mails_per_mailbox} mails")
                runs.append(throughput(setup, count, args.mails_per_mailbox))
            log("takeover: three idle daemons, one killed, then one cut off from the database")
            killed, cut, events = takeover(setup, random.Random(args.seed))
        finally:
            postgres.stop()
            shutil.rmtree(postgres.directory, ignore_errors=True)
    machine.done()
    results = Results(machine, args.mails_per_mailbox, args.lease_seconds, args.poll_interval, runs, killed, cut,
                      events)  # fmt: skip
    print(table(results))
    write_json(args.json, "scale", machine, options_of(args), headlines(results), figures(results))
    log(f"scale benchmark done in {span(machine.seconds or 0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
