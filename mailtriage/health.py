"""Is the daemon working? After each cycle it notes how the cycle ended (in the store, and in a heartbeat file for
a supervisor); ``mailtriage status`` reads that back into a verdict monitoring can act on."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailtriage import __version__
from mailtriage.errors import StoreError
from mailtriage.files import private_folder, write_private
from mailtriage.models import Clock
from mailtriage.store import Store

if TYPE_CHECKING:
    from mailtriage.pipeline import CycleReport
    from mailtriage.settings import Settings

log = logging.getLogger(__name__)


class HealthNotes:
    """After every cycle: how it ended, in the store (for ``status``) and in the heartbeat file."""

    def __init__(self, store: Store, heartbeat_file: Path | None, clock: Clock) -> None:
        self.store, self.heartbeat_file, self.clock = store, heartbeat_file, clock
        self.mailboxes: dict[str, dict[str, object]] = {}

    def __call__(self, report: CycleReport, failures: int, elapsed: float) -> None:
        now = self.clock()
        entry = self.mailboxes.setdefault(report.mailbox, {"last_ok_at": None, "failures": 0, "last_error": None})
        if report.ok:
            entry.update(last_ok_at=now.isoformat(timespec="seconds"), failures=0)
        else:
            entry.update(failures=failures, last_error=report.error)
        try:
            self.store.health.cycle_done(report.mailbox, error=report.error, backlog=report.backlog, now=now)
        except StoreError as exc:
            log.warning("cannot note the cycle's health in the store: %s", exc)
        if self.heartbeat_file is not None:
            write_heartbeat(self.heartbeat_file, self.mailboxes, now)


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


def status(settings: Settings, store: Store, now: datetime) -> dict[str, Any]:
    """What ``mailtriage status`` says: per mailbox its last good cycle, failures, backlog and the last day's
    mail; the model; templates that would draft nothing; the heartbeat; and the verdict, ``healthy`` when every
    mailbox completed a cycle within ``health.stale_after``."""
    from mailtriage.compliance import template_warnings
    from mailtriage.model import model_path, model_state

    health = store.health.all()
    leases = {lease.mailbox: lease for lease in store.leases.all() if not lease.free_at(now)}
    stale_after = timedelta(seconds=settings.health.stale_after)
    mailboxes = []
    for configured in settings.mailboxes:
        known = health.get(configured.name)
        last_ok = known.last_ok_at if known else None
        failing = known if known is not None and known.failures > 0 else None
        mailboxes.append({
            "name": configured.name, "last_ok_at": _iso(last_ok),
            "stale": last_ok is None or now - last_ok > stale_after,
            "failures": known.failures if known else 0, "last_error": failing.last_error if failing else None,
            "last_error_at": _iso(failing.last_error_at) if failing else None,
            "backlog": known.backlog if known else 0,
            "owner": leases[configured.name].owner if configured.name in leases else None,
            "owner_since": _iso(leases[configured.name].acquired_at) if configured.name in leases else None,
            "last_24h": store.health.status_counts(configured.name, now - timedelta(days=1)),
        })  # fmt: skip
    heartbeat = settings.health.heartbeat_file
    beat = datetime.fromtimestamp(heartbeat.stat().st_mtime, UTC) if heartbeat and heartbeat.exists() else None
    return {
        "at": now.isoformat(timespec="seconds"), "healthy": not any(m["stale"] for m in mailboxes),
        "stale_after_seconds": settings.health.stale_after, "mailboxes": mailboxes,
        "daemons": _daemons(store, now, [str(m["owner"]) for m in mailboxes if m["owner"]]),
        "model": model_state(model_path(settings.classifier.model), settings.category_names()),
        "templates": template_warnings(settings),
        "heartbeat": None if heartbeat is None else {"file": str(heartbeat), "written_at": _iso(beat)},
    }  # fmt: skip


def _daemons(store: Store, now: datetime, owners: list[str]) -> list[dict[str, Any]]:
    """The daemons sharing the store, oldest first: alive or not, what they hold and recorded in the last day."""
    recorded = store.health.recorded_by(now - timedelta(days=1))
    return [
        {"name": d.name, "host": d.host, "pid": d.pid, "version": d.version, "started_at": _iso(d.started_at),
         "seen_at": _iso(d.seen_at), "alive": d.expires_at > now, "mailboxes": owners.count(d.name),
         "recorded_24h": recorded.get(d.name, 0)}
        for d in store.leases.daemons()
    ]  # fmt: skip


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
