"""Prometheus metrics, served over HTTP when ``health.metrics_port`` is set (``prometheus_client``).

Cycle durations and failures are counted by the daemon as they happen; message counts and open deadlines are read
from the store at each scrape (two grouped, indexed queries), so they survive restarts and agree with ``status``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from mailtriage.store import Store

if TYPE_CHECKING:
    from mailtriage.cluster import Membership
    from mailtriage.pipeline import CycleReport

log = logging.getLogger(__name__)


class Metrics:
    """The daemon's metrics, in a registry of their own."""

    def __init__(self, store: Store, membership: Membership | None = None) -> None:
        self.registry = CollectorRegistry()
        self.cycle_seconds = Histogram(
            "mailtriage_cycle_seconds", "Duration of a poll cycle.", ["mailbox"], registry=self.registry,
            buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )  # fmt: skip
        self.cycle_errors = Counter(
            "mailtriage_cycle_errors", "Cycles that failed (server, login or store).", ["mailbox"],
            registry=self.registry,
        )  # fmt: skip
        self.last_success = Gauge(
            "mailtriage_last_success_timestamp_seconds", "When the mailbox's last cycle succeeded (Unix time).",
            ["mailbox"], registry=self.registry,
        )  # fmt: skip
        self.skipped_runs = Counter(
            "mailtriage_skipped_runs", "Scheduled runs skipped because the same job was still running.", ["job"],
            registry=self.registry,
        )  # fmt: skip
        self.registry.register(_StoreCollector(store))
        if membership is not None:
            self.registry.register(_LeaseCollector(membership))

    def serve(self, port: int, address: str) -> None:
        """Serve ``/metrics`` on ``address``:``port`` from a background thread."""
        start_http_server(port, addr=address, registry=self.registry)

    def start(self, port: int, address: str) -> None:
        """``serve``, with one line saying where, or why not: triage matters more than its metrics."""
        try:
            self.serve(port, address)
        except OSError as exc:
            log.error("cannot serve metrics on %s:%d (%s); running without them", address, port,
                      exc.strerror or exc)  # fmt: skip
            return
        log.info("Prometheus metrics on http://%s:%d/metrics", address, port)

    def after_cycle(self, report: CycleReport, failures: int, elapsed: float) -> None:
        self.cycle_seconds.labels(report.mailbox).observe(elapsed)
        if report.ok:
            self.last_success.labels(report.mailbox).set_to_current_time()
        else:
            self.cycle_errors.labels(report.mailbox).inc()

    def skipped(self, job: str) -> None:
        self.skipped_runs.labels(job).inc()


class _StoreCollector(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        messages = GaugeMetricFamily(
            "mailtriage_messages", "Messages recorded, by mailbox, status and category.",
            labels=["mailbox", "status", "category"],
        )  # fmt: skip
        waiting = GaugeMetricFamily(
            "mailtriage_open_deadlines", "Messages waiting for a first response, by deadline state.",
            labels=["mailbox", "state"],
        )  # fmt: skip
        counts = self.store.health.metric_counts()
        for (mailbox, status, category), count in counts["messages"].items():
            messages.add_metric([mailbox, status, category], count)
        for (mailbox, state), count in counts["open"].items():
            waiting.add_metric([mailbox, state], count)
        yield messages
        yield waiting


class _LeaseCollector(Collector):
    """This daemon among those sharing the store: its name, the mailboxes it holds, the leases it took and lost."""

    def __init__(self, membership: Membership) -> None:
        self.membership = membership

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        name = self.membership.name
        owned = GaugeMetricFamily(
            "mailtriage_leases_held", "Mailboxes whose lease this daemon holds (1 per mailbox).",
            labels=["daemon", "mailbox"],
        )  # fmt: skip
        for mailbox in self.membership.mailboxes:
            owned.add_metric([name, mailbox], 1 if self.membership.owns(mailbox) else 0)
        taken = CounterMetricFamily("mailtriage_leases_taken", "Leases this daemon took since it started.",
                                    labels=["daemon"])  # fmt: skip
        taken.add_metric([name], self.membership.taken)
        lost = CounterMetricFamily(
            "mailtriage_leases_lost", "Leases this daemon lost since it started (not renewed in time).",
            labels=["daemon"],
        )  # fmt: skip
        lost.add_metric([name], self.membership.lost)
        yield owned
        yield taken
        yield lost
