"""What the store hands out: typed, frozen records. Nothing outside the store package reads a row or a dict."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from mailtriage.deadlines import State
from mailtriage.models import Classification, RouteDecision


class Status(enum.StrEnum):
    """Where a recorded message stands."""

    CLASSIFIED = "classified"
    """Given a category, and left as it is (no route, or a rule said to leave it untouched)."""
    UNCLASSIFIED = "unclassified"
    """Recorded without a classifier."""
    PENDING = "pending"
    """Routed: the decision is recorded, its changes on the server (draft, flags, move) not all made yet."""
    ROUTED = "routed"
    NEEDS_HUMAN = "needs-human"
    SKIPPED = "skipped"
    """Not customer mail (an auto-reply, a bounce, bulk, our own), or older than the backfill window."""
    FAILED = "failed"


@dataclass(frozen=True)
class Filters:
    """Which recorded messages to list: the latest ``limit``, narrowed by whichever of the others are given."""

    limit: int = 50
    mailbox: str | None = None
    category: str | None = None
    status: Status | None = None
    decided_by: str | None = None
    """A prefix: ``model`` for every model's decision, ``rule`` for every rule's."""
    since: datetime | None = None
    """Recorded at or after it (a naive time is UTC)."""
    before: int | None = None
    """Recorded before the message of this id: the next page after it."""


@dataclass(frozen=True)
class Outcome:
    """What the cycle decided about a newly read message: the store records it whole, with the message."""

    status: Status
    classification: Classification | None = None
    decision: RouteDecision | None = None
    error: str | None = None
    due_at: datetime | None = None
    thread_of: int | None = None
    """The open message this one follows up on: it shares that message's clock."""
    note: str | None = None
    """Why, for the log, when the decision does not say (history before the backfill window)."""


@dataclass(frozen=True)
class SyncState:
    """How far a folder has been read: every UID up to ``last_uid`` under ``uidvalidity`` is recorded."""

    uidvalidity: int
    last_uid: int


@dataclass(frozen=True)
class MessageRecord:
    """A message as the store knows it."""

    id: int
    mailbox: str
    folder: str
    uidvalidity: int
    uid: int
    message_id: str
    content_hash: str
    sender: str
    subject: str
    kind: str
    kind_reason: str
    status: Status
    received_at: datetime | None
    recorded_at: datetime
    defects: tuple[str, ...]
    error: str | None
    category: str | None = None
    confidence: float | None = None
    language: str | None = None
    model_version: str | None = None
    new_text: str = ""
    decided_by: str | None = None
    route: RouteDecision | None = None
    corrected: str | None = None
    """The category an agent gave the message (by filing it), which overrides ``category`` for training."""
    due_at: datetime | None = None
    deadline_state: State | None = None
    """None: no deadline (not customer mail, or a follow-up)."""
    answered_at: datetime | None = None
    answered_how: str | None = None
    thread_of: int | None = None
    """The open message this one followed up on, in the same thread: its clock is that message's."""
    message_id_synthetic: bool = False
    """The message had no Message-ID: ``message_id`` was made from its content and no server can search for it."""

    @property
    def category_now(self) -> str | None:
        """The category it ends up in: an agent's correction, else the model's or a rule's."""
        return self.corrected or self.category

    @property
    def response_time(self) -> timedelta | None:
        """From arrival to first response, in real time; None while unanswered."""
        return None if self.answered_at is None else self.response_time_at(self.answered_at)

    def response_time_at(self, answered_at: datetime) -> timedelta:
        return answered_at - (self.received_at or self.recorded_at)


@dataclass(frozen=True)
class Signal:
    """A signal owed for a deadline transition: ``channel`` is flags, digest or webhook; or unflag, owed when a
    flagged message is answered."""

    id: int
    message: MessageRecord
    state: State
    channel: str
    attempts: int


@dataclass(frozen=True)
class MailboxHealth:
    """How a mailbox's cycles have gone: what ``mailtriage status`` shows."""

    mailbox: str
    last_cycle_at: datetime | None
    last_ok_at: datetime | None
    failures: int
    last_error: str | None
    last_error_at: datetime | None
    backlog: int


@dataclass(frozen=True)
class AuditEvent:
    at: datetime
    mailbox: str
    message: int | None
    action: str
    detail: dict[str, Any]


def utc(value: datetime | None) -> datetime | None:
    """A stored time (naive, UTC) as an aware one."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def naive(value: datetime | None) -> datetime | None:
    """A time as it is stored: naive, in UTC."""
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None)


def from_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def route_from_json(value: Any) -> RouteDecision | None:
    route = from_json(value)
    if not route:
        return None
    return RouteDecision(**{**route, "keywords": tuple(route.get("keywords", ()))})


_FIELDS = [f.name for f in fields(MessageRecord)]


def message_from_row(row: sa.Row[Any]) -> MessageRecord:
    values = {name: getattr(row, name) for name in _FIELDS}
    values.update(
        status=Status(row.status),
        received_at=utc(row.received_at),
        due_at=utc(row.due_at),
        answered_at=utc(row.answered_at),
        recorded_at=utc(row.recorded_at) or row.recorded_at,
        defects=tuple(from_json(row.defects)),
        route=route_from_json(row.route),
        deadline_state=State(row.deadline_state) if row.deadline_state else None,
        message_id_synthetic=bool(row.message_id_synthetic),
    )
    return MessageRecord(**values)


def audit_from_row(row: sa.Row[Any]) -> AuditEvent:
    return AuditEvent(utc(row.at) or row.at, row.mailbox, row.message, row.action, from_json(row.detail))
