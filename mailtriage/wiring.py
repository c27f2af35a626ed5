"""From a loaded configuration to a running daemon: the mailboxes, the store, the model, the stages of a cycle, the
sweeps and jobs beside it, and the hooks after it. The one place that knows how the parts fit together."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from mailtriage.actions import Triage
from mailtriage.cluster import Membership, default_name
from mailtriage.corrections import Watched
from mailtriage.corrections import sweep as corrections_sweep
from mailtriage.deadlines import Policy, policy_from_settings
from mailtriage.health import HealthNotes
from mailtriage.mailbox import Mailbox, open_mailbox
from mailtriage.models import Classification, Clock, ParsedEmail
from mailtriage.pipeline import CycleOptions
from mailtriage.scheduler import AfterCycle, Daemon, Duties, Sweep, utcnow
from mailtriage.settings import Settings
from mailtriage.store import Store
from mailtriage.watch import Signals, sweep_deadlines

if TYPE_CHECKING:
    from mailtriage.model import Predictor

log = logging.getLogger(__name__)


def open_store(settings: Settings, daemon: str | None = None) -> Store:
    """The configured store, opened the one way every command opens it; ``daemon``: the name of the daemon
    using it, noted on what it records."""
    return Store(settings.store.url, settings.store.busy_timeout, daemon=daemon)


def cycle_options(settings: Settings) -> CycleOptions:
    return CycleOptions(
        own_addresses=settings.own_addresses(), batch_size=settings.intake.batch_size,
        max_per_cycle=settings.intake.max_per_cycle, backfill_days=settings.intake.backfill_days,
        deadlines=policy_from_settings(settings),
    )  # fmt: skip


def daemon_from_settings(settings: Settings, clock: Clock = utcnow) -> Daemon:
    """The daemon for a loaded configuration."""
    from mailtriage.model import Predictor, load_or_build_default

    name = settings.cluster.name or default_name()
    store = open_store(settings, name)  # first: opening it fails fast, a model is slow
    membership = Membership(store, [m.name for m in settings.mailboxes], name=name,
                            lease_seconds=settings.cluster.lease_seconds, clock=clock)  # fmt: skip
    classifier = load_or_build_default(settings.classifier.model, settings.category_names(), log.info)
    predictor = Predictor(classifier, settings.classifier.threshold, settings.classifier.fallback)
    options = cycle_options(settings)
    sweeps = [corrections_sweep_for(settings, store, clock)]
    if options.deadlines is not None:
        sweeps.insert(0, deadline_sweep(settings, store, options.deadlines, clock))
    after_cycle: list[AfterCycle] = [HealthNotes(store, settings.health.heartbeat_file, clock)]
    on_start: list[Callable[[], None]] = []
    on_skipped: list[Callable[[str], None]] = []
    port = settings.health.metrics_port
    if port is not None:
        from mailtriage.metrics import Metrics

        metrics = Metrics(store, membership)
        after_cycle.append(metrics.after_cycle)
        on_start.append(lambda: metrics.start(port, settings.health.metrics_address))
        on_skipped.append(metrics.skipped)
    duties = Duties(
        options=options, stages=triage_from_settings(settings, predictor), sweeps=sweeps,
        jobs=retrain_jobs(settings, store, predictor), after_cycle=after_cycle, on_start=on_start,
        on_skipped=on_skipped, folders=tuple(c.folder for c in settings.categories if c.folder),
    )  # fmt: skip
    mailboxes = [open_mailbox(mailbox) for mailbox in settings.mailboxes]
    return Daemon(mailboxes, store, settings.schedule, duties, clock, membership)


def retrain_jobs(
    settings: Settings, store: Store, predictor: Predictor
) -> list[tuple[Callable[[], object], BaseTrigger]]:
    """The scheduled retrain, when ``classifier.retrain`` is set: the live model is replaced only by a better one."""
    if not settings.classifier.retrain:
        return []
    from mailtriage.model import load
    from mailtriage.training import default_sources, retrain  # scikit-learn: only where a retrain is scheduled

    def scheduled_retrain() -> None:
        examples, sources = default_sources(settings, store)
        live = predictor.classifier.metadata.get("cross_validation") or {}
        path = settings.classifier.model
        assert path is not None  # a scheduled retrain needs a model path (Settings checks it)
        if retrain(path, examples, sources, live.get("macro_f1"), settings.classifier.features):
            predictor.classifier = load(path, settings.category_names())

    return [(scheduled_retrain, CronTrigger.from_crontab(settings.classifier.retrain, timezone=UTC))]


def corrections_sweep_for(settings: Settings, store: Store, clock: Clock) -> Sweep:
    watched = Watched(
        folders={c.folder: c.name for c in settings.categories if c.folder},
        keywords={keyword: c.name for c in settings.categories for keyword in c.keywords},
        window=timedelta(days=settings.schedule.corrections_window_days),
    )

    def run(mailbox: Mailbox) -> None:
        corrections_sweep(mailbox, store, watched, clock)

    return Sweep("corrections", run, settings.schedule.corrections_interval)


def deadline_sweep(settings: Settings, store: Store, policy: Policy, clock: Clock) -> Sweep:
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
        report = sweep_deadlines(mailbox, store, policy, clock, signals)
        if report.answered or report.transitions or report.failed:
            log.info("mailbox %s: deadlines: %d answered, %s, %d signals given, %d failed", mailbox.name,
                     report.answered, ", ".join(f"{n} now {s}" for s, n in report.transitions.items()) or "no changes",
                     report.signalled, report.failed)  # fmt: skip

    return Sweep("deadlines", run, d.sweep_interval)


def triage_from_settings(
    settings: Settings, classify: Callable[[Sequence[ParsedEmail]], Sequence[Classification | None]]
) -> Triage:
    """Classification, then the configured routing and drafts."""
    from mailtriage.draft import Drafter
    from mailtriage.notify import Notifier
    from mailtriage.policy import load_policy
    from mailtriage.route import route
    from mailtriage.templates import Templates

    categories = {category.name: category for category in settings.categories}
    rules = settings.routing_rules()
    drafts = settings.drafts
    drafter = Drafter(
        Templates(drafts.templates, drafts.fallback_language), drafts, load_policy(drafts.templates / "policy.toml"),
        target=timedelta(hours=settings.deadlines.target_hours), zone=settings.deadlines.calendar.timezone,
    )  # fmt: skip
    return Triage(
        classify=classify,
        route=lambda parsed, classification: route(
            parsed, classification, categories, rules, settings.classifier.fallback
        ),
        draft=drafter,
        notify=Notifier(settings.smtp).send if settings.smtp.host else None,
    )
