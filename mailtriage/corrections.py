"""Corrections: what agents say about a category by filing a message in another category's folder or giving it
another category's keyword. Each is recorded beside the model's category, audited, and preferred by training."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from mailtriage.cursor import batches, unread
from mailtriage.errors import MailboxError
from mailtriage.mailbox import Mailbox, flags_at
from mailtriage.models import Clock
from mailtriage.parse import hash_content
from mailtriage.store import Store, SyncState

log = logging.getLogger(__name__)

BATCH = 100
LIMIT = 2000
"""Messages read from a category's folder per sweep, at most: a sweep after a long outage catches up later."""


@dataclass(frozen=True)
class Watched:
    """What the corrections sweep looks at: the categories' folders (folder -> category), their keywords (keyword
    -> category), and how far back messages may still be re-keyworded."""

    folders: Mapping[str, str]
    keywords: Mapping[str, str]
    window: timedelta = timedelta(days=14)


def scan_corrections(mailbox: Mailbox, store: Store, folder: str, category: str, clock: Clock) -> None:
    """Read what arrived in a category's folder since the last look: a recorded message of another category that
    an agent filed there is a correction (recorded and audited, and learnt by ``train --from-store``)."""
    try:
        found = unread(mailbox, store, folder, clock(), limit=LIMIT)
    except MailboxError as exc:
        if exc.retryable:
            raise
        return  # the folder does not exist yet: nothing was filed there
    uidvalidity = found.status.uidvalidity
    for batch in batches(mailbox, folder, found.uids, BATCH, uidvalidity):
        if not batch:
            continue
        hashes = [hash_content(raw.data, raw.whole_size) for raw in batch]
        known = store.messages.known(mailbox.name, hashes)
        with store.batch():
            for raw, content_hash in zip(batch, hashes, strict=True):
                record = known.get(content_hash)
                if record is None:
                    continue  # not mail mailtriage triaged
                if record.category_now != category:
                    store.messages.correct(record, category, by="folder", place=raw, now=clock())
                    log.info("mailbox %s: %s filed under %s by an agent (was %s): recorded as a correction",
                             mailbox.name, record.message_id, category, record.category_now)  # fmt: skip
                else:
                    store.messages.locate(record, raw)
            store.sync.set(mailbox.name, folder, SyncState(uidvalidity, batch[-1].uid), clock())


def scan_keyword_corrections(
    mailbox: Mailbox, store: Store, keywords: Mapping[str, str], clock: Clock, window: timedelta
) -> int:
    """Look at the category keywords of the messages categorized within ``window``: one given the keyword of
    exactly one other category than its own, not by mailtriage, is a correction. Returns how many were found.

    It reads the flags of recent messages only, so it costs what the recent mail is, never the whole mailbox; the
    daemon runs it on a schedule of its own, apart from the poll.
    """
    now = clock()
    records = store.messages.categorized_since(mailbox.name, now - window)
    flags = flags_at(mailbox, [(record.folder, record.uid) for record in records])
    found = 0
    for record in records:
        # Keywords mailtriage set itself say nothing about the agent (they travel along when a message is moved).
        ours = set(record.route.keywords) if record.route else set()
        given = flags.get((record.folder, record.uid), frozenset())
        named = {keywords[flag] for flag in given if flag in keywords and flag not in ours}
        current = record.category_now
        if named and current not in named and len(named) == 1:
            (category,) = named
            store.messages.correct(record, category, by="keyword", now=now)
            log.info("mailbox %s: %s given the keyword of %s by an agent (was %s): recorded as a correction",
                     mailbox.name, record.message_id, category, current)  # fmt: skip
            found += 1
    return found


def sweep(mailbox: Mailbox, store: Store, watched: Watched, clock: Clock) -> None:
    """Both kinds of correction for one mailbox: the categories' folders, then the category keywords of the
    messages categorized within the window.

    It runs apart from the poll (on a schedule of its own, and after ``run --once``): reading other folders would
    otherwise cost every idle poll an EXAMINE of each of them.
    """
    for folder, category in watched.folders.items():
        scan_corrections(mailbox, store, folder, category, clock)
    if watched.keywords:
        scan_keyword_corrections(mailbox, store, watched.keywords, clock, watched.window)
