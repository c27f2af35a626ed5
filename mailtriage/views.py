"""What people read of the store: recent decisions and why (``review``), and what waits for a first response
(``deadlines``). Values for a command to print as a table or as JSON; nothing here prints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailtriage.deadlines import Policy
from mailtriage.store import Filters, Store


@dataclass(frozen=True)
class Decision:
    """One recorded message and what was decided about it."""

    id: int
    """The message's id in the store: where the next page of decisions starts."""
    time: str
    mailbox: str
    sender: str
    subject: str
    category: str | None
    confidence: float | None
    language: str | None
    decided_by: str | None
    reason: str | None
    draft: bool
    folder: str | None
    status: str
    error: str | None
    drafts: list[dict[str, Any]]
    """Each appended draft's provenance: folder, template, its hash, who approved it, to whom, a note."""
    notes: list[str]
    """What an agent should know before sending a draft (a Reply-To elsewhere)."""


def decisions(store: Store, filters: Filters) -> list[Decision]:
    """The latest decisions, newest first."""
    found = []
    records = store.messages.recent(filters)
    for record in records:
        drafts = [event.detail for event in store.audit.events(record.id, "draft-appended")]
        route = record.route
        found.append(Decision(
            id=record.id, time=record.recorded_at.isoformat(timespec="seconds"), mailbox=record.mailbox,
            sender=record.sender, subject=record.subject, category=record.category, confidence=record.confidence,
            language=record.language, decided_by=record.decided_by, reason=route.reason if route else None,
            draft=bool(route and route.template), folder=route.folder if route else None,
            status=record.status.value, error=record.error, drafts=drafts,
            notes=[draft["note"] for draft in drafts if draft.get("note")],
        ))  # fmt: skip
    return found


@dataclass(frozen=True)
class Waiting:
    """A message waiting for its first response, as it stands at a moment."""

    mailbox: str
    sender: str
    subject: str
    category: str | None
    received_at: str | None
    due_at: str
    left_seconds: int
    state: str
    folder: str


def waiting(store: Store, policy: Policy, moment: datetime, mailbox: str | None = None) -> list[Waiting]:
    """Every message still waiting for an answer, soonest due first, with its state at ``moment``."""
    found = []
    for record in store.deadlines.waiting(mailbox):
        assert record.due_at is not None
        found.append(Waiting(
            mailbox=record.mailbox, sender=record.sender, subject=record.subject, category=record.category_now,
            received_at=record.received_at.isoformat() if record.received_at else None,
            due_at=record.due_at.isoformat(), left_seconds=int((record.due_at - moment).total_seconds()),
            state=policy.state(record.due_at, record.category, moment).value, folder=record.folder,
        ))  # fmt: skip
    return found
