"""The daemon: one APScheduler job per mailbox, a listener beside each (IMAP IDLE, a Maildir's folder), sweeps and
other jobs on their own intervals, and graceful shutdown.

Each mailbox is polled on its own job, so one mailbox that fails (a wrong password, a server down) is logged and
retried with capped exponential backoff while the others go on. SIGTERM or SIGINT lets the message in hand finish,
closes connections and ends with exit code 0.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from mailtriage.backoff import backoff, seconds
from mailtriage.cluster import Membership
from mailtriage.errors import AuthenticationFailed, LeaseLost, MailboxError, StoreError
from mailtriage.listener import listen
from mailtriage.mailbox import Mailbox
from mailtriage.mailbox.fenced import FencedMailbox
from mailtriage.mailbox.server import describe
from mailtriage.models import Clock
from mailtriage.pipeline import Control, CycleOptions, CycleReport, Triage, no_stages, run_cycle
from mailtriage.settings import ScheduleSettings
from mailtriage.store import Store

log = logging.getLogger(__name__)

WORKERS = 10
"""Cycles and sweeps run at once, at most (APScheduler's default pool)."""
LEASES = "leases"
"""The executor of lease ticks: one thread of their own."""
EXPIRY_MARGIN = timedelta(milliseconds=100)
"""How long after another daemon's lease runs out the tick that may take it over runs."""

__all__ = ["Daemon", "Duties", "Sweep", "backoff", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Sweep:
    """Work for each mailbox apart from the poll, every ``interval`` seconds."""

    name: str
    run: Callable[[Mailbox], object]
    interval: float


AfterCycle = Callable[[CycleReport, int, float], None]
"""Told after every cycle: its report, the mailbox's failures in a row, and how long it took in seconds."""


@dataclass(frozen=True)
class Duties:
    """What the daemon does besides polling: the stages of each cycle, the sweeps after it, other jobs, what it is
    told after each cycle (health, heartbeat, metrics), what starts with the long-running daemon (a metrics
    server), and the category folders it names at start."""

    options: CycleOptions = CycleOptions()
    stages: Triage = no_stages
    sweeps: Sequence[Sweep] = ()
    jobs: Sequence[tuple[Callable[[], object], BaseTrigger]] = ()
    after_cycle: Sequence[AfterCycle] = ()
    on_start: Sequence[Callable[[], None]] = ()
    on_skipped: Sequence[Callable[[str], None]] = ()
    """Told the job's name when a scheduled run is skipped because the job was still running."""
    folders: Sequence[str] = ()


class Daemon:
    """Runs cycles for every mailbox, once (``run_once``) or on a schedule until told to stop (``run_forever``)."""

    def __init__(
        self,
        mailboxes: Sequence[Mailbox],
        store: Store,
        schedule: ScheduleSettings,
        duties: Duties = Duties(),
        clock: Clock = utcnow,
        membership: Membership | None = None,
    ) -> None:
        """``membership``: the leases through which daemons sharing the store share the mailboxes; None: this
        daemon works every mailbox, alone (tests on a store of their own)."""
        self.store, self.schedule, self.duties, self.clock = store, schedule, duties, clock
        self.membership = membership
        self.mailboxes: list[Mailbox] = (
            list(mailboxes) if membership is None else [FencedMailbox(m, membership.check) for m in mailboxes]
        )
        self.once = False
        """Set by ``run_once``: a failure is tried again by the next run, not by this process."""
        self.stop = threading.Event()
        self._failures = {mailbox.name: 0 for mailbox in self.mailboxes}
        self._store_failed = False
        self._lock = threading.Lock()
        self._running: set[str] = set()
        """Mailboxes whose cycle is running now."""
        self._again: set[str] = set()
        """Mailboxes woken while their cycle ran: it runs again as soon as it ends."""

    def cycle(self, mailbox: Mailbox) -> CycleReport:
        """One cycle for one mailbox, its lease taken first if this daemon does not hold it (reported held when
        another daemon does); a mailbox failure is logged and reported, never raised."""
        if self.membership is not None and not self.membership.owns(mailbox.name):
            try:
                held = self.membership.claim([mailbox.name])
            except StoreError as exc:
                return self._failed(mailbox, exc)
            if held:
                return CycleReport(mailbox.name, held_by=held[mailbox.name])
        return self._cycle(mailbox)

    def _cycle(self, mailbox: Mailbox) -> CycleReport:
        started = time.monotonic()
        if self._store_failed:
            # Each try after a store fault gets fresh connections: one opened during the fault (a read-only file,
            # by the health write that followed it, say) would keep failing after the fault is gone.
            self.store.reconnect()
            self._store_failed = False
        try:
            control = Control(should_stop=self.stop.is_set, fence=self._fence(mailbox))
            report = run_cycle(mailbox, self.store, now=self.clock, options=self.duties.options,
                               stages=self.duties.stages, control=control)  # fmt: skip
        except LeaseLost as exc:  # not a failure of the mailbox: another daemon works it now
            log.warning("%s; stopped before changing anything more there: the daemon holding it finishes what was "
                        "begun", exc)  # fmt: skip
            mailbox.close()
            return CycleReport(mailbox.name)
        except Exception as exc:  # a fault of the server, the store, or of mailtriage itself: never the end of it
            report = self._failed(mailbox, exc)
        else:
            if self._failures[mailbox.name]:
                log.info("mailbox %s: working again after %d failed cycles", mailbox.name,
                         self._failures[mailbox.name])  # fmt: skip
            self._failures[mailbox.name] = 0
        for hook in self.duties.after_cycle:
            hook(report, self._failures[mailbox.name], time.monotonic() - started)
        return report

    def _failed(self, mailbox: Mailbox, exc: Exception) -> CycleReport:
        """One line saying what failed and what happens next; the traceback too when it is a bug."""
        self._failures[mailbox.name] += 1
        delay = backoff(self._failures[mailbox.name], self.schedule)
        if isinstance(exc, StoreError):
            self._store_failed = True
            then = "nothing is lost: what was not recorded is read again"
        elif isinstance(exc, AuthenticationFailed):
            then = "check its username and secret; other mailboxes go on"
        elif isinstance(exc, MailboxError):
            then = "what was begun is finished at the next cycle; other mailboxes go on"
        else:  # a bug: the traceback goes to the log, for a report
            log.error("mailbox %s: unexpected %s in a cycle (a bug in mailtriage: please report it)",
                      mailbox.name, type(exc).__name__, exc_info=exc)  # fmt: skip
            then = "other mailboxes go on"
        again = "the next run tries it again" if self.once else f"retrying it in {seconds(delay)}"
        log.error("%s; %s; %s", exc, then, again)
        mailbox.close()
        return CycleReport(mailbox.name, error=str(exc))

    def _fence(self, mailbox: Mailbox) -> Callable[[], None]:
        """What a cycle calls before committing a batch: raises LeaseLost once the lease is not ours."""
        membership = self.membership
        if membership is None:
            return lambda: None
        return lambda: membership.confirm(mailbox.name)

    def owns(self, mailbox: Mailbox) -> bool:
        return self.membership is None or self.membership.owns(mailbox.name)

    def run_once(self) -> list[CycleReport]:
        """One cycle of every mailbox no other daemon holds, then the sweeps; the others are reported held."""
        self.once = True
        held = {} if self.membership is None else self.membership.claim_all()
        try:
            reports = [CycleReport(mailbox.name, held_by=held[mailbox.name]) if mailbox.name in held
                       else self._cycle(mailbox) for mailbox in self.mailboxes]  # fmt: skip
            for sweep in self.duties.sweeps:
                self.run_sweep(sweep)
            return reports
        finally:
            self.close()
            if self.membership is not None:
                self.membership.leave()

    def run_sweep(self, sweep: Sweep) -> None:
        """Run a sweep for every mailbox whose last cycle worked; one that fails is logged and tried again at the
        next sweep."""
        for mailbox in self.mailboxes:
            if self.stop.is_set():
                return
            if self._failures[mailbox.name] or not self.owns(mailbox):
                continue  # its cycle failed and said why (the sweep waits until it works again); or not ours
            try:
                sweep.run(mailbox)
            except Exception as exc:  # one mailbox's sweep never stops the others, nor the daemon
                if not isinstance(exc, (MailboxError, StoreError)):
                    log.error("mailbox %s: unexpected %s in the %s sweep (a bug in mailtriage: please report it)",
                              mailbox.name, type(exc).__name__, sweep.name, exc_info=exc)  # fmt: skip
                log.warning("%s; the %s sweep goes on at its next run", exc, sweep.name)

    def close(self) -> None:
        for mailbox in self.mailboxes:
            mailbox.close()

    # --- the long-running loop -----------------------------------------------------------------------------------

    def run_forever(self, install_signals: bool = True) -> None:
        """Poll every mailbox on schedule, woken early by its listener, until ``stop`` is set (SIGTERM/SIGINT)."""
        if install_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._on_signal)
        scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1},
            executors={"default": ThreadPoolExecutor(WORKERS), LEASES: ThreadPoolExecutor(1)},
        )  # fmt: skip
        scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)
        logging.getLogger("apscheduler.scheduler").addFilter(NO_SKIPPED_RUNS)
        listeners: list[threading.Thread] = []
        try:
            if self.membership is not None:
                self.membership.join()
                self.membership.tick()  # its share of the mailboxes, before the first cycles
            self._schedule(scheduler)
            for mailbox in self.mailboxes:
                self._introduce(mailbox)
            scheduler.start()
            if self.schedule.idle:
                listeners = [self._listen(mailbox, scheduler) for mailbox in self.mailboxes]
            for start in self.duties.on_start:
                start()
            log.info("watching %d mailbox(es): polling every %.0f s%s", len(self.mailboxes),
                     self.schedule.poll_interval, ", woken at once by new mail" if listeners else "")  # fmt: skip
            self.stop.wait()
            log.info("stopping: finishing the message in hand, then closing connections")
        finally:
            self.stop.set()
            if self.membership is not None:
                self.membership.end_all()
            if scheduler.running:
                scheduler.shutdown(wait=True)
            for listener in listeners:
                listener.join(timeout=5)
            self.close()
            self._leave()
            log.info("stopped")

    def _leave(self) -> None:
        """Give the leases back, so that the other daemons take over at once rather than after they expire."""
        if self.membership is None:
            return
        try:
            self.membership.leave()
        except StoreError as exc:
            log.warning("%s; the other daemons take this one's mailboxes over once its leases expire", exc)

    def tick_interval(self) -> float:
        """How often leases are renewed and the split evened out: a third of the lease, at most the poll."""
        assert self.membership is not None
        return min(self.membership.lease_seconds / 3, self.schedule.poll_interval)

    def _tick(self, scheduler: BackgroundScheduler, rearm: bool = True) -> None:
        """Renew and rebalance; a mailbox just taken over is cycled at once (what its last owner left, first).
        Ticks run on an executor of their own, so that cycles and sweeps filling the pool never delay them."""
        assert self.membership is not None
        try:
            taken = self.membership.tick(busy=self._busy)
        except StoreError as exc:
            log.warning("%s; leases not renewed: this daemon stops acting on its mailboxes once they run short, "
                        "and renews at the next tick", exc)  # fmt: skip
            return
        by_name = {mailbox.name: mailbox for mailbox in self.mailboxes}
        for name in taken:
            self._wake(by_name[name], scheduler)
        if rearm:
            self._tick_at_expiry(scheduler)

    def _tick_at_expiry(self, scheduler: BackgroundScheduler) -> None:
        """Tick again when the soonest of the other daemons' leases runs out: if its holder stopped renewing, its
        mailboxes are taken over then, not up to a tick later. A holder that renews pushes this back at every tick,
        so it never runs; once it has run, the next regular tick (always before another lease can run out) arms
        it again."""
        assert self.membership is not None
        expiring = self.membership.expiring
        if expiring is not None and not self.stop.is_set():
            at = expiring + EXPIRY_MARGIN
            scheduler.add_job(self._tick, "date", run_date=at, args=[scheduler, False], id="leases-expiry",
                              replace_existing=True, executor=LEASES, misfire_grace_time=None)  # fmt: skip

    def _busy(self, name: str) -> bool:
        """Whether the cycle of mailbox ``name`` runs now (it checked ``owns`` and began under this lock)."""
        with self._lock:
            return name in self._running

    def _schedule(self, scheduler: BackgroundScheduler) -> None:
        for mailbox in self.mailboxes:
            scheduler.add_job(
                self._scheduled_cycle, "interval", args=[mailbox, scheduler], id=mailbox.name,
                seconds=self.schedule.poll_interval, next_run_time=datetime.now(UTC), misfire_grace_time=None,
            )  # fmt: skip
        for function, trigger in self.duties.jobs:
            scheduler.add_job(function, trigger)
        for sweep in self.duties.sweeps:
            scheduler.add_job(self.run_sweep, IntervalTrigger(seconds=sweep.interval), args=[sweep], id=sweep.name)
        if self.membership is not None:
            scheduler.add_job(self._tick, IntervalTrigger(seconds=self.tick_interval()), args=[scheduler],
                              id="leases", executor=LEASES, misfire_grace_time=None)  # fmt: skip
            self._tick_at_expiry(scheduler)  # after the tick that ``run_forever`` ran before scheduling

    def _listen(self, mailbox: Mailbox, scheduler: BackgroundScheduler) -> threading.Thread:
        """A thread that wakes the mailbox's job as soon as mail arrives, on a handle of its own."""
        thread = threading.Thread(target=self._listen_while_owned, args=(mailbox, scheduler),
                                  name=f"listen-{mailbox.name}", daemon=True)  # fmt: skip
        thread.start()
        return thread

    def _listen_while_owned(self, mailbox: Mailbox, scheduler: BackgroundScheduler) -> None:
        """Listen on ``mailbox`` while this daemon holds its lease; wait for it while another daemon does."""

        def wake() -> None:
            self._wake(mailbox, scheduler)

        if self.membership is None:
            listen(mailbox, wake, self.stop, self.schedule)
            return
        while not self.stop.is_set():
            period = self.membership.period(mailbox.name)
            if period is None:
                self.stop.wait(self.tick_interval())
                continue
            listen(mailbox, wake, period, self.schedule)
            if not period.is_set():
                return  # it cannot listen there (no IDLE): polling alone finds its mail

    def _introduce(self, mailbox: Mailbox) -> None:
        """Log once what the mailbox's server offers and what mailtriage will therefore do there."""
        try:
            lines = describe(mailbox.profile(self.duties.folders))
        except MailboxError as exc:
            log.warning("%s; cannot tell yet what the server offers, the first cycle will try again", exc)
            return
        log.info("%s", lines[0])
        for line in lines[1:]:  # one log line each, every one naming its mailbox
            log.info("mailbox %s: %s", mailbox.name, line.strip())

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        self.stop.set()

    def _scheduled_cycle(self, mailbox: Mailbox, scheduler: BackgroundScheduler) -> None:
        if self.stop.is_set():
            return
        with self._lock:
            if not self.owns(mailbox):
                return  # another daemon's, for now: taken at a tick if it comes to this one
            self._running.add(mailbox.name)
        try:
            report = self._cycle(mailbox)
        finally:
            with self._lock:
                self._running.discard(mailbox.name)
                woken = mailbox.name in self._again
                self._again.discard(mailbox.name)
        if not report.ok:
            delay = backoff(self._failures[mailbox.name], self.schedule)
            scheduler.modify_job(mailbox.name, next_run_time=datetime.now(UTC) + timedelta(seconds=delay))
        elif report.backlog or woken:  # more waiting, or mail arrived during the cycle: go on at once
            scheduler.modify_job(mailbox.name, next_run_time=datetime.now(UTC))

    def _wake(self, mailbox: Mailbox, scheduler: BackgroundScheduler) -> None:
        """Run the mailbox's cycle now; if one is running, right after it (a wake is never dropped)."""
        if self.stop.is_set():
            return  # shutting down: the scheduler and its jobs may be gone already
        with self._lock:
            if mailbox.name in self._running:
                self._again.add(mailbox.name)
                return
        try:
            scheduler.modify_job(mailbox.name, next_run_time=datetime.now(UTC))
        except JobLookupError:
            pass  # removed by the shutdown that is under way

    def _skipped(self, event: JobSubmissionEvent) -> None:
        """A scheduled run that came while the job still ran: not a warning (it was not needed), counted."""
        log.debug("the %s job was still running when it was due again: that run was skipped", event.job_id)
        for count in self.duties.on_skipped:
            count(str(event.job_id))


class _NoSkippedRuns(logging.Filter):
    """APScheduler warns each time a run is skipped because the job is still running: with IDLE waking a busy
    mailbox that was thousands of lines; the daemon says it at DEBUG instead, and the metrics count it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in str(record.msg)


NO_SKIPPED_RUNS = _NoSkippedRuns()
