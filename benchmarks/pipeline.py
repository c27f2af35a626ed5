"""Pipeline benchmark: the whole daemon (classify, route, draft) against a real private Dovecot IMAP server.

What it measures, in one run, each part on a fresh account of its own, with the default categories, the default
model (trained once from the shipped seed mails into a temporary folder by ``classify.load_or_build_default``), the
shipped, approved templates and every other setting at its ``Settings`` default (so: no folders, keywords or
moves; a draft for every category but the fallback; 24 h deadlines):

1. Arrival-to-draft latency. The real daemon, ``daemon_from_settings(settings).run_forever()`` in a thread:

   - with IDLE (``schedule.idle = true``, ``poll_interval = 3600`` so that only IDLE wakes it):
     ``--latency-messages`` (200) customer mails are APPENDed to the INBOX one by one from a connection of the
     benchmark's own; each is timed from just before its APPEND to the moment its draft is seen in Drafts, then a
     random pause of 0.1-0.4 s comes before the next;
   - with a 30-second poll (``idle = false``, ``poll_interval = 30``): sending 200 mails one by one 30 s apart
     would take 100 minutes, so ``--poll-messages`` (60) mails are APPENDed at uniformly random moments over a
     window of ``--poll-window`` seconds (180: six poll intervals), overlapping, each timed the same way. Arrivals
     uniform over whole intervals make the poll's phase uniform too, which is what a 30 s poll costs in life.

   A draft is "seen" by a watcher on its own connection that holds Drafts open read-only and, every 10 ms,
   sends NOOP and ``UID SEARCH`` for UIDs it has not seen, then reads each new draft's ``X-Mailtriage-Answers``
   header (the Message-ID of the mail it answers). The figures are p50, p95 and max. Three mails triaged before
   the timed ones warm the daemon up (they are not counted). Beforehand, ``--floor-messages`` (30) mails measure
   the server's own share without mailtriage: APPEND until a plain imapclient IDLE on the INBOX hears EXISTS.
   Dovecot holds IDLE notices back for 500 ms (``NOTIFY_DELAY_MSECS`` in its ``index-mailbox-check.c``), so that
   is the floor under every IDLE figure here; mailtriage's own share is the difference.
2. Throughput on a ``--backlog`` (5,000) message INBOX, in msg/s: the daemon's own cycle (``Daemon.cycle``, i.e.
   ``run_cycle`` with the daemon's options and full ``Triage``: fetch, parse, classify, route, record, draft
   APPENDed to Drafts), run again at once while a backlog is left, as the scheduler does (``max_per_cycle`` 2,000),
   beside a baseline in the same run: raw imapclient fetching the same messages (``BODY.PEEK[]``, 100 at a time)
   and APPENDing, for each, a reply of about the same size (reply headers, a short text and the message's body
   quoted) to a folder with ``\\Draft \\Seen`` — the pipeline's I/O floor. ``--repeat`` (3) runs of each side
   alternate (a fresh account and store per pipeline run); the ratio of the medians is the figure. The time the
   pipeline spends in each IMAP call and in the classify, route and draft stages is recorded in the same runs (a
   timing wrapper, about a microsecond a call), to say where the time goes. The target is a ratio of 1.0: the
   pipeline batches its server changes (one MULTIAPPEND for a batch's drafts, one UID STORE / UID MOVE per set),
   where the baseline pays a round trip a message. The same is then measured once, on at most 1,000 messages,
   on a private Cyrus IMAP (``tests/cyrus.py``, where ``tests/install-servers.sh`` installed it), and reported.
3. Memory over ``--memory-messages`` (20,000) messages, in a subprocess of its own: the daemon built from the
   settings, then four times over: ``--memory-messages / 4`` messages are APPENDed and ``Daemon.cycle`` runs until
   they are all processed (with drafts). After each quarter, after a ``gc.collect()``: the process's resident
   set (VmRSS) and max RSS, as the daemon would have them (no tracing: tracemalloc's own bookkeeping would be
   counted). Target: RSS at most 200 MiB after the last quarter; flat: the last quarter's figure within 10 % of the
   first's. This subprocess runs while the 30 s poll baseline is measured (which waits for its polls nearly all
   the time); the IDLE and throughput figures are measured with nothing else running.

The mails are the project's seed mails (``mailtriage/seed/*.jsonl``: 720 after-sales mails in English, French and
German, the model's own training set) made into plain RFC 822 messages, cycled, each with a Message-ID, sender and
Date of its own so that every one is a new customer mail: each goes through classify, route and draft. They are
short (a few hundred bytes of text): real support mail with quoted history and attachments costs more per message.

Run it by hand, as root (the private Dovecot stores mail as the ``mail`` user), with dovecot-imapd installed::

    sudo .venv/bin/python benchmarks/pipeline.py                                # everything: 20-25 minutes (see below)
    sudo .venv/bin/python benchmarks/pipeline.py --quick                        # a short check: about 3 minutes
    sudo .venv/bin/python benchmarks/pipeline.py --quick --json pipeline.json   # the figures as JSON too

A full run takes about 15 minutes; ``--memory-messages 8000`` shortens it. Drafts is not searched before each draft: the
pipeline looks there for a draft of its own only when an APPEND of that draft was begun before and may have landed
unseen (a crash or a cut connection between the APPEND and its audit event; ``Actions._draft_again`` in
``mailtriage/actions.py``), which nothing in this benchmark causes. So a draft costs the same however full Drafts
is, and the memory table counts the searches of Drafts in each quarter: 0 in a run without faults.

Other processes on the machine share its cores: the load average at the start and the end is printed.
Progress goes to stderr, the table to stdout; ``--json FILE`` writes the figures to FILE too (the JSON is
described in ``benchmarks/common.py``).
"""

from __future__ import annotations

import gc
import json
import logging
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.utils import format_datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import imapclient
from common import (
    FLAT,
    CountedMailbox,
    Figure,
    Machine,
    MiB,
    argument_parser,
    child_done,
    child_result,
    child_spec,
    dovecot_missing,
    dovecot_version,
    fill,
    log,
    max_rss_bytes,
    new_account,
    options_of,
    private_dovecot,
    processed,
    start_child,
    timed,
    verdict,
    write_json,
)

from mailtriage.actions import DRAFT_FLAGS
from mailtriage.draft import ANSWERS_HEADER
from mailtriage.escalation import default_rules
from mailtriage.model import load_or_build_default
from mailtriage.parse import parse_message
from mailtriage.route import matching_rule
from mailtriage.scheduler import Daemon
from mailtriage.settings import (
    DEFAULT_CATEGORIES,
    ClassifierSettings,
    EscalationSettings,
    MailboxSettings,
    ScheduleSettings,
    Settings,
    StoreSettings,
)
from mailtriage.wiring import daemon_from_settings

if TYPE_CHECKING:
    from tests.dovecot import Account, DovecotServer

LATENCY_TARGET_S = 1.0
RATIO_TARGET = 1.0
MEMORY = {"rss": "RSS now", "max_rss": "max RSS"}
RSS_TARGET_MIB = 200
"""The memory figures that must stay flat, each the last quarter's against the first's (target: common.FLAT)."""
WATCH_TICK_S = 0.01
PAUSE_S = (0.1, 0.4)
WARM_UP = 3
BATCH_SIZE = 100
SEED = 0
NAMES = {
    "en": ("Emily Carter", "James O'Neill", "Priya Shah", "Tom Baker", "Grace Miller", "Oliver Brown"),
    "fr": ("Renée Lefèvre", "Jean Dupont", "Camille Martin", "Luc Bernard", "Élodie Moreau", "Hugo Petit"),
    "de": ("Björn Schneider", "Sabine Krämer", "Jürgen Weiß", "Anna Müller", "Lukas Becker", "Petra Fischer"),
}


def percentile(values: Sequence[float], q: int) -> float:
    """The ``q``-th percentile, linearly interpolated between the nearest ranks (as numpy's default)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# --- the mail ------------------------------------------------------------------------------------------------------


def seed_mails() -> list[dict[str, str]]:
    """The shipped seed mails (subject, body, label, language), in file order."""
    folder = resources.files("mailtriage").joinpath("seed")
    mails = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".jsonl"):
            mails += [json.loads(line) for line in entry.read_text(encoding="utf-8").splitlines() if line.strip()]
    return mails


class MailMaker:
    """Customer mails made from the seed mails, cycled; each has a Message-ID, sender and Date of its own. Seeds
    that a default escalation rule holds for a person (a safety hazard, a lawyer: flagged, no draft) are left
    out, so that every mail made is one the pipeline drafts to."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.seeds = seed_mails()
        rules = default_rules(EscalationSettings())
        languages = {rule.language for rule in rules if rule.language}
        self.seeds = [
            seed for index, seed in enumerate(self.seeds)
            if all(matching_rule(parse_message(self.make(index)), language, rules) is None for language in languages)
        ]  # fmt: skip

    def message_id(self, index: int) -> str:
        return f"<{self.tag}-{index}@customers.example>"

    def make(self, index: int) -> bytes:
        seed = self.seeds[index % len(self.seeds)]
        names = NAMES.get(seed["language"], NAMES["en"])
        name = names[(index + index // len(self.seeds)) % len(names)]
        local = "".join(ch for ch in name.lower().replace(" ", ".") if ch.isascii() and (ch.isalnum() or ch == "."))
        body = seed["body"].replace("\r\n", "\n").replace("\n", "\r\n")
        headers = [
            f'From: "{name}" <{local}.{index % 97}@customers.example>',
            "To: Support <support@example.com>",
            f"Subject: {seed['subject']}",
            f"Message-ID: {self.message_id(index)}",
            f"Date: {format_datetime(datetime.now(UTC))}",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
        ]
        return ("\r\n".join(headers) + "\r\n\r\n" + body + "\r\n").encode()

    def many(self, start: int, stop: int) -> Iterator[bytes]:
        return (self.make(index) for index in range(start, stop))


BASELINE_TEXT = (
    b"Hello,\r\n\r\nThank you for your message. Our team will look into your request and get back to you. To "
    b"help us check it, could you please tell us your order number? If the product is damaged, a few photos would "
    b"also be helpful.\r\n\r\nKind regards,\r\nThe support team\r\n\r\nOn 23.11.2026 08:15, you wrote:\r\n"
)


def baseline_reply(data: bytes) -> bytes:
    """What the baseline APPENDs for a message: reply headers, a short text and the message's body quoted, about
    the size of the pipeline's draft (the sizes of both are printed)."""
    head, _, body = data.partition(b"\r\n\r\n")
    message_id = next((line[12:] for line in head.split(b"\r\n") if line.lower().startswith(b"message-id: ")), b"")
    headers = [
        b"From: Support <support@example.com>", b"To: customer@customers.example", b"Subject: Re: your message",
        b"Date: " + format_datetime(datetime.now(UTC)).encode(), b"Message-ID: <reply-" + message_id[1:],
        b"In-Reply-To: " + message_id, b"References: " + message_id, b"X-Mailtriage-Answers: " + message_id,
        b"MIME-Version: 1.0", b"Content-Type: text/plain; charset=utf-8", b"Content-Transfer-Encoding: 8bit",
    ]  # fmt: skip
    quoted = b"\r\n".join(b"> " + line for line in body.rstrip(b"\r\n").split(b"\r\n"))
    return b"\r\n".join(headers) + b"\r\n\r\n" + BASELINE_TEXT + quoted + b"\r\n"


# --- setting up ----------------------------------------------------------------------------------------------------


def settings_for(mailbox: MailboxSettings, store: Path, model: Path, schedule: ScheduleSettings) -> Settings:
    """The defaults, but for the mailbox, the store, the model file and the schedule."""
    return Settings(
        mailboxes=(mailbox,),
        store=StoreSettings(url=f"sqlite:///{store}"),
        classifier=ClassifierSettings(model=model),
        schedule=schedule,
    )


def setup_logging(path: Path) -> None:
    """The daemon's INFO log (one line a message, as it runs by default) to a file; warnings also to stderr."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    to_file = logging.FileHandler(path)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    to_stderr = logging.StreamHandler()
    to_stderr.setLevel(logging.WARNING)
    root.handlers = [to_file, to_stderr]
    for noisy in ("apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# --- 1. latency ----------------------------------------------------------------------------------------------------


class DraftWatcher:
    """Sees drafts arrive in Drafts: NOOP and a UID SEARCH for unseen UIDs, then each new draft's answer header."""

    def __init__(self, account: Account) -> None:
        self.client = account.client()
        self.client.select_folder("Drafts", readonly=True)
        self.last_uid = 0
        self.seen: dict[str, float] = {}
        """Message-ID answered -> when its draft was first seen (perf_counter)."""

    def poll(self) -> None:
        self.client.noop()
        uids = [uid for uid in self.client.search(["UID", f"{self.last_uid + 1}:*"]) if uid > self.last_uid]
        if not uids:
            return
        at = time.perf_counter()
        section = f"BODY.PEEK[HEADER.FIELDS ({ANSWERS_HEADER.upper()})]"
        for item in self.client.fetch(uids, [section]).values():
            data = next((v for k, v in item.items() if k.startswith(b"BODY[HEADER.FIELDS")), b"")
            answers = BytesHeaderParser().parsebytes(data).get(ANSWERS_HEADER)
            if answers:
                self.seen.setdefault(str(answers).strip(), at)
        self.last_uid = max(uids)

    def wait_for(self, message_ids: Sequence[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(m in self.seen for m in message_ids) and time.monotonic() < deadline:
            self.poll()
            time.sleep(WATCH_TICK_S)

    def close(self) -> None:
        self.client.logout()


@dataclass
class LatencyResult:
    mode: str
    latencies: list[float]
    sent: int
    missing: int
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p95(self) -> float:
        return percentile(self.latencies, 95)


@dataclass
class RunningDaemon:
    daemon: Daemon
    thread: threading.Thread

    def stop(self) -> None:
        self.daemon.stop.set()
        self.thread.join(timeout=60)
        self.daemon.store.close()
        if self.thread.is_alive():
            raise RuntimeError("the daemon did not stop within 60 s")


def start_daemon(settings: Settings) -> RunningDaemon:
    daemon = daemon_from_settings(settings)
    thread = threading.Thread(target=daemon.run_forever, kwargs={"install_signals": False}, name="daemon")
    thread.start()
    return RunningDaemon(daemon, thread)


def idle_floor(server: DovecotServer, count: int) -> list[float]:
    """Dovecot's own IDLE notice, without mailtriage: seconds from just before an APPEND until a plain imapclient
    connection IDLEing on the INBOX is told of it (EXISTS), for ``count`` mails one by one."""
    account = new_account(server)
    maker = MailMaker("floor")
    listener, sender = account.client(), account.client()
    listener.select_folder("INBOX", readonly=True)
    rng = random.Random(SEED)
    times: list[float] = []
    try:
        for index in range(count + 1):  # the first is a warm-up
            listener.idle()
            sent = time.perf_counter()
            sender.append("INBOX", maker.make(index))
            while time.perf_counter() - sent < 10:
                if any(len(r) > 1 and r[1] == b"EXISTS" for r in listener.idle_check(timeout=1)):
                    if index:
                        times.append(time.perf_counter() - sent)
                    break
            listener.idle_done()
            time.sleep(rng.uniform(*PAUSE_S))
    finally:
        sender.logout()
        listener.logout()
    if len(times) < count:
        raise RuntimeError(f"IDLE told of {len(times)} of {count} mails within 10 s")
    return times


def latency_idle(server: DovecotServer, model: Path, workdir: Path, count: int) -> LatencyResult:
    """Mails sent one by one to the daemon woken by IDLE, each timed until its draft is in Drafts."""
    account = new_account(server)
    maker = MailMaker("idle")
    account.append_many(maker.many(0, 1))  # triaged by the first poll, at start
    schedule = ScheduleSettings(idle=True, poll_interval=3600)
    running = start_daemon(settings_for(account.settings(name="latency"), workdir / "idle.db", model, schedule))
    watcher, sender = DraftWatcher(account), account.client()
    rng = random.Random(SEED)
    latencies: list[float] = []
    missing = 0
    try:
        watcher.wait_for([maker.message_id(0)], 60)
        time.sleep(2)  # the IDLE watcher thread has logged in and is listening
        for index in range(1, count + WARM_UP):
            message_id = maker.message_id(index)
            data = maker.make(index)
            sent = time.perf_counter()
            sender.append("INBOX", data)
            watcher.wait_for([message_id], 30)
            if message_id not in watcher.seen:
                missing += 1
                log(f"  no draft for {message_id} within 30 s")
            elif index >= WARM_UP:
                latencies.append(watcher.seen[message_id] - sent)
            if index % 50 == 0:
                log(f"  IDLE: {index - WARM_UP + 1} of {count} sent")
            time.sleep(rng.uniform(*PAUSE_S))
    finally:
        sender.logout()
        watcher.close()
        running.stop()
    return LatencyResult("IDLE", latencies, count, missing, {"pause_s": list(PAUSE_S), "warm_up": WARM_UP})


def latency_poll(
    server: DovecotServer, model: Path, workdir: Path, count: int, window: float, interval: float
) -> LatencyResult:
    """Mails sent at uniformly random moments over ``window`` seconds to the daemon polling every ``interval``."""
    account = new_account(server)
    maker = MailMaker("poll")
    account.append_many(maker.many(0, 1))  # the warm-up, triaged by the first poll, at start
    schedule = ScheduleSettings(idle=False, poll_interval=interval)
    running = start_daemon(settings_for(account.settings(name="latency"), workdir / "poll.db", model, schedule))
    watcher = DraftWatcher(account)
    rng = random.Random(SEED)
    offsets = sorted(rng.uniform(0, window) for _ in range(count))
    sent: dict[str, float] = {}
    try:
        watcher.wait_for([maker.message_id(0)], 60)
        begin = time.perf_counter()

        def send() -> None:
            client = account.client()
            try:
                for index, offset in enumerate(offsets, start=1):
                    time.sleep(max(0.0, begin + offset - time.perf_counter()))
                    sent[maker.message_id(index)] = time.perf_counter()
                    client.append("INBOX", maker.make(index))
            finally:
                client.logout()

        sender = threading.Thread(target=send, name="sender")
        sender.start()
        wanted = [maker.message_id(index) for index in range(1, count + 1)]
        watcher.wait_for(wanted, window + 2 * interval + 60)
        sender.join()
    finally:
        watcher.close()
        running.stop()
    latencies = [watcher.seen[m] - sent[m] for m in wanted if m in watcher.seen and m in sent]
    details = {"window_s": window, "poll_interval_s": interval, "arrivals": "uniformly random over the window"}
    return LatencyResult(f"{interval:.0f} s poll", latencies, count, count - len(latencies), details)


# --- 2. throughput -------------------------------------------------------------------------------------------------


def drain(daemon: Daemon, mailbox: Any, count: int) -> int:
    """Run the daemon's cycle until ``count`` messages are processed: the cycles it took."""
    done = cycles = 0
    while done < count:
        report = daemon.cycle(mailbox)
        cycles += 1
        if report.error is not None:
            raise RuntimeError(f"the cycle failed: {report.error}")
        if processed(report) == 0:
            raise RuntimeError(f"a cycle processed nothing with {count - done} messages left: {report}")
        done += processed(report)
    return cycles


@dataclass
class PipelineRun:
    seconds: float
    cycles: int
    statuses: dict[str, int]
    """Messages by their status in the store once the run was over."""
    drafts: int
    draft_bytes: int
    imap_seconds: dict[str, float]
    imap_calls: dict[str, int]
    stage_seconds: dict[str, float]


def pipeline_once(account: Account, model: Path, store: Path, count: int, prefix: str = "") -> PipelineRun:
    settings = settings_for(account.settings(name="throughput"), store, model, ScheduleSettings())
    daemon = daemon_from_settings(settings)
    mailbox = CountedMailbox(daemon.mailboxes[0])
    stages: defaultdict[str, float] = defaultdict(float)
    given = daemon.duties.stages
    watched = replace(
        given,
        classify=timed(given.classify, "classify", stages),
        route=timed(given.route, "route", stages),
        draft=timed(given.draft, "draft", stages),
    )
    daemon.duties = replace(daemon.duties, stages=watched)
    try:
        start = time.perf_counter()
        cycles = drain(daemon, mailbox, count)
        seconds = time.perf_counter() - start
        # Where each message ended up, from the store: a cycle's report counts what was decided (pending, for a
        # message with a draft to append), not what was done.
        statuses = Counter(record.status.value for record in daemon.store.messages.all())
    finally:
        daemon.close()
        daemon.store.close()
    drafts, draft_bytes = folder_size(account, f"{prefix}Drafts")
    return PipelineRun(
        seconds, cycles, dict(statuses), drafts, draft_bytes, dict(mailbox.seconds), dict(mailbox.calls), dict(stages)
    )


def folder_size(account: Account, folder: str) -> tuple[int, int]:
    """(messages, total bytes) of ``folder``."""
    client = account.client()
    try:
        client.select_folder(folder, readonly=True)
        uids = client.search(["ALL"])
        sizes = client.fetch(uids, ["RFC822.SIZE"]) if uids else {}
        return len(uids), sum(int(item[b"RFC822.SIZE"]) for item in sizes.values())
    finally:
        client.logout()


def baseline_once(account: Account, folder: str) -> tuple[int, int, float]:
    """Raw imapclient: every INBOX message fetched (100 at a time) and a reply of its size APPENDed to ``folder``:
    (messages, bytes appended, seconds). ``folder`` must exist."""
    start = time.perf_counter()
    client = account.client()
    appended = size = 0
    try:
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search(["ALL"]))
        for first in range(0, len(uids), BATCH_SIZE):
            found = client.fetch(uids[first : first + BATCH_SIZE], ["BODY.PEEK[]"])
            for uid in sorted(found):
                reply = baseline_reply(found[uid][b"BODY[]"])
                client.append(folder, reply, flags=DRAFT_FLAGS)
                appended += 1
                size += len(reply)
        seconds = time.perf_counter() - start
    finally:
        client.logout()
    return appended, size, seconds


@dataclass
class Throughput:
    messages: int
    baseline_rates: list[float]
    pipeline_rates: list[float]
    baseline_reply_bytes: float
    runs: list[PipelineRun]

    @property
    def ratio(self) -> float:
        return statistics.median(self.pipeline_rates) / statistics.median(self.baseline_rates)


def throughput(server: Any, model: Path, workdir: Path, count: int, repeat: int, prefix: str = "") -> Throughput:
    """Baseline and pipeline runs, alternating, on ``server`` (a private Dovecot, or Cyrus, whose folders are
    under ``prefix`` "INBOX.")."""
    log(f"throughput: filling 1 baseline and {repeat} pipeline accounts with {count:,} messages each")
    maker = MailMaker("backlog")
    baseline_account = new_account(server)
    fill(baseline_account, maker.many(0, count))
    accounts = [new_account(server) for _ in range(repeat)]
    for account in accounts:
        fill(account, maker.many(0, count))
    setup = baseline_account.client()
    for index in range(repeat):
        setup.create_folder(f"{prefix}Replies{index}")
    setup.logout()
    baseline_rates: list[float] = []
    pipeline_rates: list[float] = []
    runs: list[PipelineRun] = []
    reply_bytes = 0.0
    for index, account in enumerate(accounts):
        done, size, seconds = baseline_once(baseline_account, f"{prefix}Replies{index}")
        if done != count:
            raise RuntimeError(f"the baseline handled {done} messages, not {count}")
        baseline_rates.append(count / seconds)
        reply_bytes = size / count
        log(f"run {index + 1}/{repeat}: baseline {count / seconds:,.0f} msg/s ({seconds:.1f} s)")
        run = pipeline_once(account, model, workdir / f"throughput-{prefix}{index}.db", count, prefix)
        pipeline_rates.append(count / run.seconds)
        runs.append(run)
        log(
            f"run {index + 1}/{repeat}: pipeline {count / run.seconds:,.0f} msg/s ({run.seconds:.1f} s, "
            f"{run.cycles} cycles; {run.statuses}; {run.drafts:,} drafts)"
        )
    return Throughput(count, baseline_rates, pipeline_rates, reply_bytes, runs)


CYRUS_BACKLOG = 1000
"""At most this many messages on Cyrus, whose APPENDs (each synced to disk) take minutes for a few thousand."""


def cyrus_throughput(model: Path, workdir: Path, count: int) -> Throughput | str:
    """The same throughput, one run of each side and at most CYRUS_BACKLOG messages, on a private Cyrus IMAP
    (tests/cyrus.py), where installed."""
    from tests import cyrus

    reason = cyrus.unavailable_reason()
    if reason is not None:
        log(f"throughput on Cyrus: not measured ({reason})")
        return reason
    server = cyrus.start_server()
    try:
        log("throughput on Cyrus IMAP")
        return throughput(server, model, workdir, min(count, CYRUS_BACKLOG), 1, prefix="INBOX.")
    finally:
        server.stop()


# --- 3. memory, in a subprocess of its own -------------------------------------------------------------------------


def rss_now() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def memory_child(spec: str) -> int:
    """Subprocess side: quarters of the messages appended, each drained by the daemon's cycle; the figures to the
    parent."""
    given = child_spec(spec)
    setup_logging(Path(given["log"]))
    account = MailboxSettings.model_validate_json(given["mailbox"])
    settings = settings_for(account, Path(given["store"]), Path(given["model"]), ScheduleSettings())
    daemon = daemon_from_settings(settings)
    mailbox = CountedMailbox(daemon.mailboxes[0])
    total, quarter = given["messages"], given["messages"] // 4
    maker = MailMaker("memory")
    points = []
    gc.collect()
    try:
        for end in range(quarter, total + 1, quarter):
            client = imapclient.IMAPClient("127.0.0.1", port=account.port, ssl=False, timeout=30)
            client.login(given["username"], given["password"])
            for data in maker.many(end - quarter, end):
                client.append("INBOX", data)
            client.logout()
            mailbox.reset()
            start = time.perf_counter()
            drain(daemon, mailbox, quarter)
            seconds = time.perf_counter() - start
            gc.collect()
            points.append({"messages": end, "rss": rss_now(),
                           "max_rss": max_rss_bytes(), "seconds": seconds,
                           "drafts_searches": mailbox.calls["find"]})  # fmt: skip
            log(f"  memory: {end:,} of {total:,} messages processed ({quarter / seconds:,.0f} msg/s)")
    finally:
        daemon.close()
        daemon.store.close()
    return child_done(points)


def start_memory(server: DovecotServer, model: Path, workdir: Path, count: int) -> subprocess.Popen[str]:
    """The memory subprocess, started; ``child_result`` waits for its figures."""
    account = new_account(server)
    spec = {
        "mailbox": account.settings(name="memory").model_dump_json(),
        "username": account.username,
        "password": account.password,
        "store": str(workdir / "memory.db"),
        "model": str(model),
        "log": str(workdir / "memory.log"),
        "messages": count,
    }
    log(f"memory: {count:,} messages in quarters, in a subprocess (beside the poll baseline, which mostly waits)")
    return start_child(__file__, spec)


# --- the report ----------------------------------------------------------------------------------------------------


@dataclass
class Results:
    machine: Machine
    floor: list[float]
    idle: LatencyResult
    poll: LatencyResult
    throughput: Throughput
    memory: list[dict[str, float]]
    cyrus: Throughput | str
    """The throughput on Cyrus IMAP (one run of each side), or why it was not measured."""

    @property
    def latency_meets(self) -> bool:
        return self.idle.p95 < LATENCY_TARGET_S and not self.idle.missing

    def memory_ratio(self, key: str) -> float:
        """The last quarter's figure ``key`` against the first's."""
        return self.memory[-1][key] / self.memory[0][key]


def breakdown(runs: list[PipelineRun], count: int) -> list[str]:
    """Where the pipeline's time went, in ms per message, averaged over the runs."""
    total = statistics.mean(r.seconds for r in runs) * 1000 / count
    imap: defaultdict[str, float] = defaultdict(float)
    calls: Counter[str] = Counter()
    stages: defaultdict[str, float] = defaultdict(float)
    for run in runs:
        calls.update(run.imap_calls)
        for totals, add in ((imap, run.imap_seconds), (stages, run.stage_seconds)):
            for name, seconds in add.items():
                totals[name] += seconds
    per = {name: s * 1000 / count / len(runs) for name, s in imap.items()}
    per_stage = {name: s * 1000 / count / len(runs) for name, s in stages.items()}
    rest = total - sum(per.values()) - sum(per_stage.values())
    parts = [f"{name} {ms:.3f} ({calls[name] / len(runs) / count:.2f}/msg)" for name, ms in
             sorted(per.items(), key=lambda p: -p[1])]  # fmt: skip
    return [
        f"  where the pipeline's {total:.2f} ms a message went (mean of the runs):",
        f"    IMAP calls, ms/msg (calls/msg): {', '.join(parts)}; sum {sum(per.values()):.2f}",
        "    stages, ms/msg: " + ", ".join(f"{name} {ms:.3f}" for name, ms in per_stage.items()),
        f"    the rest (parse, SQLite store, logging, the pipeline's own code): {rest:.2f}",
    ]


def table(results: Results) -> str:
    idle, poll, tp, points = results.idle, results.poll, results.throughput, results.memory
    w = 56
    first, last = points[0], points[-1]
    lines = [
        *results.machine.lines("mailtriage pipeline benchmark"),
        "default settings and categories, the default model (seed mails), the shipped approved templates; "
        "mails made from the seed mails",
        "",
        "arrival-to-draft latency (from just before the APPEND to the INBOX until the draft is seen in Drafts; "
        f"the watcher looks every {WATCH_TICK_S * 1000:.0f} ms)",
        f"  Dovecot's IDLE notice alone (no mailtriage: APPEND until EXISTS reaches a plain IDLE client), "
        f"{len(results.floor)} mails:",
        f"    p50 {percentile(results.floor, 50):7.3f} s   p95 {percentile(results.floor, 95):7.3f} s   "
        f"max {max(results.floor):7.3f} s   (the server's floor under the IDLE figures)",
    ]
    for result, how in (
        (idle, f"{idle.sent} mails one by one, each after the previous draft and a {PAUSE_S[0]}-{PAUSE_S[1]} s "
               "pause; poll_interval 3600 s"),
        (poll, f"{poll.sent} mails at uniformly random moments over {poll.details['window_s']:.0f} s "
               f"({poll.details['window_s'] / poll.details['poll_interval_s']:.0f} poll intervals), overlapping; "
               "IDLE off"),
    ):  # fmt: skip
        missing = f"; {result.missing} without a draft" if result.missing else ""
        lines.append(f"  {result.mode}: {how}{missing}")
        lines.append(
            f"    p50 {result.p50:7.3f} s   p95 {result.p95:7.3f} s   max {max(result.latencies):7.3f} s   "
            f"(n = {len(result.latencies)})"
        )
    lines += [
        f"  {'p95 with IDLE':<{w}} {idle.p95:7.3f} s    target < {LATENCY_TARGET_S:.0f} s: "
        f"{verdict(results.latency_meets)}",
        f"  {'p95 with the 30 s poll, for comparison':<{w}} {poll.p95:7.3f} s    "
        f"(IDLE is {poll.p95 / idle.p95:,.0f}x faster at p95, {poll.p50 / idle.p50:,.0f}x at p50)",
        "",
        f"throughput on a {tp.messages:,}-message backlog (median of {len(tp.pipeline_rates)})",
        f"  {'baseline: imapclient fetch + APPEND of a reply each':<{w}} {statistics.median(tp.baseline_rates):7,.0f} "
        f"msg/s   (runs: {', '.join(f'{r:,.0f}' for r in tp.baseline_rates)}; reply {tp.baseline_reply_bytes:,.0f} "
        "B on average)",
        f"  {'mailtriage Daemon.cycle (classify, route, draft)':<{w}} {statistics.median(tp.pipeline_rates):7,.0f} "
        f"msg/s   (runs: {', '.join(f'{r:,.0f}' for r in tp.pipeline_rates)})",
        f"  {'ratio':<{w}} {tp.ratio:7.2f}         target >= {RATIO_TARGET}: {verdict(tp.ratio >= RATIO_TARGET)}",
    ]
    run = tp.runs[-1]
    statuses = ", ".join(f"{n:,} {s}" for s, n in sorted(run.statuses.items()))
    lines.append(
        f"  each pipeline run: {statuses}; {run.drafts:,} drafts appended "
        f"({run.draft_bytes / max(1, run.drafts):,.0f} B on average); {run.cycles} cycles"
    )
    lines += breakdown(tp.runs, tp.messages)
    if isinstance(results.cyrus, str):
        lines.append(f"  on Cyrus IMAP: not measured ({results.cyrus})")
    else:
        cy = results.cyrus
        lines.append(f"  {'on Cyrus IMAP (one run each): ratio':<{w}} {cy.ratio:7.2f}         (reported; "
                     f"{cy.pipeline_rates[0]:,.0f} vs {cy.baseline_rates[0]:,.0f} msg/s)")  # fmt: skip
    lines += [
        "",
        f"memory over {last['messages']:,.0f} messages (the daemon's own process; drafts appended; after gc.collect())",
        f"  {'messages':>9} | {'RSS now':>8} | {'max RSS':>8} | {'msg/s':>6} | {'Drafts searches':>15}",
    ]
    quarter = first["messages"]
    for p in points:
        lines.append(
            f"  {p['messages']:>9,.0f} | {p['rss'] / MiB:>4.0f} MiB | {p['max_rss'] / MiB:>4.0f} MiB | "
            f"{quarter / p['seconds']:>6,.0f} | "
            f"{p['drafts_searches']:>15,.0f}"
        )
    for key, name in MEMORY.items():
        ratio = results.memory_ratio(key)
        label = f"{name}, {last['messages']:,.0f} vs {first['messages']:,.0f} messages"
        lines.append(f"  {label:<{w}} {ratio:7.2f}         target ~1 (<= {FLAT:.2f}): {verdict(ratio <= FLAT)}")
    rss = last["rss"] / MiB
    lines.append(f"  {'RSS after the last quarter':<{w}} {rss:7.0f} MiB     target <= {RSS_TARGET_MIB} MiB: "
                 f"{verdict(rss <= RSS_TARGET_MIB)}")  # fmt: skip
    lines.append(
        "  (msg/s: that quarter, beside the poll baseline; Drafts searches: looks in Drafts for a draft appended "
        "already, made only after an APPEND that may have landed unseen)"
    )
    return "\n".join(lines)


def headlines(results: Results) -> list[Figure]:
    idle, poll, tp = results.idle, results.poll, results.throughput
    first, last = (f"{point['messages']:,.0f}" for point in (results.memory[0], results.memory[-1]))
    rates = f"{statistics.median(tp.pipeline_rates):,.0f} vs {statistics.median(tp.baseline_rates):,.0f} msg/s"
    rows = [
        Figure.check(f"arrival-to-draft with IDLE, p95 ({len(idle.latencies)} mails one by one)", f"{idle.p95:.3f} s",
                     f"< {LATENCY_TARGET_S:.0f} s", results.latency_meets),
        Figure("arrival-to-draft with IDLE, p50", f"{idle.p50:.3f} s"),
        Figure("  of which Dovecot's IDLE notice alone, p50", f"{percentile(results.floor, 50):.3f} s"),
        Figure(f"arrival-to-draft with a {poll.details['poll_interval_s']:.0f} s poll, p50 / p95 "
               f"({len(poll.latencies)} mails over {poll.details['window_s']:.0f} s)",
               f"{poll.p50:.1f} / {poll.p95:.1f} s", "(comparison)"),
        Figure.check(f"throughput classify+route+draft / imapclient fetch + APPEND, {tp.messages:,} msgs",
                     f"{tp.ratio:.2f} ({rates})", f">= {RATIO_TARGET}", tp.ratio >= RATIO_TARGET),
    ]  # fmt: skip
    if not isinstance(results.cyrus, str):
        cy = results.cyrus
        rates = f"{cy.pipeline_rates[0]:,.0f} vs {cy.baseline_rates[0]:,.0f} msg/s"
        rows.append(Figure(f"throughput ratio on Cyrus IMAP, {cy.messages:,} msgs", f"{cy.ratio:.2f} ({rates})"))
    rows += [Figure.flat(f"{name}, after {last} vs {first} messages", results.memory_ratio(key))
             for key, name in MEMORY.items()]  # fmt: skip
    rss = results.memory[-1]["rss"] / MiB
    rows.append(Figure.check(f"daemon RSS after {last} messages", f"{rss:.0f} MiB", f"<= {RSS_TARGET_MIB} MiB",
                             rss <= RSS_TARGET_MIB))  # fmt: skip
    return rows


def figures(results: Results) -> dict[str, Any]:
    tp, floor = results.throughput, results.floor

    def latency(result: LatencyResult) -> dict[str, Any]:
        return {"sent": result.sent, "timed": len(result.latencies), "missing": result.missing,
                "p50_s": round(result.p50, 4), "p95_s": round(result.p95, 4),
                "max_s": round(max(result.latencies), 4), **result.details}  # fmt: skip

    return {
        "latency": {"idle": latency(results.idle), "poll": latency(results.poll), "target_p95_s": LATENCY_TARGET_S,
                    "dovecot_idle_notice": {"mails": len(results.floor), "p50_s": round(percentile(floor, 50), 4),
                                            "p95_s": round(percentile(floor, 95), 4)},
                    "meets": results.latency_meets},
        "throughput": {"messages": tp.messages, "baseline_msg_s": tp.baseline_rates,
                       "pipeline_msg_s": tp.pipeline_rates, "ratio": round(tp.ratio, 4), "target": RATIO_TARGET,
                       "meets": tp.ratio >= RATIO_TARGET, "runs": [asdict(r) for r in tp.runs]},
        "memory": {"points": results.memory,
                   "ratios": {k: round(results.memory_ratio(k), 4) for k in ("rss", "max_rss")},
                   "target": FLAT, "meets": all(results.memory_ratio(k) <= FLAT for k in MEMORY)},
    }  # fmt: skip


# --- the run -------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser(__doc__, child=True)
    parser.add_argument("--floor-messages", type=int, default=30, help="mails for Dovecot's IDLE notice alone (30)")
    parser.add_argument("--latency-messages", type=int, default=200, help="mails sent one by one with IDLE (200)")
    parser.add_argument("--poll-messages", type=int, default=60, help="mails sent to the polling daemon (60)")
    parser.add_argument("--poll-window", type=float, default=180, help="seconds they are spread over (180)")
    parser.add_argument("--poll-interval", type=float, default=30, help="the poll's interval in seconds (30)")
    parser.add_argument("--backlog", type=int, default=5000, help="throughput backlog (5000)")
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs of each side (3)")
    parser.add_argument("--memory-messages", type=int, default=20000, help="messages for memory, 4 quarters (20000)")
    parser.add_argument(
        "--quick", action="store_true", help="10 + 30 IDLE mails, 20 over 60 s polled, 500, 1 run, 2,000"
    )
    args = parser.parse_args(argv)
    if args.child:
        return memory_child(args.child)
    if args.quick:
        args.floor_messages, args.latency_messages, args.poll_messages, args.poll_window = 10, 30, 20, 60
        args.backlog, args.repeat, args.memory_messages = 500, 1, 2000
    if (
        min(args.floor_messages, args.latency_messages, args.poll_messages, args.backlog, args.repeat) < 1
        or args.memory_messages < 4
    ):
        parser.error("counts must be at least 1 (--memory-messages at least 4)")

    if dovecot_missing("pipeline benchmark"):
        return 1
    machine = Machine({"Dovecot": dovecot_version()})
    with private_dovecot() as server:
        with tempfile.TemporaryDirectory(prefix="mailtriage-bench-") as folder:
            workdir = Path(folder)
            setup_logging(workdir / "daemon.log")
            model = workdir / "model" / "default.npz"
            load_or_build_default(model, [category.name for category in DEFAULT_CATEGORIES], log)
            log(f"Dovecot's IDLE notice alone: {args.floor_messages} mails one by one")
            floor = idle_floor(server, args.floor_messages)
            log(f"latency with IDLE: {args.latency_messages} mails one by one")
            idle = latency_idle(server, model, workdir, args.latency_messages)
            child = start_memory(server, model, workdir, args.memory_messages)
            try:
                log(f"latency with a {args.poll_interval:.0f} s poll: {args.poll_messages} mails over "
                    f"{args.poll_window:.0f} s")  # fmt: skip
                poll = latency_poll(server, model, workdir, args.poll_messages, args.poll_window, args.poll_interval)
                points = child_result(child)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
            tp = throughput(server, model, workdir, args.backlog, args.repeat)
            cyrus = cyrus_throughput(model, workdir, args.backlog)
            logging.shutdown()
    machine.done()
    results = Results(machine, floor, idle, poll, tp, points, cyrus)
    print(table(results))
    write_json(args.json, "pipeline", machine, options_of(args), headlines(results), figures(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
