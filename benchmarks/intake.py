"""Intake benchmark: throughput, idle-cycle time and memory of run_cycle against a real private Dovecot IMAP server.

What it measures, in one run:

1. Throughput of ``mailtriage.pipeline.run_cycle`` (fetch, parse, record in a SQLite store) over a backlog of
   ``--messages`` real emails, beside a baseline measured in the same run: plain imapclient fetching the same
   messages (``BODY.PEEK[]``, the same batch size) and parsing each with
   ``email.message_from_bytes(data, policy=email.policy.default)``. Each side runs ``--repeat`` times, alternately
   (a fresh account and a fresh store for every pipeline run; the baseline reuses one account); the medians and
   their ratio are printed.
2. The time of an idle cycle (nothing new: one IMAP STATUS) for a mailbox of 100 messages and one of
   ``--messages``, both fully processed first: the median of 200 cycles each (the two mailboxes alternately), and
   their ratio. The cycles run on the connection that processed the mail, as the daemon keeps it between cycles;
   the same figures on a fresh connection are printed beside them.
3. The peak of Python allocations (tracemalloc) during a full ``run_cycle`` over a fifth of ``--messages`` and
   over those same messages five times over (each copy made distinct), each in a fresh subprocess so the two
   numbers are independent, and their ratio. Messages are fetched a batch at a time, so the peak follows the
   biggest batch, not the mailbox: repeating the same messages keeps the batches alike and leaves mailbox size as
   the one difference. The fifth must be more than one batch for that: at ``--messages 500`` it is one, and the
   ratio compares one batch with five (about 1.7); 1,000 messages are the least that say something.

The messages are the first ``--messages`` files, in sorted path order, of the SpamAssassin corpus in
``<repo root>/../shared/corpus/spamassassin`` (read in place; LICENSE* and README* files are left out).

Run it by hand, as root (the private Dovecot stores mail as the ``mail`` user), with dovecot-imapd installed::

    sudo .venv/bin/python benchmarks/intake.py                             # 5,000 messages, 3 repeats: minutes
    sudo .venv/bin/python benchmarks/intake.py --messages 1000 --repeat 1  # a quick check

Machines are noisy, so absolute timings say little on their own: every timing is read as a ratio against a
baseline from the same run (the stdlib baseline for throughput, the small mailbox for idle cycles and memory).
Progress goes to stderr, the table to stdout; ``--json FILE`` writes the figures to FILE too (the JSON is
described in ``benchmarks/common.py``).
"""

from __future__ import annotations

import email
import email.policy
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from common import (
    ROOT,
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
    write_json,
)

from mailtriage.mailbox import Mailbox
from mailtriage.mailbox.imap import ImapMailbox
from mailtriage.pipeline import CycleOptions, CycleReport, run_cycle
from mailtriage.scheduler import utcnow
from mailtriage.settings import MailboxSettings
from mailtriage.store import Store

if TYPE_CHECKING:
    from tests.dovecot import Account, DovecotServer

NAME = "bench"
"""The mailbox name every run uses: sync state is kept per name, so an idle cycle must use the processing one's."""
BATCH_SIZE = 100
OPTIONS = CycleOptions(batch_size=BATCH_SIZE, max_per_cycle=100_000)
IDLE_CYCLES = 200
IDLE_SMALL = 100
THROUGHPUT_TARGET = 0.5
"""run_cycle's rate against the baseline's, at least."""
CORPUS = ROOT.parent / "shared" / "corpus"
SPAMASSASSIN = CORPUS / "spamassassin"


# --- the corpus ----------------------------------------------------------------------------------------------------


def corpus_files(count: int) -> list[Path]:
    """The first ``count`` message files of the corpus in sorted path order; exits when there are not enough."""
    if not SPAMASSASSIN.is_dir():
        sys.exit(
            f"intake benchmark: the mail corpus is absent: {SPAMASSASSIN} does not exist "
            f"(expected the shared corpus at <repo root>/../shared/corpus = {CORPUS})"
        )
    files = sorted(
        (p for p in SPAMASSASSIN.rglob("*") if p.is_file() and not p.name.startswith(("LICENSE", "README"))),
        key=lambda p: p.relative_to(SPAMASSASSIN).as_posix(),
    )
    if len(files) < count:
        sys.exit(f"intake benchmark: {SPAMASSASSIN} holds {len(files)} messages, fewer than the {count} asked for")
    return files[:count]


# --- the two sides of the throughput comparison --------------------------------------------------------------------


def baseline_once(account: Account, batch_size: int) -> tuple[int, float]:
    """Plain imapclient + stdlib parsing of every message in the INBOX: (messages parsed, seconds)."""
    start = time.perf_counter()
    client = account.client()
    try:
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search(["ALL"]))
        parsed = 0
        for first in range(0, len(uids), batch_size):
            found = client.fetch(uids[first : first + batch_size], ["BODY.PEEK[]"])
            for uid in sorted(found):
                message = email.message_from_bytes(found[uid][b"BODY[]"], policy=email.policy.default)
                parsed += message is not None
        elapsed = time.perf_counter() - start
    finally:
        client.logout()
    return parsed, elapsed


def pipeline_once(mailbox: ImapMailbox, store: Store) -> tuple[CycleReport, float]:
    """One ``run_cycle`` over the mailbox's whole INBOX into ``store``: (its report, seconds)."""
    start = time.perf_counter()
    report = run_cycle(mailbox, store, now=utcnow, options=OPTIONS)
    elapsed = time.perf_counter() - start
    if report.error is not None:
        raise RuntimeError(f"run_cycle failed: {report.error}")
    return report, elapsed


# --- idle cycles ---------------------------------------------------------------------------------------------------


def idle_cycle_seconds(mailboxes: Sequence[tuple[ImapMailbox, Store]], cycles: int) -> list[list[float]]:
    """The time of each of ``cycles`` idle cycles on each fully processed mailbox, the mailboxes taking turns so
    that a slow moment of the machine falls on all of them; one untimed cycle each comes first (it may connect, or
    leave the folder the processing left selected)."""
    counted = [(CountedMailbox(mailbox), store) for mailbox, store in mailboxes]
    for mailbox, store in counted:
        run_cycle(cast(Mailbox, mailbox), store, now=utcnow, options=OPTIONS)
    times: list[list[float]] = [[] for _ in counted]
    for _ in range(cycles):
        for index, (mailbox, store) in enumerate(counted):
            start = time.perf_counter()
            report = run_cycle(cast(Mailbox, mailbox), store, now=utcnow, options=OPTIONS)
            times[index].append(time.perf_counter() - start)
            if processed(report) or report.error is not None:
                raise RuntimeError(f"an idle cycle was not idle: {report}")
    for mailbox, _ in counted:
        if mailbox.calls != {"status": cycles + 1}:
            raise RuntimeError(f"idle cycles made more than one STATUS each: {mailbox.calls}")
    return times


# --- peak memory, in a subprocess of its own -----------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryResult:
    messages: int
    peak_bytes: int
    max_rss_bytes: int
    seconds: float
    largest_batch_bytes: int = 0
    """The raw size of the biggest ``BATCH_SIZE`` messages fetched together (as read from the corpus)."""


def memory_child(spec: str) -> int:
    """Subprocess side: one ``run_cycle`` into a fresh store under tracemalloc; its figures to the parent."""
    given = child_spec(spec)
    settings = MailboxSettings.model_validate_json(given["settings"])
    store = Store(f"sqlite:///{given['store']}")
    mailbox = ImapMailbox(settings)
    try:
        tracemalloc.start()
        start = time.perf_counter()
        report = run_cycle(mailbox, store, now=utcnow, options=OPTIONS)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        mailbox.close()
        store.close()
    if report.error is not None:
        raise RuntimeError(f"run_cycle failed: {report.error}")
    return child_done(
        {"messages": processed(report), "peak_bytes": peak, "max_rss_bytes": max_rss_bytes(), "seconds": elapsed}
    )


def measure_memory(account: Account, messages: Sequence[bytes], workdir: Path, label: str) -> MemoryResult:
    """Run the memory subprocess on ``account``, whose INBOX holds ``messages``, never read by mailtriage."""
    spec = {"settings": account.settings(name=NAME).model_dump_json(), "store": str(workdir / f"memory-{label}.db")}
    found = child_result(start_child(__file__, spec))
    largest = max(sum(map(len, messages[i : i + BATCH_SIZE])) for i in range(0, len(messages), BATCH_SIZE))
    return MemoryResult(**found, largest_batch_bytes=largest)


# --- the run -------------------------------------------------------------------------------------------------------


@dataclass
class Results:
    messages: int
    baseline_rates: list[float]
    pipeline_rates: list[float]
    idle_small: list[float]
    idle_large: list[float]
    idle_small_fresh: list[float]
    idle_large_fresh: list[float]
    memory_small: MemoryResult
    memory_large: MemoryResult

    @property
    def throughput_ratio(self) -> float:
        return statistics.median(self.pipeline_rates) / statistics.median(self.baseline_rates)

    @property
    def idle_ratio(self) -> float:
        return statistics.median(self.idle_large) / statistics.median(self.idle_small)

    @property
    def memory_ratio(self) -> float:
        return self.memory_large.peak_bytes / self.memory_small.peak_bytes


def copies(messages: Sequence[bytes], times: int) -> list[bytes]:
    """``messages`` ``times`` over, each copy made distinct (a header of its own) so that each is processed."""
    return [b"X-Benchmark-Copy: %d\r\n" % copy + data for copy in range(times) for data in messages]


def run(server: DovecotServer, messages: list[bytes], repeat: int, workdir: Path) -> Results:
    n = len(messages)
    small = min(IDLE_SMALL, n)
    fraction = max(1, n // 5)
    accounts = [new_account(server) for _ in range(repeat + 4)]
    log(f"filling 1 baseline and {repeat} pipeline accounts of {n:,} messages, and two smaller ones")
    baseline_account = fill(accounts[0], messages)
    pipeline_accounts = [fill(account, messages) for account in accounts[1 : repeat + 1]]
    small_account = fill(accounts[repeat + 1], messages[:small])
    fraction_account = fill(accounts[repeat + 2], messages[:fraction])
    # For memory, the big mailbox holds the small one's messages over and over, so that the two runs differ in
    # mailbox size only, not in what the messages are like.
    repeated = copies(messages[:fraction], n // fraction)
    repeated_account = fill(accounts[repeat + 3], repeated)

    baseline_rates: list[float] = []
    pipeline_rates: list[float] = []
    opened: list[tuple[ImapMailbox, Store]] = []
    for index, account in enumerate(pipeline_accounts, start=1):
        parsed, seconds = baseline_once(baseline_account, BATCH_SIZE)
        if parsed != n:
            raise RuntimeError(f"the baseline parsed {parsed} messages, not {n}")
        baseline_rates.append(n / seconds)
        log(f"run {index}/{repeat}: baseline {n / seconds:,.0f} msg/s ({seconds:.2f} s)")

        for mailbox, store in opened:  # only the last run's mailbox and store are kept, for the idle cycles
            mailbox.close()
            store.close()
        opened = [(ImapMailbox(account.settings(name=NAME)), Store(f"sqlite:///{workdir / f'run-{index}.db'}"))]
        report, seconds = pipeline_once(*opened[0])
        if processed(report) != n:
            raise RuntimeError(f"run_cycle processed {processed(report)} messages, not {n}: {report}")
        pipeline_rates.append(n / seconds)
        log(
            f"run {index}/{repeat}: pipeline {n / seconds:,.0f} msg/s ({seconds:.2f} s; new {report.new}, "
            f"skipped {report.skipped}, failed {report.failed}; {opened[0][1].messages.count():,} rows)"
        )
    large_mailbox, large_store = opened[0]

    log(f"idle cycles: {small:,} and {n:,} messages, on the connections that processed them")
    small_mailbox = ImapMailbox(small_account.settings(name=NAME))
    small_store = Store(f"sqlite:///{workdir / 'idle-small.db'}")
    report, _ = pipeline_once(small_mailbox, small_store)
    if processed(report) != small:
        raise RuntimeError(f"run_cycle processed {processed(report)} of {small} messages")
    pairs = [(small_mailbox, small_store), (large_mailbox, large_store)]
    idle_small, idle_large = idle_cycle_seconds(pairs, IDLE_CYCLES)
    log("idle cycles: the same mailboxes on fresh connections")
    for mailbox, _ in pairs:
        mailbox.close()
    fresh = [
        (ImapMailbox(account.settings(name=NAME)), store)
        for account, (_, store) in zip((small_account, pipeline_accounts[-1]), pairs, strict=True)
    ]
    idle_small_fresh, idle_large_fresh = idle_cycle_seconds(fresh, IDLE_CYCLES)
    for mailbox, store in fresh:
        mailbox.close()
        store.close()

    log(f"peak memory: {fraction:,} messages (fresh account, fresh subprocess)")
    memory_small = measure_memory(fraction_account, messages[:fraction], workdir, "small")
    log(f"peak memory: the same {fraction:,} messages {n // fraction} times over (fresh subprocess)")
    memory_large = measure_memory(repeated_account, repeated, workdir, "large")
    for result, expected in ((memory_small, fraction), (memory_large, len(repeated))):
        if result.messages != expected:
            raise RuntimeError(f"the memory run processed {result.messages} messages, not {expected}")

    return Results(
        n,
        baseline_rates,
        pipeline_rates,
        idle_small,
        idle_large,
        idle_small_fresh,
        idle_large_fresh,
        memory_small,
        memory_large,
    )


def table(machine: Machine, results: Results, repeat: int) -> str:
    n = results.messages
    baseline = statistics.median(results.baseline_rates)
    pipeline = statistics.median(results.pipeline_rates)
    idle_small = statistics.median(results.idle_small) * 1000
    idle_large = statistics.median(results.idle_large) * 1000
    fresh_small = statistics.median(results.idle_small_fresh) * 1000
    fresh_large = statistics.median(results.idle_large_fresh) * 1000
    small, large = results.memory_small, results.memory_large

    def runs(rates: list[float]) -> str:
        return ", ".join(f"{rate:,.0f}" for rate in rates)

    def context(result: MemoryResult) -> str:
        return (
            f"(largest {BATCH_SIZE}-message batch {result.largest_batch_bytes / MiB:.1f} MiB; "
            f"process max RSS {result.max_rss_bytes / MiB:,.0f} MiB)"
        )

    w = 58
    lines = [
        *machine.lines("mailtriage intake benchmark"),
        "",
        f"intake throughput, {n:,}-message backlog (median of {repeat})",
        f"  {'baseline imapclient fetch + email.policy.default parse':<{w}} {baseline:>7,.0f} msg/s"
        f"   (runs: {runs(results.baseline_rates)})",
        f"  {'mailtriage run_cycle (fetch, parse, record)':<{w}} {pipeline:>7,.0f} msg/s"
        f"   (runs: {runs(results.pipeline_rates)})",
        f"  {'ratio':<{w}} {results.throughput_ratio:>7.2f}         (target >= {THROUGHPUT_TARGET})",
        f"idle cycle (nothing new), median of {len(results.idle_small)}, on the connection that processed the mail",
        f"  {f'{min(IDLE_SMALL, n):,} messages':<16} {idle_small:6.2f} ms",
        f"  {f'{n:,} messages':<16} {idle_large:6.2f} ms",
        f"  {'ratio':<16} {results.idle_ratio:6.2f}      (target ~1: independent of mailbox size)",
        f"  {'fresh connection':<16} {fresh_small:6.2f} ms and {fresh_large:.2f} ms, "
        f"ratio {fresh_large / fresh_small:.2f}   (the same mailboxes, connected anew)",
        "peak Python memory during run_cycle (tracemalloc), the same messages once and five times over",
        f"  {f'{small.messages:,} messages':<16} {small.peak_bytes / MiB:6.1f} MiB   {context(small)}",
        f"  {f'{large.messages:,} messages':<16} {large.peak_bytes / MiB:6.1f} MiB   {context(large)}",
        f"  {'ratio':<16} {results.memory_ratio:6.2f}       (target ~1: flat in mailbox size)",
    ]
    return "\n".join(lines)


def headlines(results: Results) -> list[Figure]:
    n, ratio = results.messages, results.throughput_ratio
    rates = f"{statistics.median(results.pipeline_rates):,.0f} vs {statistics.median(results.baseline_rates):,.0f}"
    return [
        Figure.check(f"run_cycle (fetch, parse, record) / imapclient + stdlib parse, {n:,} msgs",
                     f"{ratio:.2f} ({rates} msg/s)", f">= {THROUGHPUT_TARGET}", ratio >= THROUGHPUT_TARGET),
        Figure.flat(f"idle cycle time, {n:,} vs {min(IDLE_SMALL, n):,} messages", results.idle_ratio),
        Figure.flat("peak traced memory of run_cycle, 5x vs 1x the messages", results.memory_ratio),
    ]  # fmt: skip


def figures(results: Results) -> dict[str, Any]:
    ratios = {"throughput": results.throughput_ratio, "idle": results.idle_ratio, "memory": results.memory_ratio}
    return {**asdict(results), "batch_size": BATCH_SIZE, "ratios": {k: round(v, 4) for k, v in ratios.items()}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser(__doc__, child=True)
    parser.add_argument("--messages", type=int, default=5000, help="backlog size (default 5000)")
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs of each side (default 3)")
    args = parser.parse_args(argv)
    if args.child:
        return memory_child(args.child)
    if args.messages < 1 or args.repeat < 1:
        parser.error("--messages and --repeat must be at least 1")

    files = corpus_files(args.messages)
    if dovecot_missing("intake benchmark"):
        return 1
    machine = Machine({"Dovecot": dovecot_version()})
    messages = [path.read_bytes() for path in files]
    log(f"{len(messages):,} messages from {SPAMASSASSIN} ({sum(map(len, messages)) / MiB:.1f} MiB)")
    with private_dovecot() as server, tempfile.TemporaryDirectory(prefix="mailtriage-bench-") as workdir:
        results = run(server, messages, args.repeat, Path(workdir))
    print(table(machine, results, args.repeat))
    write_json(args.json, "intake", machine, options_of(args), headlines(results), figures(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
