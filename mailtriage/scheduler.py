"""The daemon: one APScheduler job per mailbox, an IMAP IDLE listener beside each IMAP job, graceful shutdown.

Each mailbox is polled on its own job, so one mailbox that fails (a wrong password, a server down) is logged and
retried with capped exponential backoff while the others go on. SIGTERM or SIGINT lets the message in hand finish,
closes connections and ends with exit code 0.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from mailtriage import __version__
from mailtriage.corrections import sweep as corrections_sweep
from mailtriage.deadlines import Policy, policy_from_settings
from mailtriage.errors import AuthenticationFailed, MailboxError, StoreError
from mailtriage.files import private_folder, write_private
from mailtriage.mailbox import Mailbox, open_mailbox
from mailtriage.mailbox.imap import ImapMailbox
from mailtriage.mailbox.server import describe
from mailtriage.models import Classification, ParsedEmail
from mailtriage.pipeline import CycleOptions, CycleReport, Triage, no_stages, run_cycle
from mailtriage.settings import ScheduleSettings, Settings
from mailtriage.store import Store

if TYPE_CHECKING:
    from mailtriage.metrics import Metrics
from mailtriage.watch import Signals, sweep_deadlines

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sweep:
    """Work for each mailbox apart from the poll, every ``interval`` seconds."""

    name: str
    run: Callable[[Mailbox], object]
    interval: float


def utcnow() -> datetime:
    return datetime.now(UTC)


def seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def backoff(failures: int, schedule: ScheduleSettings) -> float:
    """Seconds to wait after ``failures`` failures in a row: doubling from ``backoff_initial``, capped."""
    return float(min(schedule.backoff_max, schedule.backoff_initial * 2 ** max(0, failures - 1)))


class Daemon:
    """Runs cycles for every mailbox, once (``run_once``) or on a schedule until told to stop (``run_forever``)."""

    def __init__(
        self,
        mailboxes: Sequence[Mailbox],
        store: Store,
        options: CycleOptions,
        schedule: ScheduleSettings,
        now: Callable[[], datetime] = utcnow,
        stages: Triage = no_stages,
        jobs: Sequence[tuple[Callable[[], object], BaseTrigger]] = (),
        sweeps: Sequence[Sweep] = (),
        heartbeat_file: Path | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.mailboxes = list(mailboxes)
        self.store = store
        self.options = options
        self.schedule = schedule
        self.now = now
        self.stages = stages
        self.jobs = list(jobs)
        """Further scheduled work: (function, when)."""
        self.sweeps = list(sweeps)
        """Work apart from the poll for each mailbox (deadlines, agents' corrections): after ``run_once``, and
        each on its own interval in the daemon."""
        self.heartbeat_file = heartbeat_file
        """Rewritten after every cycle, for a supervisor to watch; None: none."""
        self.health: dict[str, dict[str, object]] = {}
        self.metrics = metrics
        """Counted as cycles run; served when ``metrics_port`` is set."""
        self.once = False
        """Set by ``run_once``: a failure is tried again by the next run, not by this process."""
        self.metrics_port: int | None = None
        self.metrics_address = "127.0.0.1"
        self.folders: tuple[str, ...] = ()
        """The category folders, resolved on each server and logged at start."""
        self.stop = threading.Event()
        self._failures = {mailbox.name: 0 for mailbox in self.mailboxes}
        self._store_failed = False
        self._lock = threading.Lock()
        self._running: set[str] = set()
        """Mailboxes whose cycle is running now."""
        self._again: set[str] = set()
        """Mailboxes woken by IDLE while their cycle ran: it runs again as soon as it ends."""

    def cycle(self, mailbox: Mailbox) -> CycleReport:
        """One cycle for one mailbox; a mailbox failure is logged and reported, never raised."""
        started = time.monotonic()
        if self._store_failed:
            # Each try after a store fault gets fresh connections: one opened during the fault (a read-only file,
            # by the health write that followed it, say) would keep failing after the fault is gone.
            self.store.reconnect()
            self._store_failed = False
        try:
            report = run_cycle(
                mailbox,
                self.store,
                now=self.now,
                options=self.options,
                should_stop=self.stop.is_set,
                stages=self.stages,
            )
        except Exception as exc:  # a fault of the server, the store, or of mailtriage itself: never the end of it
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
            report = CycleReport(mailbox.name, error=str(exc))
        else:
            if self._failures[mailbox.name]:
                log.info("mailbox %s: working again after %d failed cycles", mailbox.name,
                         self._failures[mailbox.name])  # fmt: skip
            self._failures[mailbox.name] = 0
        self._note_health(report)
        if self.metrics is not None:
            self.metrics.cycle_seconds.labels(mailbox.name).observe(time.monotonic() - started)
            if report.ok:
                self.metrics.last_success.labels(mailbox.name).set_to_current_time()
            else:
                self.metrics.cycle_errors.labels(mailbox.name).inc()
        return report

    def _note_health(self, report: CycleReport) -> None:
        """Record how the cycle ended in the store (for ``mailtriage status``) and in the heartbeat file."""
        now = self.now()
        entry = self.health.setdefault(report.mailbox, {"last_ok_at": None, "failures": 0, "last_error": None})
        if report.ok:
            entry.update(last_ok_at=now.isoformat(timespec="seconds"), failures=0)
        else:
            entry.update(failures=self._failures[report.mailbox], last_error=report.error)
        try:
            self.store.cycle_done(report.mailbox, error=report.error, backlog=report.backlog, now=now)
        except StoreError as exc:
            log.warning("cannot note the cycle's health in the store: %s", exc)
        if self.heartbeat_file is not None:
            write_heartbeat(self.heartbeat_file, self.health, now)

    def run_once(self) -> list[CycleReport]:
        self.once = True
        try:
            reports = [self.cycle(mailbox) for mailbox in self.mailboxes]
            self.sweep_all()
            return reports
        finally:
            self.close()

    def sweep_all(self) -> None:
        for sweep in self.sweeps:
            self.run_sweep(sweep)

    def run_sweep(self, sweep: Sweep) -> None:
        """Run a sweep for every mailbox whose last cycle worked; one that fails is logged and tried again at the
        next sweep."""
        for mailbox in self.mailboxes:
            if self.stop.is_set():
                return
            if self._failures[mailbox.name]:
                continue  # its cycle failed and said why; the sweep waits until the mailbox works again
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
        """Poll every mailbox on schedule, woken early by IDLE, until ``stop`` is set (by SIGTERM/SIGINT)."""
        if install_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._on_signal)
        scheduler = BackgroundScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1})
        scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)
        logging.getLogger("apscheduler.scheduler").addFilter(NO_SKIPPED_RUNS)
        watchers = []
        try:
            for mailbox in self.mailboxes:
                scheduler.add_job(
                    self._scheduled_cycle, "interval", args=[mailbox, scheduler], id=mailbox.name,
                    seconds=self.schedule.poll_interval, next_run_time=datetime.now(UTC), misfire_grace_time=None,
                )  # fmt: skip
            for function, trigger in self.jobs:
                scheduler.add_job(function, trigger)
            for sweep in self.sweeps:
                scheduler.add_job(self.run_sweep, IntervalTrigger(seconds=sweep.interval), args=[sweep], id=sweep.name)
            for mailbox in self.mailboxes:
                self._introduce(mailbox)
            scheduler.start()
            if self.schedule.idle:
                for mailbox in self.mailboxes:
                    if isinstance(mailbox, ImapMailbox):
                        watcher = threading.Thread(
                            target=self._watch, args=(mailbox, scheduler), name=f"idle-{mailbox.name}", daemon=True
                        )
                        watcher.start()
                        watchers.append(watcher)
            if self.metrics is not None and self.metrics_port is not None:
                try:
                    self.metrics.serve(self.metrics_port, self.metrics_address)
                    log.info("Prometheus metrics on http://%s:%d/metrics", self.metrics_address, self.metrics_port)
                except OSError as exc:  # triage matters more than its metrics
                    log.error("cannot serve metrics on %s:%d (%s); running without them", self.metrics_address,
                              self.metrics_port, exc.strerror or exc)  # fmt: skip
            log.info(
                "watching %d mailbox(es): polling every %.0f s%s",
                len(self.mailboxes), self.schedule.poll_interval, ", IDLE where the server has it" if watchers else "",
            )  # fmt: skip
            self.stop.wait()
            log.info("stopping: finishing the message in hand, then closing connections")
        finally:
            self.stop.set()
            if scheduler.running:
                scheduler.shutdown(wait=True)
            for watcher in watchers:
                watcher.join(timeout=5)
            self.close()
            log.info("stopped")

    def _introduce(self, mailbox: Mailbox) -> None:
        """Log once what the mailbox's server offers and what mailtriage will therefore do there."""
        try:
            lines = describe(mailbox.profile(self.folders))
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
            self._running.add(mailbox.name)
        try:
            report = self.cycle(mailbox)
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

    def _watch(self, mailbox: ImapMailbox, scheduler: BackgroundScheduler) -> None:
        """Hold an IDLE connection of its own and wake the mailbox's job as soon as mail arrives. Any failure, at
        start too, is retried with backoff for the life of the daemon (polling goes on meanwhile): said once when
        IDLE stops, once when it is back."""
        listener = ImapMailbox(mailbox.settings)
        failures = 0

        def back() -> None:
            log.info("mailbox %s: listening (IDLE) again after %d failed attempts; a cycle looks for what arrived "
                     "meanwhile", mailbox.name, failures)  # fmt: skip
            self._wake(mailbox, scheduler)

        try:
            while not self.stop.is_set():
                try:
                    if not listener.supports_idle():
                        log.info("mailbox %s: the server has no IDLE; polling only", mailbox.name)
                        return
                    # After a failure, mail may have arrived while nobody listened: once listening again, a cycle
                    # looks (mail arriving from then on wakes IDLE itself).
                    if listener.wait_for_mail(mailbox.inbox, self.schedule.idle_timeout, self.stop,
                                              back if failures else None):  # fmt: skip
                        self._wake(mailbox, scheduler)
                    failures = 0
                except MailboxError as exc:
                    failures += 1
                    delay = backoff(failures, self.schedule)
                    if failures == 1:
                        log.warning("%s (IDLE); polling goes on; listening again in %s, then a cycle looks for what "
                                    "arrived meanwhile", exc, seconds(delay))  # fmt: skip
                    else:
                        log.debug("%s (IDLE); attempt %d failed, next in %s", exc, failures, seconds(delay))
                    self.stop.wait(delay)
        finally:
            listener.close()

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
        """A scheduled run that came while the job still ran: counted, not logged (it was not needed)."""
        if self.metrics is not None:
            self.metrics.skipped_runs.labels(str(event.job_id)).inc()


class _NoSkippedRuns(logging.Filter):
    """APScheduler warns each time a run is skipped because the job is still running: with IDLE waking a busy
    mailbox that was thousands of lines; the daemon counts them in metrics instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in str(record.msg)


NO_SKIPPED_RUNS = _NoSkippedRuns()


def write_heartbeat(path: Path, mailboxes: dict[str, dict[str, object]], now: datetime) -> None:
    """Replace the heartbeat file in one step (a reader never sees half of it): when, who, and each mailbox's
    last success, failures in a row and last error. A file that cannot be written is logged, never fatal."""
    data = {"at": now.isoformat(timespec="seconds"), "pid": os.getpid(), "version": __version__,
            "mailboxes": mailboxes}  # fmt: skip
    try:
        private_folder(path.parent)
        write_private(path, json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        log.warning("cannot write the heartbeat file %s: %s", path, exc)


def daemon_from_settings(settings: Settings, now: Callable[[], datetime] = utcnow) -> Daemon:
    """The daemon for a loaded configuration: its mailboxes, its store, its cycle options."""
    options = CycleOptions(
        own_addresses=settings.own_addresses(),
        batch_size=settings.intake.batch_size,
        max_per_cycle=settings.intake.max_per_cycle,
        backfill_days=settings.intake.backfill_days,
        deadlines=policy_from_settings(settings),
    )
    from mailtriage.classify import Predictor, load, load_or_build_default
    from mailtriage.training import default_sources, retrain

    store = Store(settings.store.url, settings.store.busy_timeout)  # first: opening it fails fast, a model is slow
    classifier = load_or_build_default(settings.classifier.model, settings.category_names(), log.info)
    predictor = Predictor(classifier, settings.classifier.threshold, settings.classifier.fallback)
    mailboxes = [open_mailbox(mailbox) for mailbox in settings.mailboxes]

    def scheduled_retrain() -> None:
        examples, sources = default_sources(settings, store)
        live = predictor.classifier.metadata.get("cross_validation") or {}
        if retrain(settings.classifier.model, examples, sources, live.get("macro_f1")):
            predictor.classifier = load(settings.classifier.model, settings.category_names())

    jobs: list[tuple[Callable[[], object], BaseTrigger]] = []
    if settings.classifier.retrain:
        jobs.append((scheduled_retrain, CronTrigger.from_crontab(settings.classifier.retrain, timezone=UTC)))
    folders = {c.folder: c.name for c in settings.categories if c.folder}
    keywords = {keyword: c.name for c in settings.categories for keyword in c.keywords}
    window = timedelta(days=settings.schedule.corrections_window_days)

    def corrections(mailbox: Mailbox) -> None:
        corrections_sweep(mailbox, store, folders, keywords, now(), window)

    sweeps = [Sweep("corrections", corrections, settings.schedule.corrections_interval)]
    if options.deadlines is not None:
        sweeps.insert(0, deadline_sweep(settings, store, options.deadlines, now))
    triage = triage_from_settings(settings, predictor)
    health = settings.health
    metrics = None
    if health.metrics_port is not None:
        from mailtriage.metrics import Metrics

        metrics = Metrics(store)
    daemon = Daemon(mailboxes, store, options, settings.schedule, now, triage, jobs, sweeps, health.heartbeat_file,
                    metrics)  # fmt: skip
    daemon.metrics_port, daemon.metrics_address = health.metrics_port, health.metrics_address
    daemon.folders = tuple(folders)
    return daemon


def deadline_sweep(settings: Settings, store: Store, policy: Policy, now: Callable[[], datetime]) -> Sweep:
    """The deadline sweep of a configuration, with its digest and webhook."""
    from mailtriage.notify import Notifier, Webhook

    d = settings.deadlines
    digest = None
    if d.digest_to:
        notifier, to = Notifier(settings.smtp), d.digest_to

        def digest(subject: str, body: str, at: datetime) -> None:
            notifier.send(to, subject, body, at)

    webhook = Webhook(d.webhook_url, d.webhook_timeout).post if d.webhook_url else None
    signals = Signals(digest=digest, webhook=webhook)

    def run(mailbox: Mailbox) -> None:
        report = sweep_deadlines(mailbox, store, policy, now(), signals)
        if report.answered or report.transitions or report.failed:
            log.info("mailbox %s: deadlines: %d answered, %s, %d signals given, %d failed", mailbox.name,
                     report.answered, ", ".join(f"{n} now {s}" for s, n in report.transitions.items()) or "no changes",
                     report.signalled, report.failed)  # fmt: skip

    return Sweep("deadlines", run, d.sweep_interval)


def triage_from_settings(settings: Settings, classify: Callable[[ParsedEmail], Classification]) -> Triage:
    """Classification, then the configured routing and drafts."""
    from mailtriage.compliance import load_policy
    from mailtriage.draft import Drafter
    from mailtriage.notify import Notifier
    from mailtriage.route import route
    from mailtriage.templates import Templates

    categories = {category.name: category for category in settings.categories}
    drafts = settings.drafts
    drafter = Drafter(
        Templates(drafts.templates, drafts.fallback_language),
        from_address=drafts.from_address,
        signature=drafts.signature,
        reference_patterns=drafts.reference_patterns,
        policy=load_policy(drafts.templates / "policy.toml"),
        target=timedelta(hours=settings.deadlines.target_hours),
        zone=settings.deadlines.calendar.timezone,
        foreign_reply_to=drafts.foreign_reply_to,
    )
    return Triage(
        classify=classify,
        route=lambda parsed, classification: route(
            parsed, classification, categories, settings.rules, settings.classifier.fallback
        ),
        draft=drafter,
        notify=Notifier(settings.smtp).send if settings.smtp.host else None,
    )
