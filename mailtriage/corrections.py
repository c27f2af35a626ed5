"""Corrections: what agents say about a category by filing a message in another category's folder or giving it
another category's keyword. Each is recorded beside the model's category, audited, and preferred by training."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from mailtriage.cursor import batches, unread
from mailtriage.errors import MailboxError
from mailtriage.mailbox import Mailbox, flags_at
from mailtriage.parse import hash_content
from mailtriage.store import Store, SyncState

log = logging.getLogger(__name__)


def scan_corrections(
    mailbox: Mailbox,
    store: Store,
    folder: str,
    category: str,
    now: Callable[[], datetime],
    *,
    batch_size: int = 100,
    limit: int = 2000,
) -> None:
    """Read what arrived in a category's folder since the last look: a recorded message of another category that
    an agent filed there is a correction (recorded and audited, and learnt by ``train --from-store``)."""
    try:
        found = unread(mailbox, store, folder, now(), limit=limit)
    except MailboxError as exc:
        if exc.retryable:
            raise
        return  # the folder does not exist yet: nothing was filed there
    uidvalidity = found.status.uidvalidity
    for batch in batches(mailbox, folder, found.uids, batch_size, uidvalidity):
        if not batch:
            continue
        hashes = [hash_content(raw.data, raw.whole_size) for raw in batch]
        known = store.known(mailbox.name, hashes)
        with store.batch():
            for raw, content_hash in zip(batch, hashes, strict=True):
                record = known.get(content_hash)
                if record is None:
                    continue  # not mail mailtriage triaged
                if (record.corrected or record.category) != category:
                    store.correct(record, category, raw, now=now())
                    was = record.corrected or record.category
                    log.info("mailbox %s: %s filed under %s by an agent (was %s): recorded as a correction",
                             mailbox.name, record.message_id, category, was)  # fmt: skip
                else:
                    store.locate(record, raw)
            store.set_sync_state(mailbox.name, folder, SyncState(uidvalidity, batch[-1].uid), now())


def scan_keyword_corrections(
    mailbox: Mailbox, store: Store, keywords: Mapping[str, str], now: datetime, window: timedelta
) -> int:
    """Look at the category keywords of the messages categorized within ``window``: one given the keyword of
    exactly one other category than its own, not by mailtriage, is a correction. Returns how many were found.

    It reads the flags of recent messages only, so it costs what the recent mail is, never the whole mailbox; the
    daemon runs it on a schedule of its own, apart from the poll.
    """
    records = store.categorized_since(mailbox.name, now - window)
    flags = flags_at(mailbox, [(record.folder, record.uid) for record in records])
    found = 0
    for record in records:
        # Keywords mailtriage set itself say nothing about the agent (they travel along when a message is moved).
        ours = set((record.route or {}).get("keywords", ()))
        given = flags.get((record.folder, record.uid), frozenset())
        named = {keywords[flag] for flag in given if flag in keywords and flag not in ours}
        current = record.corrected or record.category
        if named and current not in named and len(named) == 1:
            (category,) = named
            store.recategorize(record, category, how="keyword", now=now)
            log.info("mailbox %s: %s given the keyword of %s by an agent (was %s): recorded as a correction",
                     mailbox.name, record.message_id, category, current)  # fmt: skip
            found += 1
    return found


def sweep(
    mailbox: Mailbox,
    store: Store,
    folders: Mapping[str, str],
    keywords: Mapping[str, str],
    now: datetime,
    window: timedelta,
) -> None:
    """Both kinds of correction for one mailbox: the categories' folders (folder -> category), then the category
    keywords (keyword -> category) of the messages categorized within ``window``.

    It runs apart from the poll (on a schedule of its own, and after ``run --once``): reading other folders would
    otherwise cost every idle poll an EXAMINE of each of them.
    """
    for folder, category in folders.items():
        scan_corrections(mailbox, store, folder, category, lambda: now)
    if keywords:
        scan_keyword_corrections(mailbox, store, keywords, now, window)
