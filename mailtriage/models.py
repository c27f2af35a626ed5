"""Plain frozen values passed between the stages; none of them does I/O."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

Clock = Callable[[], datetime]
"""What every stage is given to tell the time: called when it needs now (tests pass a fixed or moving one)."""


@dataclass(frozen=True)
class FolderStatus:
    """What a mailbox says about a folder without listing it: enough to tell, in O(1), whether anything is new."""

    uidvalidity: int
    uidnext: int
    messages: int


@dataclass(frozen=True)
class RawMessage:
    """One message as fetched from a folder: its bytes untouched, and what the server knows about it."""

    folder: str
    uidvalidity: int
    uid: int
    data: bytes
    flags: frozenset[str] = frozenset()
    internal_date: datetime | None = None
    whole_size: int | None = None
    """The message's size when ``data`` holds only its first bytes (a message bigger than ``READ_BYTES``)."""


@dataclass(frozen=True)
class Address:
    """A mailbox address with its decoded display name ('' when absent)."""

    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email


@dataclass(frozen=True)
class Attachment:
    """What we know of an attachment without keeping its content."""

    filename: str
    content_type: str
    size: int


class MessageKind(enum.StrEnum):
    """Who wrote a message, as far as its headers tell: only ``customer`` mail is ever triaged and answered."""

    CUSTOMER = "customer"
    AUTO_REPLY = "auto-reply"
    BOUNCE = "bounce"
    BULK = "bulk"
    OWN = "own"
    SPAM = "spam"
    """Marked as spam by the mail server's filter (SpamAssassin, Rspamd, Exchange Online Protection)."""


@dataclass(frozen=True)
class ParsedEmail:
    """A message decoded best-effort; ``defects`` lists what was wrong with it, in words."""

    message_id: str
    message_id_synthetic: bool
    sender: Address | None
    # Reply-To and the recipients are read for customer mail only: automatic mail is never answered.
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    subject: str
    date: datetime | None
    internal_date: datetime | None
    in_reply_to: str | None
    references: tuple[str, ...]
    text: str
    new_text: str
    """The customer's new words (quotes and signature removed), for classification; '' for automatic mail."""
    attachments: tuple[Attachment, ...]
    kind: MessageKind
    kind_reason: str
    content_hash: str
    size: int
    defects: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Classification:
    """What the model decided for a customer message.

    ``category`` is the fallback category (a human decides) when ``confidence`` in ``predicted`` is below the
    configured threshold.
    """

    category: str
    predicted: str
    confidence: float
    language: str
    model_version: str

    @property
    def is_fallback(self) -> bool:
        return self.category != self.predicted


@dataclass(frozen=True)
class RouteDecision:
    """Where a message goes and what is done with it, and who decided: ``rule:NAME``, ``model`` or ``fallback``."""

    category: str
    decided_by: str
    reason: str
    folder: str | None = None
    keywords: tuple[str, ...] = ()
    flag: bool = False
    template: str | None = None
    """The template to draft from; None when no draft is written."""
    untouched: bool = False
    """Leave the message exactly as it is on the server (a rule said so)."""
    notify: str | None = None
    """A team address told about the message."""
