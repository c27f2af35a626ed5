"""What the benchmarks share: progress lines, headline figures with their verdicts, the machine a run was on, the
JSON every benchmark writes, a private Dovecot from ``tests/dovecot.py`` with accounts on it, a mailbox wrapper
that counts and times calls, and a subprocess of a benchmark's own for memory figures.

The JSON convention: every benchmark (and ``run_all.py``) takes ``--json FILE`` and, once it has measured, writes
one object there; its human-readable table goes to stdout all the same, its progress to stderr. The object::

    {"benchmark": "intake", "started": "2026-12-01T23:36:02+00:00", "seconds": 15.2,
     "machine": {"platform": "Linux-...", "cpus": 2, "python": "3.11.7", "versions": {"Dovecot": "2.3.19.1"},
                 "load_start": 1.51, "load_end": 1.36},
     "options": {"messages": 500, "repeat": 1},
     "summary": [{"figure": "idle cycle time, 500 vs 100 messages", "value": "1.00", "target": "~1 (<= 1.1)",
                  "verdict": "meets"}, ...],
     "figures": {...}}

``summary`` holds the headline figures, each with its target and its verdict (``meets``, ``below target``, or
``-`` for a figure given for information), decided by the benchmark that measured it: ``run_all.py`` shows them as
they are. ``figures`` holds everything measured, in a shape of the benchmark's own. Timings are read as ratios
against a baseline measured in the same run, since machines are noisy.

Importing this module puts the checkout first on ``sys.path``: the benchmarks measure this checkout's mailtriage
and use its ``tests/dovecot.py``, whatever an installed copy points to.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    import imapclient

    from mailtriage.pipeline import CycleReport
    from tests.dovecot import Account, DovecotServer

MiB = 1024 * 1024
MEETS, BELOW, INFO = "meets", "below target", "-"
FLAT = 1.1
"""A figure whose target is ~1 (independent of size, flat) meets it at or below this."""


def log(text: str) -> None:
    """A progress line on stderr, with the time."""
    print(f"[{datetime.now():%H:%M:%S}] {text}", file=sys.stderr, flush=True)


def verdict(meets: bool) -> str:
    return MEETS if meets else BELOW


def span(seconds: float) -> str:
    """A run's length, in seconds or minutes."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# --- headline figures, the machine and the JSON -------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One headline figure of a benchmark: a row of its JSON's ``summary``, and of run_all.py's table."""

    figure: str
    value: str
    target: str = ""
    verdict: str = INFO

    @classmethod
    def check(cls, figure: str, value: str, target: str, meets: bool) -> Figure:
        return cls(figure, value, target, verdict(meets))

    @classmethod
    def flat(cls, figure: str, ratio: float) -> Figure:
        """A ratio whose target is ~1: the same cost (or memory) whatever the size."""
        return cls.check(figure, f"{ratio:.2f}", f"~1 (<= {FLAT})", ratio <= FLAT)


def argument_parser(doc: str | None, child: bool = False) -> argparse.ArgumentParser:
    """A benchmark's argument parser: its docstring's first paragraph as the description, and ``--json FILE``;
    ``child``: the hidden ``--child SPEC`` by which a benchmark runs a part of itself in a subprocess."""
    found = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    found.add_argument("--json", metavar="FILE", type=Path, help="also write the figures to FILE as JSON")
    if child:
        found.add_argument("--child", help=argparse.SUPPRESS)
    return found


def options_of(args: argparse.Namespace) -> dict[str, Any]:
    """The options a run was given, as its JSON records them (not where the JSON went)."""
    return {key: value for key, value in vars(args).items() if key not in ("json", "child")}


@dataclass
class Machine:
    """The machine a run is on and how busy it was: the first lines of every benchmark's output."""

    versions: dict[str, str] = field(default_factory=dict)
    """Versions of what is measured beside Python, by name: Dovecot, SQLite, scikit-learn."""
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    load_start: float = field(default_factory=lambda: os.getloadavg()[0])
    load_end: float | None = None
    seconds: float | None = None
    _clock: float = field(default_factory=time.perf_counter, repr=False)

    def done(self) -> None:
        """The run is over: its load average and length are read now."""
        self.load_end = os.getloadavg()[0]
        self.seconds = time.perf_counter() - self._clock

    def lines(self, title: str) -> list[str]:
        """``title`` with the date and the machine, then the load average at the start and end and the run's
        length (read now, if ``done`` was not called)."""
        if self.seconds is None:
            self.done()
        versions = "".join(f"; {name} {version}" for name, version in self.versions.items())
        return [
            f"{title}, {self.started:%Y-%m-%d %H:%M} UTC; {platform.platform()}, {os.cpu_count()} CPUs; "
            f"Python {platform.python_version()}{versions}",
            f"load average (1 min) at the start {self.load_start:.2f}, at the end {self.load_end:.2f} (other "
            f"processes share these cores); whole run {span(self.seconds or 0)}",
        ]

    def as_json(self) -> dict[str, Any]:
        return {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                "versions": self.versions, "load_start": self.load_start, "load_end": self.load_end}  # fmt: skip


def write_json(
    path: Path | None,
    benchmark: str,
    machine: Machine,
    options: Mapping[str, Any],
    summary: Sequence[Any],
    figures: Mapping[str, Any],
) -> None:
    """Write a run's JSON to ``path`` (nothing when None; see this module's docstring). ``summary``: Figure rows
    (or rows of another dataclass with those fields, as run_all.py's, which also name their benchmark)."""
    if path is None:
        return
    if machine.seconds is None:
        machine.done()
    data = {
        "benchmark": benchmark,
        "started": machine.started.isoformat(timespec="seconds"),
        "seconds": round(machine.seconds or 0, 1),
        "machine": machine.as_json(),
        "options": dict(options),
        "summary": [asdict(row) for row in summary],
        "figures": dict(figures),
    }
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


# --- a private Dovecot ---------------------------------------------------------------------------------------------


def dovecot_version() -> str:
    try:
        done = subprocess.run(["dovecot", "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return "?"
    return done.stdout.split()[0] if done.stdout.strip() else "?"


def dovecot_missing(benchmark: str) -> bool:
    """Whether a private Dovecot cannot run here; if so, says why on stderr."""
    from tests.dovecot import unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        print(f"{benchmark}: cannot start a private Dovecot: {reason}", file=sys.stderr)
    return reason is not None


@contextmanager
def private_dovecot(keep: bool = False) -> Iterator[DovecotServer]:
    """A private Dovecot (``tests/dovecot.py``) for the benchmark's run, stopped at the end and its folder removed
    (``keep``: left in place, and how to start it again said)."""
    from tests.dovecot import start_server

    server = start_server()
    log(f"private Dovecot on 127.0.0.1:{server.port} in {server.directory}")
    try:
        yield server
    finally:
        server.stop()
        if keep:
            log(f"kept Dovecot's folder {server.directory} (start it again: dovecot -c {server.config})")
        else:
            shutil.rmtree(server.directory, ignore_errors=True)


def connect(account: Account, timeout: float = 30) -> imapclient.IMAPClient:
    """A logged-in client; a user just added, or a server just restarted, may refuse for a moment."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return account.client()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def new_account(server: DovecotServer) -> Account:
    """A fresh account, checked to log in."""
    account = server.new_account()
    connect(account, timeout=10).logout()
    return account


def fill(account: Account, messages: Iterable[bytes]) -> Account:
    """APPEND ``messages`` to the account's INBOX."""
    start = time.perf_counter()
    count = account.append_many(messages)
    log(f"  appended {count:,} messages to {account.username} in {time.perf_counter() - start:.1f} s")
    return account


# --- measuring the pipeline ----------------------------------------------------------------------------------------


def processed(report: CycleReport) -> int:
    """The messages a cycle read: recorded, skipped or failed."""
    return report.new + report.skipped + report.failed


F = TypeVar("F", bound=Callable[..., Any] | None)


def timed(function: F, name: str, seconds: defaultdict[str, float], calls: Counter[str] | None = None) -> F:
    """``function`` with the seconds spent in it (and, given ``calls``, its calls) added up under ``name``; None
    stays None."""
    if function is None:
        return function
    call = function

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            seconds[name] += time.perf_counter() - start
            if calls is not None:
                calls[name] += 1

    return cast(F, wrapper)


class CountedMailbox:
    """A mailbox whose every call is counted and timed, by method; ``fetch`` is read out in full inside its
    timing. Pass it where a ``Mailbox`` goes with ``cast``: it has whatever the mailbox it wraps has."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.inbox = inner.inbox
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()

    def fetch(self, folder: str, uids: Sequence[int], headers_only: bool = False) -> Iterator[Any]:
        def read() -> list[Any]:
            return list(self.inner.fetch(folder, uids, headers_only))

        return iter(timed(read, "fetch", self.seconds, self.calls)())

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        return timed(target, name, self.seconds, self.calls) if callable(target) else target

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


def max_rss_bytes() -> int:
    """The process's peak resident set so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def start_child(script: str, spec: Mapping[str, Any]) -> subprocess.Popen[str]:
    """``script`` run again in a fresh process with ``--child SPEC`` (JSON): a part measured on its own, its
    figures the last line it prints (``child_result``); its progress and warnings go to stderr as they come."""
    command = [sys.executable, str(Path(script).resolve()), "--child", json.dumps(dict(spec))]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def child_result(child: subprocess.Popen[str]) -> Any:
    """The figures a child printed, once it has ended; RuntimeError if it failed (its stderr says why)."""
    out, _ = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"the measuring subprocess failed with status {child.returncode}: see its lines above")
    return json.loads(out.strip().splitlines()[-1])


def child_spec(spec: str) -> dict[str, Any]:
    """Subprocess side: what ``start_child`` passed."""
    given: dict[str, Any] = json.loads(spec)
    return given


def child_done(figures: Any) -> int:
    """Subprocess side: hand the figures to the parent (the last line of stdout)."""
    print(json.dumps(figures), flush=True)
    return 0
