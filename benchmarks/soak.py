"""Chaos soak: the real daemon against a private Dovecot while it is SIGKILLed, the server restarts and the store
turns read-only; then what was lost, recorded twice or drafted wrongly is counted, against the server and the store.

What it does, in one run:

1. Starts a private Dovecot (``tests/dovecot.py``) with one fresh account, trains the default model from the seed
   mails (``mailtriage train --out``) and writes a config like ``tests/dovecot.py``'s ``write_config``: the eight
   default categories, each with a folder (``Support/Defects``...; some with keywords, one with ``\\Flagged``),
   drafts from the shipped approved templates, a 2 s poll beside IDLE, short backoffs, the corrections sweep every
   10 s and the deadline sweep every 15 s.
2. Delivers ``--mails`` (600) mails over ``--seconds`` (150) in waves of varying size (20 on average), while the
   daemon runs: customer mail in English, French and German (the shipped demo mails, ``mailtriage/demo_mail``,
   each copy with a Message-ID and order numbers of its own), and among it mails with no Message-ID, pairs of
   *different* mails sharing one Message-ID, auto-replies, bounces and bulk mail; about one in ten is APPENDed
   already ``\\Seen``. Each carries an ``X-Soak-Mail`` header with its number, to find it on the server.
3. Runs the real daemon, ``python -m mailtriage --config C run`` (the long-running form, with IDLE), as a
   subprocess whose output goes to ``daemon.log`` in the work folder, and SIGKILLs it ``--kills`` (20) times at
   seeded random moments, restarting it at once each time. Each kill is one of: *at once* (whatever the daemon is
   doing, start-up included), *running* (once it is watching, after a random 0-2 s) or *mid-cycle* (once it is
   watching, 0-50 ms after the next message is committed to the store: its draft, flags and move are under way).
   A daemon that exits by itself is counted and started again.
4. Restarts Dovecot ``--restarts`` (2) times mid-run (``DovecotServer.restart``: every connection dropped), between
   waves, so that no APPEND of the soak's own is ever in doubt.
5. Once, makes the store read-only for ``--readonly-seconds`` (15), beginning between 60 % and 70 % of the run:
   the database file and its folder lose their write bits while the daemon runs (the ``-wal`` and ``-shm`` files
   SQLite keeps beside it are left as they are). SQLite checks permissions only when it opens a file, so
   connections the daemon already holds would go on writing: the last kill falls inside the window, and the
   daemon started then opens the store while it is read-only. The other kills all come before the window, so that
   daemon is the one that must record the rest of the mail, which goes on arriving after the window. The daemon
   runs as root without ``CAP_DAC_OVERRIDE`` (``setpriv``), so that file modes bind it as they bind any other user.
6. Lets the last daemon finish the backlog (until every delivered mail is recorded and none is pending, at most
   ``--drain-timeout`` seconds, or a minute without progress), stops it with SIGTERM and checks, from the server
   (every folder read) and the store (read-only):

   - **lost**: delivered, not recorded; **duplicated**: recorded more than once (by content hash);
   - **missing drafts**: a message recorded as routed with a template in its route and no draft in Drafts
     carrying its ``X-Mailtriage-Answers-Hash``; **duplicate drafts**: drafts beyond the first for one message;
   - **\\Seen set**: a message with ``\\Seen`` on the server that was not delivered with it (and, the other way,
     one delivered ``\\Seen`` that lost it);
   - **not exactly once on the server**: a delivered mail gone from the server, or there twice;
   - **pending at the end**: decided, but its draft, flags or move never done;
   - for information: messages routed to a folder but still in the inbox, tracebacks and errors in the log, how
     soon the store was written again after the read-only window and how many read-only errors the daemon logged
     after it.

Run it by hand, as root (the private Dovecot stores mail as the ``mail`` user), with dovecot-imapd installed::

    sudo .venv/bin/python benchmarks/soak.py                           # the defaults: about 3 minutes on 2 cores
    sudo .venv/bin/python benchmarks/soak.py --json soak.json --keep   # the figures as JSON too; keep the folders
    sudo .venv/bin/python benchmarks/soak.py --mails 2000 --kills 60 --restarts 5 --readonly-seconds 20 \\
        --seconds 450 --seed 7                                         # a longer soak: about 8 minutes

Each daemon start takes about 5 s (imports and the model) before it watches the mailbox; a kill that waits for a
watching daemon waits that long, so many kills in a short run stretch it past ``--seconds``.

Exit status 0 when nothing was lost, duplicated, left pending, missing a draft, drafted twice or marked ``\\Seen``
and every mail is on the server once; 1 when something was; 2 when the soak could not run. Timings differ from run
to run (the daemon and the server are real processes), so a seed fixes the plan (the mails, the waves, when each
kill and restart comes), not every interleaving. Progress goes to stderr, the table to stdout; ``--json FILE``
writes the figures to FILE too (the JSON is described in ``benchmarks/common.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import imapclient
from common import (
    ROOT,
    Figure,
    Machine,
    argument_parser,
    connect,
    dovecot_missing,
    dovecot_version,
    log,
    new_account,
    options_of,
    private_dovecot,
    span,
    write_json,
)

from mailtriage.draft import ANSWERS_HASH_HEADER, answers_hash
from mailtriage.store import Status

if TYPE_CHECKING:
    from tests.dovecot import Account, DovecotServer

ROUTED, PENDING = Status.ROUTED.value, Status.PENDING.value
"""Statuses as the store's messages table holds them: routed (all done), pending (decided, not all done yet)."""
SOAK_HEADER = "X-Soak-Mail"
SUPPORT_ADDRESS = "support@shop.example.com"
FOLDERS = {
    "defect-complaint": "Support/Defects", "return-refund": "Support/Returns", "repair": "Support/Repairs",
    "how-to": "Support/How-to", "spare-parts": "Support/Parts", "order-delivery": "Support/Orders",
    "billing": "Support/Billing", "feedback": "Support/Feedback",
}  # fmt: skip
KEYWORDS = {"return-refund": "$Returns", "billing": "$Billing", "defect-complaint": "$Defect"}
FLAGGED = {"defect-complaint"}
MEAN_WAVE = 20
SEEN_SHARE = 0.1
KINDS = {  # what is delivered, by share of the mails (a pair counts as two)
    "customer": 0.65, "no-message-id": 0.08, "shared-message-id": 0.06, "auto-reply": 0.07, "bounce": 0.06,
    "bulk": 0.07,
}  # fmt: skip
KILL_KINDS = {"at-once": 2, "running": 3, "mid-cycle": 5}
WINDOW_AT = (0.6, 0.7)
"""The read-only window begins between these shares of --seconds: the kills come before it, and the mail goes on
after it, for the daemon started in it to record."""
STALL_S = 60.0
"""The final drain gives up when nothing more has been recorded for this long."""
READY_TIMEOUT_S = 60.0
MID_CYCLE_WAIT_S = 10.0
TICK_S = 0.05
ORDER_NUMBER = re.compile(rb"\b([A-Z]{1,3})-(\d{4,6})\b")
DAEMON_READY = b"watching "


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the mail ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    number: int
    kind: str
    data: bytes
    seen: bool

    @property
    def content_hash(self) -> str:
        return sha256(self.data)


EXTRA_NOT_CUSTOMER = {  # beside the demo's bounce (10), newsletter (20) and out-of-office (30)
    "auto-reply": [
        b"From: Tom Baker <tom.baker@example.net>\nTo: Support <support@shop.example.com>\n"
        b"Subject: Out of Office: Re: your order A-10555\nMessage-ID: <oof@example.net>\n"
        b"Date: Mon, 23 Nov 2026 08:15:00 +0000\nX-Autoreply: yes\nContent-Type: text/plain; charset=utf-8\n\n"
        b"I am out of the office until Monday and will reply to your message when I am back.\n",
        b"From: Camille Martin <c.martin@example.org>\nTo: support@shop.example.com\n"
        b"Subject: =?utf-8?q?R=C3=A9ponse_automatique?=\nMessage-ID: <absence@example.org>\n"
        b"Date: Mon, 23 Nov 2026 09:00:00 +0100\nAuto-Submitted: auto-generated\n"
        b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
        b"Je suis absente jusqu'au 30 novembre, commande A-10666.\n",
    ],
    "bounce": [
        b"From: postmaster@mx.example.org\nTo: support@shop.example.com\nSubject: Delivery Status Notification\n"
        b"Message-ID: <dsn@mx.example.org>\nDate: Mon, 23 Nov 2026 10:00:00 +0000\n\n"
        b"Delivery to the following recipient failed permanently: nobody@example.org\n",
    ],
    "bulk": [
        b"From: Deals <deals@lists.example.com>\nTo: support@shop.example.com\nSubject: This week's offers\n"
        b"Message-ID: <deals@lists.example.com>\nDate: Mon, 23 Nov 2026 06:00:00 +0000\nPrecedence: list\n"
        b"List-Id: <deals.lists.example.com>\n\nKettles from 19.99, toasters from 24.99.\n",
    ],
}


def demo_mail() -> dict[str, list[bytes]]:
    """The shipped demo mails by what they are: customer mail, and the bounce, the newsletter and the
    out-of-office; with a few more of the last three."""
    folder = resources.files("mailtriage").joinpath("demo_mail")
    found: dict[str, list[bytes]] = defaultdict(list)
    not_customer = {"10": "bounce", "20": "bulk", "30": "auto-reply"}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".eml"):
            found[not_customer.get(entry.name[:2], "customer")].append(entry.read_bytes())
    for kind, extra in EXTRA_NOT_CUSTOMER.items():
        found[kind] += extra
    return dict(found)


def crlf(data: bytes) -> bytes:
    """CRLF line ends throughout, as on the wire: the server hands back the very bytes, so the hash is the same."""
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return data if data.endswith(b"\r\n") else data + b"\r\n"


class MailMaker:
    """Copies of the demo mails, each a different mail: a number of its own, a new Message-ID (or none, or one
    shared with another mail) and new order numbers of the same length (so quoted-printable lines stay valid)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.templates = demo_mail()

    def message_id(self, number: int, original: bytes) -> bytes:
        domain = original.rpartition(b"@")[2].rstrip(b">").strip() or b"customers.example"
        return b"<%s.%d@%s>" % (self.rng.randbytes(8).hex().encode(), number, domain)

    def vary(self, template: bytes, number: int, message_id: bytes | None) -> bytes:
        """A copy of ``template`` numbered ``number``: ``message_id`` None for a new Message-ID, b"" for none."""
        head, _, body = template.replace(b"\r\n", b"\n").partition(b"\n\n")
        lines = head.split(b"\n")
        at = next((i for i, line in enumerate(lines) if line.lower().startswith(b"message-id:")), None)
        if at is not None and message_id == b"":
            del lines[at]
        elif at is not None:
            lines[at] = b"Message-ID: " + (message_id or self.message_id(number, lines[at]))
        numbers: dict[bytes, bytes] = {}

        def renumber(match: re.Match[bytes]) -> bytes:
            digits = match.group(2)
            if digits not in numbers:
                numbers[digits] = str(self.rng.randrange(10 ** (len(digits) - 1), 10 ** len(digits))).encode()
            return match.group(1) + b"-" + numbers[digits]

        text = b"\n".join([f"{SOAK_HEADER}: {number}".encode(), *lines]) + b"\n\n" + body
        return crlf(ORDER_NUMBER.sub(renumber, text))

    def make(self, count: int) -> list[Mail]:
        """``count`` mails in a random order; a pair sharing a Message-ID may be split between waves."""
        mails: list[Mail] = []
        kinds, weights = list(KINDS), list(KINDS.values())
        while len(mails) < count:
            kind = self.rng.choices(kinds, weights)[0]
            if kind == "shared-message-id" and count - len(mails) < 2:
                kind = "customer"
            if kind == "shared-message-id":
                shared = b"<shared.%s@customers.example>" % self.rng.randbytes(8).hex().encode()
                for template in self.rng.sample(self.templates["customer"], 2):
                    mails.append(self._mail(len(mails) + 1, kind, template, shared))
                continue
            source = self.templates["customer" if kind == "no-message-id" else kind]
            message_id = b"" if kind == "no-message-id" else None
            mails.append(self._mail(len(mails) + 1, kind, self.rng.choice(source), message_id))
        self.rng.shuffle(mails)
        return mails

    def _mail(self, number: int, kind: str, template: bytes, message_id: bytes | None) -> Mail:
        return Mail(number, kind, self.vary(template, number, message_id), self.rng.random() < SEEN_SHARE)


# --- the plan ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wave:
    at: float
    mails: tuple[Mail, ...]


@dataclass(frozen=True)
class Kill:
    at: float
    kind: str
    delay: float
    """Seconds after the moment its kind waits for."""


@dataclass(frozen=True)
class Window:
    start: float
    seconds: float
    kill_after: float | None
    """Seconds after the window begins when the daemon is killed (and started again), None: not at all."""


@dataclass(frozen=True)
class Plan:
    seconds: float
    waves: tuple[Wave, ...]
    dovecot_restarts: tuple[float, ...]
    kills: tuple[Kill, ...]
    read_only: Window | None


def waves_of(mails: Sequence[Mail], seconds: float, rng: random.Random) -> tuple[Wave, ...]:
    """The mails cut at random points into waves of MEAN_WAVE on average, one every seconds / waves or so."""
    count = max(1, min(len(mails), round(len(mails) / MEAN_WAVE)))
    cuts = [0, *sorted(rng.sample(range(1, len(mails)), count - 1)), len(mails)] if count > 1 else [0, len(mails)]
    step = seconds / count
    return tuple(
        Wave(i * step + rng.uniform(0, step / 2), tuple(mails[a:b]))
        for i, (a, b) in enumerate(zip(cuts, cuts[1:], strict=False))
    )


def kills_of(count: int, seconds: float, until: float, rng: random.Random) -> tuple[Kill, ...]:
    """``count`` kills at random moments between 3 % of the run and ``until``."""
    kills = []
    for _ in range(count):
        kind = rng.choices(list(KILL_KINDS), list(KILL_KINDS.values()))[0]
        delay = {"at-once": 0.0, "running": rng.uniform(0, 2), "mid-cycle": rng.uniform(0, 0.05)}[kind]
        kills.append(Kill(rng.uniform(0.03 * seconds, max(0.03 * seconds, until)), kind, delay))
    return tuple(sorted(kills, key=lambda k: k.at))


def make_plan(mails: Sequence[Mail], args: argparse.Namespace, rng: random.Random) -> Plan:
    """With a read-only window, the last kill comes inside it, early enough that the daemon started then opens the
    store while it is read-only, and the others before it: that daemon is the one that must finish the run."""
    seconds, length = args.seconds, args.readonly_seconds
    window, kills, until = None, args.kills, 0.97 * seconds
    if length > 0:
        start = rng.uniform(*WINDOW_AT) * seconds
        kill_after = rng.uniform(0.5, max(0.5, min(length / 2, length - 6))) if kills else None
        window, kills, until = Window(start, length, kill_after), max(0, kills - 1), start - 1
    restarts = tuple(sorted(rng.uniform(0.1 * seconds, 0.9 * seconds) for _ in range(args.restarts)))
    return Plan(seconds, waves_of(mails, seconds, rng), restarts, kills_of(kills, seconds, until, rng), window)


# --- what happened -------------------------------------------------------------------------------------------------


@dataclass
class KillDone:
    at: float
    kind: str
    after_record: bool
    """mid-cycle: the kill came right after a message was committed (else it waited in vain and killed anyway)."""


@dataclass
class Exit:
    at: float
    returncode: int
    last_lines: list[str]


@dataclass
class Run:
    """What the soak did, filled in by its two threads as they go."""

    started: float = field(default_factory=time.monotonic)
    delivered: list[Mail] = field(default_factory=list)
    kills: list[KillDone] = field(default_factory=list)
    dovecot_restarts: list[float] = field(default_factory=list)
    """Seconds each restart took."""
    read_only_from: datetime | None = None
    read_only_until: datetime | None = None
    append_retries: int = 0
    failures: list[str] = field(default_factory=list)
    """A thread of the soak that failed, and why: the run's figures cannot be trusted then."""

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def wait_until(self, at: float, tick: Callable[[], None] | None = None) -> None:
        while self.elapsed() < at:
            if tick is not None:
                tick()
            time.sleep(min(TICK_S, max(0.0, at - self.elapsed())))


# --- the store, read beside the daemon -----------------------------------------------------------------------------


def query(database: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows from the store, read-only; none while it does not exist yet or has no schema."""
    if not database.exists():
        return []
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
            return db.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []


def last_record(database: Path) -> int:
    rows = query(database, "SELECT max(id) FROM messages")
    return int(rows[0][0] or 0) if rows else 0


def progress(database: Path, hashes: set[str]) -> tuple[int, int]:
    """(delivered mails recorded, messages pending)."""
    rows = query(database, "SELECT content_hash, status FROM messages")
    return len(hashes & {h for h, _ in rows}), sum(status == PENDING for _, status in rows)


@dataclass(frozen=True)
class Record:
    id: int
    content_hash: str
    status: str
    kind: str
    route: dict[str, Any]
    recorded_at: datetime


def records(database: Path) -> list[Record]:
    rows = query(database, "SELECT id, content_hash, status, kind, route, recorded_at FROM messages ORDER BY id")
    return [
        Record(i, h, status, kind, json.loads(route) if route else {}, datetime.fromisoformat(at).replace(tzinfo=UTC))
        for i, h, status, kind, route, at in rows
    ]


def audit_counts(database: Path) -> dict[str, int]:
    """How many audit events of each action the store holds."""
    return {str(a): int(n) for a, n in query(database, "SELECT action, count(*) FROM audit_log GROUP BY action")}


def make_read_only(folder: Path, database: Path) -> dict[Path, int]:
    """Take the write bits off the database file and its folder; returns their modes, to restore."""
    modes = {path: stat.S_IMODE(path.stat().st_mode) for path in (database, folder)}
    for path, mode in modes.items():
        path.chmod(mode & ~0o222)
    return modes


def restore(modes: dict[Path, int]) -> None:
    for path, mode in modes.items():
        path.chmod(mode)


# --- the daemon ----------------------------------------------------------------------------------------------------


def daemon_environment() -> dict[str, str]:
    """The soak's environment for mailtriage's own processes, without MAILTRIAGE_* overrides of the config, and with
    the mailtriage of this checkout first on the path (whatever an editable install points to)."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("MAILTRIAGE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


class DaemonProcess:
    """The real daemon, ``mailtriage run``, as a subprocess writing to a log file; killed, restarted, stopped."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.log_path = workdir / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.exits: list[Exit] = []
        """Exits nobody asked for."""
        self._log_from = 0
        self._ready = False
        self._clock = time.monotonic()

    def command(self) -> list[str]:
        run = [sys.executable, "-m", "mailtriage", "--config", str(self.config), "--log-level", "INFO", "run"]
        if shutil.which("setpriv") is None:
            return run
        # Root without the capabilities that override file modes: the read-only window binds it.
        caps = "-dac_override,-dac_read_search"
        return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *run]

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            out.write(f"--- soak: daemon start {self.starts + 1} at {datetime.now():%H:%M:%S.%f} ---\n".encode())
            out.flush()
            self._log_from = out.tell()
            self.process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir,
                env=daemon_environment(),
            )  # fmt: skip
        self.starts += 1
        self._ready = False

    def ready(self) -> bool:
        """Whether this start of the daemon has said it is watching its mailbox (IDLE and polls under way)."""
        if not self._ready:
            with self.log_path.open("rb") as log_file:
                log_file.seek(self._log_from)
                self._ready = DAEMON_READY in log_file.read()
        return self._ready

    def check(self) -> None:
        """Start the daemon again if it exited by itself (counted, with its last log lines)."""
        if self.process is None or self.process.poll() is None:
            return
        lines = self.log_path.read_bytes()[self._log_from :].decode(errors="replace").splitlines()[-3:]
        self.exits.append(Exit(time.monotonic() - self._clock, self.process.returncode, lines))
        log(f"  the daemon exited by itself with status {self.process.returncode}: {lines[-1] if lines else ''}")
        time.sleep(1)
        self.start()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ready() and time.monotonic() < deadline:
            self.check()
            time.sleep(TICK_S)
        return self.ready()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def close(self) -> None:
        """Kill it if it still runs (the soak failed on the way)."""
        if self.process is not None and self.process.poll() is None:
            self.kill()

    def terminate(self, timeout: float = 60) -> int | None:
        """SIGTERM, as an operator stops it; its exit status, or None if it had not stopped after ``timeout``."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None


# --- the two threads: deliveries and Dovecot restarts; kills and the read-only window ------------------------------


def soak_numbers(client: imapclient.IMAPClient, folders: Sequence[str]) -> set[int]:
    """The soak numbers of the mails in these folders."""
    found: set[int] = set()
    section = f"BODY.PEEK[HEADER.FIELDS ({SOAK_HEADER.upper()})]"
    for folder in folders:
        client.select_folder(folder, readonly=True)
        for item in client.fetch(client.search("ALL"), [section]).values():
            data = next((v for k, v in item.items() if k.startswith(b"BODY[HEADER")), b"")
            value = BytesHeaderParser().parsebytes(data).get(SOAK_HEADER)
            if value and str(value).strip().isdigit():
                found.add(int(str(value)))
    return found


def append_wave(account: Account, wave: Wave, run: Run) -> None:
    """APPEND each mail of the wave to the INBOX. Should one fail (nothing should cut the soak's own connection),
    whether it landed is looked up on the server, wherever the daemon may have moved it, before it is sent again."""
    client = connect(account)
    try:
        for mail in wave.mails:
            for attempt in range(5):
                try:
                    client.append("INBOX", mail.data, flags=("\\Seen",) if mail.seen else ())
                    break
                except Exception as exc:
                    run.append_retries += 1
                    log(f"  APPEND of mail {mail.number} failed ({exc}); looking for it before sending it again")
                    client = connect(account)
                    folders = [name for flags, _, name in client.list_folders() if b"\\Noselect" not in flags]
                    if mail.number in soak_numbers(client, [f for f in folders if f != "Drafts"]):
                        break
                    if attempt == 4:
                        raise
            run.delivered.append(mail)
    finally:
        try:
            client.logout()
        except Exception:
            pass


def deliver(plan: Plan, server: DovecotServer, account: Account, run: Run) -> None:
    """The waves, each at its time, and the Dovecot restarts between them."""
    events: list[tuple[float, Wave | None]] = [(w.at, w) for w in plan.waves]
    events += [(at, None) for at in plan.dovecot_restarts]
    for at, wave in sorted(events, key=lambda e: e[0]):
        run.wait_until(at)
        if wave is None:
            began = time.monotonic()
            server.restart()
            run.dovecot_restarts.append(time.monotonic() - began)
            log(f"  Dovecot restarted ({run.dovecot_restarts[-1]:.1f} s); {len(run.delivered)} mails delivered")
        else:
            append_wave(account, wave, run)


def kill_one(kill: Kill, daemon: DaemonProcess, database: Path, run: Run) -> None:
    after_record = False
    if kill.kind in ("running", "mid-cycle"):
        daemon.wait_ready()
    if kill.kind == "running":
        run.wait_until(run.elapsed() + kill.delay, daemon.check)
    elif kill.kind == "mid-cycle":
        before, deadline = last_record(database), time.monotonic() + MID_CYCLE_WAIT_S
        while time.monotonic() < deadline and not after_record:
            after_record = last_record(database) > before
            time.sleep(0.005)
        time.sleep(kill.delay)
    daemon.check()
    daemon.kill()
    run.kills.append(KillDone(run.elapsed(), kill.kind, after_record))
    log(
        f"  SIGKILL {len(run.kills)} ({kill.kind}{', after a record' if after_record else ''}) at "
        f"{run.elapsed():.0f} s; {last_record(database)} messages recorded, {len(run.delivered)} mails delivered"
    )
    daemon.start()


def chaos(plan: Plan, daemon: DaemonProcess, database: Path, run: Run) -> None:
    """The kills, each at its moment, then the read-only window."""
    for kill in plan.kills:
        run.wait_until(kill.at, daemon.check)
        kill_one(kill, daemon, database, run)
    if plan.read_only is not None:
        read_only(plan.read_only, daemon, database, run)


def read_only(window: Window, daemon: DaemonProcess, database: Path, run: Run) -> None:
    """The store read-only for the window's seconds from when it begins (late if the kills ran late), with a kill
    and a new daemon inside it."""
    run.wait_until(window.start, daemon.check)
    modes = make_read_only(database.parent, database)
    began = run.elapsed()
    run.read_only_from = datetime.now(UTC)
    log(f"  the store is read-only; {len(run.delivered)} mails delivered")
    try:
        if window.kill_after is not None:
            run.wait_until(began + window.kill_after, daemon.check)
            kill_one(Kill(run.elapsed(), "read-only", 0), daemon, database, run)
        run.wait_until(began + window.seconds, daemon.check)
    finally:
        restore(modes)
    run.read_only_until = datetime.now(UTC)
    log("  the store is writable again")


def in_thread(name: str, run: Run, work: Callable[[], None]) -> threading.Thread:
    def body() -> None:
        try:
            work()
        except Exception as exc:  # the soak's own failure: reported, and the run fails
            run.failures.append(f"{name}: {type(exc).__name__}: {exc}")
            log(f"  the {name} thread failed: {type(exc).__name__}: {exc}")

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    return thread


# --- the end: the server and the store, compared -------------------------------------------------------------------


@dataclass(frozen=True)
class Copy:
    folder: str
    flags: frozenset[bytes]
    content_hash: str


@dataclass
class ServerView:
    copies: dict[int, list[Copy]] = field(default_factory=lambda: defaultdict(list))
    """Soak number -> each copy of that mail, in every folder but Drafts."""
    drafts: Counter[str] = field(default_factory=Counter)
    """X-Mailtriage-Answers-Hash -> the drafts carrying it."""
    others: int = 0
    """Messages outside Drafts that are not the soak's."""


def scan_server(account: Account) -> ServerView:
    view = ServerView()
    client = connect(account)
    try:
        for flags, _, name in client.list_folders():
            if b"\\Noselect" in flags or b"\\NoSelect" in flags:
                continue
            client.select_folder(name, readonly=True)
            uids = client.search("ALL")
            for start in range(0, len(uids), 200):
                chunk = uids[start : start + 200]
                if name == "Drafts" or b"\\Drafts" in flags:
                    section = f"BODY.PEEK[HEADER.FIELDS ({ANSWERS_HASH_HEADER.upper()})]"
                    for item in client.fetch(chunk, [section]).values():
                        data = next((v for k, v in item.items() if k.startswith(b"BODY[HEADER")), b"")
                        view.drafts[str(BytesHeaderParser().parsebytes(data).get(ANSWERS_HASH_HEADER, "")).strip()] += 1
                    continue
                for item in client.fetch(chunk, ["FLAGS", "BODY.PEEK[]"]).values():
                    data = item[b"BODY[]"]
                    number = str(BytesHeaderParser().parsebytes(data).get(SOAK_HEADER, "")).strip()
                    if not number.isdigit():
                        view.others += 1
                        continue
                    view.copies[int(number)].append(Copy(name, frozenset(item[b"FLAGS"]), sha256(data)))
    finally:
        client.logout()
    return view


@dataclass
class Checks:
    lost: list[int]
    duplicated: int
    expected_drafts: int
    missing_drafts: list[int]
    duplicate_drafts: int
    unexpected_drafts: int
    seen_set: list[int]
    seen_dropped: list[int]
    """Delivered \\Seen, and without it now: mailtriage never changes \\Seen either way."""
    not_once_on_server: list[int]
    not_moved: list[int]
    hash_drift: list[int]
    unknown_records: int
    statuses: dict[str, int]

    @property
    def failed(self) -> bool:
        return bool(self.lost or self.duplicated or self.missing_drafts or self.duplicate_drafts or self.seen_set
                    or self.seen_dropped or self.not_once_on_server or self.statuses.get(PENDING))  # fmt: skip


def check(delivered: Sequence[Mail], rows: Sequence[Record], view: ServerView) -> Checks:
    by_hash = {mail.content_hash: mail for mail in delivered}
    recorded: dict[str, list[Record]] = defaultdict(list)
    for row in rows:
        recorded[row.content_hash].append(row)
    expected = [r for r in rows if r.status == ROUTED and r.route.get("template")]
    expected_hashes = {answers_hash(r.content_hash) for r in expected}
    number_of = {h: m.number for h, m in by_hash.items()}
    inbox = {n for n, copies in view.copies.items() if any(c.folder == "INBOX" for c in copies)}
    return Checks(
        lost=sorted(m.number for m in delivered if m.content_hash not in recorded),
        duplicated=sum(len(found) - 1 for found in recorded.values()),
        expected_drafts=len(expected),
        missing_drafts=sorted(
            number_of.get(r.content_hash, -r.id) for r in expected if view.drafts[answers_hash(r.content_hash)] == 0
        ),
        duplicate_drafts=sum(count - 1 for count in view.drafts.values() if count > 1),
        unexpected_drafts=sum(count for h, count in view.drafts.items() if h not in expected_hashes),
        seen_set=sorted(
            m.number
            for m in delivered
            if not m.seen and any(b"\\Seen" in c.flags for c in view.copies.get(m.number, []))
        ),
        seen_dropped=sorted(
            m.number
            for m in delivered
            if m.seen and any(b"\\Seen" not in c.flags for c in view.copies.get(m.number, []))
        ),
        not_once_on_server=sorted(m.number for m in delivered if len(view.copies.get(m.number, [])) != 1),
        not_moved=sorted(
            number_of[r.content_hash]
            for r in rows
            if r.status == ROUTED and r.route.get("folder") and number_of.get(r.content_hash) in inbox
        ),
        hash_drift=sorted(
            m.number for m in delivered if any(c.content_hash != m.content_hash for c in view.copies.get(m.number, []))
        ),
        unknown_records=sum(1 for r in rows if r.content_hash not in by_hash),
        statuses=dict(Counter(r.status for r in rows).most_common()),
    )


@dataclass
class LogFigures:
    tracebacks: int
    errors: int
    warnings: int
    bugs: int
    """Lines saying "a bug in mailtriage"."""
    store_errors_after_window: int
    """ERROR lines about a read-only store after the store was writable again."""
    first_traceback: list[str]


def read_log(path: Path, writable_again: datetime | None) -> LogFigures:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    after = writable_again.astimezone().replace(tzinfo=None) if writable_again else None
    late = 0
    for line in lines:
        if after is not None and " ERROR " in line and "readonly" in line:
            try:
                late += datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") > after
            except ValueError:
                pass
    start = next((i for i, line in enumerate(lines) if line.startswith("Traceback")), None)
    excerpt = [] if start is None else lines[max(0, start - 1) : start + 30]
    return LogFigures(
        tracebacks=sum(line.startswith("Traceback") for line in lines),
        errors=sum(" ERROR " in line for line in lines),
        warnings=sum(" WARNING " in line for line in lines),
        bugs=sum("a bug in mailtriage" in line for line in lines),
        store_errors_after_window=late,
        first_traceback=excerpt,
    )


@dataclass
class WindowFigures:
    seconds: float
    recorded_during: int
    """By the daemon it began under, through the connections it held: SQLite checks permissions at open only."""
    first_record_after_s: float | None
    """From the end of the window to the first message recorded after it; None: none was."""


def window_figures(run: Run, rows: Sequence[Record]) -> WindowFigures | None:
    start, end = run.read_only_from, run.read_only_until
    if start is None or end is None:
        return None
    after = [r.recorded_at for r in rows if r.recorded_at >= end]
    return WindowFigures(
        seconds=(end - start).total_seconds(),
        recorded_during=sum(start <= r.recorded_at < end for r in rows),
        first_record_after_s=(min(after) - end).total_seconds() if after else None,
    )


# --- the report ----------------------------------------------------------------------------------------------------


@dataclass
class Report:
    machine: Machine
    args: dict[str, Any]
    waves: int
    delivered: dict[str, int]
    delivered_seen: int
    kills: dict[str, int]
    mid_cycle_after_record: int
    daemon_starts: int
    unexpected_exits: list[Exit]
    dovecot_restarts: list[float]
    append_retries: int
    window: WindowFigures | None
    drain_s: float
    drained: bool
    sigterm_status: int | None
    checks: Checks
    log: LogFigures
    audit: dict[str, int]
    """Audit events by action: the crash paths the kills made the daemon take."""
    failures: list[str]

    @property
    def failed(self) -> bool:
        return self.checks.failed or bool(self.failures) or not self.drained


def shown(numbers: Sequence[int], limit: int = 8) -> str:
    if not numbers:
        return ""
    more = f" and {len(numbers) - limit} more" if len(numbers) > limit else ""
    return "mails " + ", ".join(map(str, numbers[:limit])) + more


def run_lines(report: Report) -> list[str]:
    """What the run did, one line a fault."""
    c, a, w = report.checks, report.args, report.window
    kills = ", ".join(f"{n} {k}" for k, n in report.kills.items()) or "none"
    exits = "; ".join(f"status {e.returncode} at {e.at:.0f} s" for e in report.unexpected_exits) or "none"
    restarts = ", ".join(f"{s:.1f} s" for s in report.dovecot_restarts) or "-"
    window = "none"
    if w is not None:
        first = "none" if w.first_record_after_s is None else f"{w.first_record_after_s:.1f} s later"
        window = (f"{w.seconds:.0f} s; messages recorded meanwhile: {w.recorded_during}; the first after it: {first}; "
                  f"read-only errors logged after it: {report.log.store_errors_after_window}")  # fmt: skip
    drain = "all recorded, none pending" if report.drained else "GAVE UP"

    def gap(begun: str, done: str) -> int:
        return report.audit.get(begun, 0) - report.audit.get(done, 0)

    found = {
        "mails delivered": f"{sum(report.delivered.values())} in {report.waves} waves over {a['seconds']:g} s: "
        + ", ".join(f"{n} {k}" for k, n in report.delivered.items()) + f"; {report.delivered_seen} already \\Seen",
        "daemon SIGKILLs": f"{sum(report.kills.values())}: {kills} ({report.mid_cycle_after_record} came right "
        "after a message was committed)",
        "daemon starts": f"{report.daemon_starts}; exits nobody asked for: {exits}",
        "Dovecot restarts": f"{len(report.dovecot_restarts)} (each took {restarts}); soak APPENDs retried: "
        f"{report.append_retries}",
        "store read-only": window,
        "final drain": f"{report.drain_s:.1f} s, {drain}; SIGTERM: exit status {report.sigterm_status}",
        "store after the run": f"{sum(c.statuses.values())} messages: "
        + ", ".join(f"{n} {s}" for s, n in c.statuses.items()),
        "crash paths taken": f"{gap('draft-appending', 'draft-appended')} draft APPENDs cut before they were "
        f"confirmed; {report.audit.get('draft-exists', 0)} drafts found already in Drafts on a later pass; "
        f"{gap('move-begun', 'moved')} moves cut before they were confirmed (from the audit log)",
    }  # fmt: skip
    return [f"  {name:<20} {text}" for name, text in found.items()]


def check_rows(report: Report) -> list[tuple[str, str, str, str]]:
    """(check, found, target, note) for each figure of the end."""
    c, lg = report.checks, report.log
    drafts = f"of {c.expected_drafts} routed with a template" + (f"; {shown(c.missing_drafts)}" if c.missing_drafts
                                                                 else "")  # fmt: skip
    rows: list[tuple[str, object, str, str]] = [
        ("lost (delivered, not recorded)", len(c.lost), "0", shown(c.lost)),
        ("duplicated (recorded more than once)", c.duplicated, "0", ""),
        ("missing drafts", len(c.missing_drafts), "0", drafts),
        ("duplicate drafts", c.duplicate_drafts, "0", ""),
        ("\\Seen set (not delivered with it)", len(c.seen_set), "0", shown(c.seen_set)),
        ("\\Seen taken off (delivered with it)", len(c.seen_dropped), "0", shown(c.seen_dropped)),
        ("not exactly once on the server", len(c.not_once_on_server), "0", shown(c.not_once_on_server)),
        ("pending at the end (decided, not done)", c.statuses.get(PENDING, 0), "0", ""),
        ("routed to a folder, still in the inbox", len(c.not_moved), "-", shown(c.not_moved)),
        ("drafts for messages owed none", c.unexpected_drafts, "-", "e.g. appended before a kill, still pending"),
        ("tracebacks in the daemon log", lg.tracebacks, "-", f"{lg.bugs} 'a bug in mailtriage' lines"),
        ("ERROR / WARNING lines in the daemon log", f"{lg.errors} / {lg.warnings}", "-", "faults were injected"),
        ("store rows no delivered mail has / hash drift", f"{c.unknown_records} / {len(c.hash_drift)}", "0 / 0",
         "the soak's own sanity check"),
    ]  # fmt: skip
    return [(name, str(found), target, note) for name, found, target, note in rows]


def table(report: Report) -> str:
    a, rows = report.args, check_rows(report)
    widths = [max(len(row[i]) for row in [("check", "found", "target", ""), *rows]) for i in range(3)]

    def line(row: tuple[str, str, str, str]) -> str:
        name, found, target, note = row
        return f"{name:<{widths[0]}} | {found:>{widths[1]}} | {target:<{widths[2]}} | {note}".rstrip(" |")

    lines = [
        *report.machine.lines("mailtriage chaos soak"),
        f"--mails {a['mails']} --kills {a['kills']} --restarts {a['restarts']} --readonly-seconds "
        f"{a['readonly_seconds']:g} --seconds {a['seconds']:g} --seed {a['seed']}",
        "",
        "the run",
        *run_lines(report),
        "",
        line(("check", "found", "target", "")),
        "-" * (sum(widths) + 12),
        *(line(row) for row in rows),
        "",
    ]
    if report.failures:
        lines.append("the soak itself failed: " + "; ".join(report.failures))
    if report.log.first_traceback:
        lines += ["the first traceback in the daemon log:", *(f"    {t}" for t in report.log.first_traceback), ""]
    verdict = "pass: nothing lost, duplicated, left pending, missing, drafted twice or marked read"
    lines.append("verdict: " + ("FAIL" if report.failed else verdict))
    return "\n".join(lines)


def figures(report: Report) -> dict[str, Any]:
    data = asdict(report)
    del data["machine"], data["args"]  # the JSON's own "machine" and "options"
    data["failed"] = report.failed
    return data


def headlines(report: Report) -> list[Figure]:
    c, a = report.checks, report.args
    counts = [
        ("lost (delivered, not recorded)", len(c.lost)),
        ("duplicated (recorded more than once)", c.duplicated),
        (f"missing drafts (of {c.expected_drafts} owed)", len(c.missing_drafts)),
        ("duplicate drafts", c.duplicate_drafts),
        ("\\Seen set or taken off by mailtriage", len(c.seen_set) + len(c.seen_dropped)),
        ("mails not exactly once on the server", len(c.not_once_on_server)),
        ("pending at the end (decided, not done)", c.statuses.get(PENDING, 0)),
    ]
    run = (
        f"{sum(report.delivered.values()):,} mails, {sum(report.kills.values())} SIGKILLs, Dovecot restarted "
        f"{len(report.dovecot_restarts)}x, {a['readonly_seconds']:g} s of read-only store; "
        f"{span(report.machine.seconds or 0)}"
    )
    return [
        Figure("chaos run", run),
        *(Figure.check(figure, str(value), "0", value == 0) for figure, value in counts),
        Figure.check("the last daemon finished the backlog", "yes" if report.drained else "no", "yes", report.drained),
    ]


# --- running it ----------------------------------------------------------------------------------------------------


def write_soak_config(workdir: Path, account: Account, database: Path, model: Path) -> Path:
    from tests.dovecot import write_config

    path = write_config(
        workdir / "mailtriage.toml", [account], database, model,
        schedule={"poll_interval": 2, "idle": True, "backoff_initial": 0.5, "backoff_max": 4,
                  "corrections_interval": 10},
        intake={"batch_size": 25, "own_addresses": [SUPPORT_ADDRESS]},
        drafts={"from_address": f"Support <{SUPPORT_ADDRESS}>"},
        deadlines={"sweep_interval": 15},
    )  # fmt: skip
    tables = []
    for name, folder in FOLDERS.items():
        tables += ["", "[[categories]]", f'name = "{name}"', f'folder = "{folder}"']
        if name in KEYWORDS:
            tables.append(f'keywords = ["{KEYWORDS[name]}"]')
        if name in FLAGGED:
            tables.append("flag = true")
    with path.open("a") as out:
        out.write("\n".join(tables) + "\n")
    return path


def train_model(workdir: Path) -> Path:
    """The default model, from the seed mails, as ``mailtriage train`` writes it."""
    model = workdir / "model" / "default.npz"
    with (workdir / "train.log").open("wb") as out:
        subprocess.run([sys.executable, "-m", "mailtriage", "train", "--out", str(model)], check=True,
                       stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env=daemon_environment())  # fmt: skip
    return model


def drain(daemon: DaemonProcess, database: Path, hashes: set[str], timeout: float) -> tuple[bool, float]:
    """Wait until every delivered mail is recorded and none is pending, at most ``timeout`` seconds and STALL_S
    without progress; (done, seconds it took)."""
    began = moved = time.monotonic()
    last = (-1, -1)
    while time.monotonic() - began < timeout and time.monotonic() - moved < STALL_S:
        daemon.check()
        now = progress(database, hashes)
        if now == (len(hashes), 0):
            return True, time.monotonic() - began
        if now != last:
            log(f"  {now[0]} of {len(hashes)} recorded, {now[1]} pending")
            last, moved = now, time.monotonic()
        time.sleep(0.25)
    log(f"  gave up: {f'no progress for {STALL_S:.0f} s' if time.monotonic() - began < timeout else 'timed out'}")
    return False, time.monotonic() - began


@dataclass(frozen=True)
class Setup:
    account: Account
    plan: Plan
    database: Path
    daemon: DaemonProcess


def prepare(args: argparse.Namespace, server: DovecotServer, workdir: Path) -> Setup:
    """The mails and the plan (from the seed), an account, the model, the config; the daemon not started yet."""
    rng = random.Random(args.seed)
    plan = make_plan(MailMaker(rng).make(args.mails), args, rng)
    account = new_account(server)
    log(f"training the default model from the seed mails into {workdir / 'model'}")
    model = train_model(workdir)
    database = workdir / "store" / "mailtriage.db"
    database.parent.mkdir()
    daemon = DaemonProcess(write_soak_config(workdir, account, database, model), workdir)
    log(f"{args.mails} mails in {len(plan.waves)} waves over {plan.seconds:g} s; {args.kills} kills, "
        f"{len(plan.dovecot_restarts)} Dovecot restarts, read-only store for {args.readonly_seconds:g} s; "
        f"daemon log: {daemon.log_path}")  # fmt: skip
    return Setup(account, plan, database, daemon)


def run_chaos(setup: Setup, server: DovecotServer) -> Run:
    """The deliveries and Dovecot restarts in one thread, the kills and the read-only window in another."""
    run = Run()
    threads = [
        in_thread("delivery", run, lambda: deliver(setup.plan, server, setup.account, run)),
        in_thread("chaos", run, lambda: chaos(setup.plan, setup.daemon, setup.database, run)),
    ]
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=TICK_S)
    log(f"chaos over after {run.elapsed():.0f} s: {len(run.delivered)} mails delivered, {len(run.kills)} kills; "
        "the last daemon finishes the backlog")  # fmt: skip
    return run


def soak(args: argparse.Namespace, server: DovecotServer, workdir: Path) -> Report:
    machine = Machine({"Dovecot": dovecot_version()})
    setup = prepare(args, server, workdir)
    daemon, database = setup.daemon, setup.database
    daemon.start()
    try:
        run = run_chaos(setup, server)
        drained, drain_s = drain(daemon, database, {m.content_hash for m in run.delivered}, args.drain_timeout)
        sigterm_status = daemon.terminate()
    finally:
        daemon.close()
    log(f"SIGTERM: exit status {sigterm_status}; checking the server and the store")
    rows = records(database)
    checks = check(run.delivered, rows, scan_server(setup.account))
    machine.done()
    return Report(
        machine=machine, args=options_of(args), waves=len(setup.plan.waves),
        delivered=dict(Counter(m.kind for m in run.delivered).most_common()),
        delivered_seen=sum(m.seen for m in run.delivered), kills=dict(Counter(k.kind for k in run.kills)),
        mid_cycle_after_record=sum(k.after_record for k in run.kills), daemon_starts=daemon.starts,
        unexpected_exits=daemon.exits, dovecot_restarts=run.dovecot_restarts, append_retries=run.append_retries,
        window=window_figures(run, rows), drain_s=drain_s, drained=drained, sigterm_status=sigterm_status,
        checks=checks, log=read_log(daemon.log_path, run.read_only_until), audit=audit_counts(database),
        failures=run.failures,
    )  # fmt: skip


@contextmanager
def work_folder(keep: bool) -> Iterator[Path]:
    """The soak's folder: the config, the model, the store, the daemon's log; removed at the end unless ``keep``."""
    workdir = Path(tempfile.mkdtemp(prefix="mailtriage-soak-"))
    try:
        yield workdir
    finally:
        if keep:
            log(f"kept: the work folder {workdir} (daemon.log, store/, mailtriage.toml)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--mails", type=int, default=600, help="mails delivered over the run (600)")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs of the daemon (20)")
    parser.add_argument("--restarts", type=int, default=2, help="Dovecot restarts (2)")
    parser.add_argument("--readonly-seconds", type=float, default=15, help="the read-only store window, 0: none (15)")
    parser.add_argument("--seconds", type=float, default=150, help="how long the mail and the faults go on (150)")
    parser.add_argument("--drain-timeout", type=float, default=180, help="seconds for the last daemon's backlog (180)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the mails, waves and faults (0)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and Dovecot's folder")
    args = parser.parse_args(argv)
    if args.mails < 1 or min(args.kills, args.restarts) < 0 or args.readonly_seconds < 0 or args.seconds <= 0:
        parser.error("--mails must be at least 1, --seconds above 0, the others not negative")

    if dovecot_missing("soak"):
        return 2
    if shutil.which("setpriv") is None:
        log("setpriv is not installed: the daemon runs as plain root, which a read-only store does not stop")
    try:
        with private_dovecot(args.keep) as server, work_folder(args.keep) as workdir:
            report = soak(args, server, workdir)
    except Exception:
        traceback.print_exc()
        log("the soak could not run to its end")
        return 2
    print(table(report))
    write_json(args.json, "soak", report.machine, report.args, headlines(report), figures(report))
    return 2 if report.failures else 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
