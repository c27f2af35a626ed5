"""What many tests share: the time, mail to triage, and a configuration for a test account."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailtriage.settings import DEFAULT_CATEGORIES, DraftSettings, MailboxSettings, Settings
from tests.dovecot import Account

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
"""The shipped templates, policy and approvals."""


def now() -> datetime:
    return datetime.now(UTC)


def order_mail(n: int, *, tag: str = "m", subject: str | None = None, headers: str = "") -> bytes:
    """A customer asking where order ``n`` is: Message-ID ``<{tag}{n}@example.com>``, CRLF line ends;
    ``headers``: more header lines, each ending in CRLF."""
    return (
        f"From: Customer {n} <c{n}@example.com>\r\nTo: support@example.com\r\n"
        f"Subject: {subject or f'Order {n} is late'}"
        f"\r\nMessage-ID: <{tag}{n}@example.com>\r\nDate: Mon, 23 Nov 2026 08:00:00 +0100\r\n{headers}\r\n"
        f"Hello, order {n} has not arrived yet.\r\n"
    ).encode()


def settings_for(
    account: Account,
    *,
    name: str | None = None,
    folders: Mapping[str, str] | None = None,
    keywords: Mapping[str, tuple[str, ...]] | None = None,
    **sections: Any,
) -> Settings:
    """A configuration for one test account: the default categories, filed in ``folders`` (category -> folder)
    with ``keywords``, drafts from the shipped templates signed by support@example.com; ``sections`` replace whole
    sections (``store=StoreSettings(...)``)."""
    folders, keywords = folders or {}, keywords or {}
    categories = tuple(
        c.model_copy(update={"folder": folders.get(c.name), "keywords": keywords.get(c.name, ())})
        for c in DEFAULT_CATEGORIES
    )
    mailbox = MailboxSettings.model_validate(account.settings(name=name).model_dump())
    drafts = DraftSettings(from_address="Support <support@example.com>", templates=TEMPLATES)
    return Settings(**{"mailboxes": (mailbox,), "categories": categories, "drafts": drafts, **sections})
