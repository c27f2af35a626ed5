"""Corrections: what agents say about a category by filing a message in another category's folder or giving it
another category's keyword. Each is recorded beside the model's category, audited, and preferred by training."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from mailtriage.errors import MailboxError
from mailtriage.mailbox import Mailbox
from mailtriage.parse import hash_content
from mailtriage.store import MessageRecord, Store, SyncState

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
        status = mailbox.status(folder)
    except MailboxError as exc:
        if exc.retryable:
            raise
        return  # the folder does not exist yet: nothing was filed there
    state = store.sync_state(mailbox.name, folder)
    last = state.last_uid if state is not None and state.uidvalidity == status.uidvalidity else 0
    if status.uidnext <= last + 1:
        return
    uids = mailbox.uids_above(folder, last)[:limit]
    for start in range(0, len(uids), batch_size):
        batch = list(mailbox.fetch(folder, uids[start : start + batch_size]))
        if not batch:
            continue
        known = store.known(mailbox.name, [hash_content(raw.data) for raw in batch])
        with store.batch():
            for raw in batch:
                record = known.get(hash_content(raw.data))
                if record is None:
                    continue  # not mail mailtriage triaged
                if (record.corrected or record.category) != category:
                    store.correct(record, category, raw, now=now())
                    was = record.corrected or record.category
                    log.info("mailbox %s: %s filed under %s by an agent (was %s): recorded as a correction",
                             mailbox.name, record.message_id, category, was)  # fmt: skip
                else:
                    store.move_to(record, raw)
            store.set_sync_state(mailbox.name, folder, SyncState(status.uidvalidity, batch[-1].uid), now())


def scan_keyword_corrections(
    mailbox: Mailbox, store: Store, keywords: Mapping[str, str], now: datetime, window: timedelta
) -> int:
    """Look at the category keywords of the messages categorized within ``window``: one whose keywords now name
    exactly one other category than its own (an agent changed them) is a correction. Returns how many were found.

    It reads the flags of recent messages only, so it costs what the recent mail is, never the whole mailbox; the
    daemon runs it on a schedule of its own, apart from the poll.
    """
    records = store.categorized_since(mailbox.name, now - window)
    by_folder: dict[str, list[MessageRecord]] = {}
    for record in records:
        by_folder.setdefault(record.folder, []).append(record)
    found = 0
    for folder, mine in by_folder.items():
        try:
            flags = mailbox.flags(folder, [r.uid for r in mine])
        except MailboxError as exc:
            if exc.retryable:
                raise
            continue  # the folder is gone
        for record in mine:
            named = {keywords[flag] for flag in flags.get(record.uid, ()) if flag in keywords}
            current = record.corrected or record.category
            if named and current not in named and len(named) == 1:
                (category,) = named
                store.recategorize(record, category, how="keyword", now=now)
                log.info("mailbox %s: %s given the keyword of %s by an agent (was %s): recorded as a correction",
                         mailbox.name, record.message_id, category, current)  # fmt: skip
                found += 1
    return found
