"""How far a folder has been read, and what is new in it: the one place where new UIDs are found.

Inbox intake, the deadline sweep's Sent scan and the corrections sweep all read a folder incrementally by UID, and
share one rule: **the position never moves past a UID that was not recorded**. A server's answer is checked
against what the server says of itself: a search that answers nothing, or stops short of the folder's last UID,
is asked again with an explicit range (and a ``UID FETCH`` beside it), and the position moves to UIDNEXT - 1 only
when the server confirms that no message lies above it. Some servers answer ``UID SEARCH UID n:*`` with nothing
(GNU Mailutils' imap4d); trusting that answer once would skip the inbox for good.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from mailtriage.errors import MailboxError
from mailtriage.mailbox import Mailbox
from mailtriage.models import FolderStatus, RawMessage
from mailtriage.store import Store, SyncState

log = logging.getLogger(__name__)

_warned: set[tuple[str, str]] = set()
"""(mailbox, folder) whose short search answers have been logged: said once per process, not every poll."""


@dataclass(frozen=True)
class Unread:
    """What is new in a folder: the UIDs above its position, ascending, at most the limit asked for."""

    status: FolderStatus
    position: int
    """Every UID up to this one is recorded (or was before mailtriage looked)."""
    uids: tuple[int, ...]
    renumbered_from: int | None = None
    """The UIDVALIDITY the position was kept under, when the folder has been renumbered since."""


def from_the_start(status: FolderStatus) -> int:
    """Where reading a folder seen for the first time (or renumbered) begins: at its first message."""
    return 0


def unread(
    mailbox: Mailbox,
    store: Store,
    folder: str,
    now: datetime,
    *,
    start: Callable[[FolderStatus], int] = from_the_start,
    limit: int | None = None,
) -> Unread:
    """The UIDs of ``folder`` above its saved position; an idle folder costs one status request.

    ``start`` says where to begin in a folder seen for the first time, or renumbered (UIDVALIDITY changed); a
    start is remembered at once. Raises MailboxError when the server says it holds
    mail above the position but will not list it: the position then stays where it is.
    """
    status = mailbox.status(folder)
    state = store.sync.get(mailbox.name, folder)
    renumbered = None
    if state is None or state.uidvalidity != status.uidvalidity:
        renumbered = state.uidvalidity if state is not None else None
        position = start(status)
        store.sync.set(mailbox.name, folder, SyncState(status.uidvalidity, position), now)
    else:
        position = state.last_uid
    if status.uidnext <= position + 1:
        return Unread(status, position, (), renumbered)
    uids = uids_above(mailbox, folder, position, status.uidnext)
    if not uids:  # the newest messages were expunged: nothing up to UIDNEXT, not to ask again
        store.sync.set(mailbox.name, folder, SyncState(status.uidvalidity, status.uidnext - 1), now)
    return Unread(status, position, tuple(uids[:limit]), renumbered)


def uids_above(mailbox: Mailbox, folder: str, position: int, uidnext: int) -> list[int]:
    """The UIDs of ``folder`` above ``position``, ascending; an answer that does not reach ``uidnext`` - 1 is
    checked against the folder's last UID, and asked again if it is short."""
    uids = mailbox.uids_above(folder, position)
    if not uids or uids[-1] < uidnext - 1:
        uids = _checked(mailbox, folder, position, uids)
    return uids


def _checked(mailbox: Mailbox, folder: str, position: int, uids: list[int]) -> list[int]:
    """``uids`` as found by a search that did not reach UIDNEXT, checked against the folder's last UID."""
    top = mailbox.last_uid(folder)
    if top is None or top <= position or (uids and uids[-1] >= top):
        return uids  # the answer was whole: what lay between was expunged
    again = sorted(set(uids) | set(mailbox.uids_above(folder, position, upto=top)))
    if not again or again[-1] < top:
        raise MailboxError(
            mailbox.name,
            f"{folder}: the server holds messages up to UID {top}, but lists {len(again)} above UID {position} "
            f"when asked: the position stays at UID {position} until it answers; nothing is skipped",
        )
    if (mailbox.name, folder) not in _warned:
        _warned.add((mailbox.name, folder))
        log.warning("mailbox %s: %s: the server's search for new mail answered %d of %d UIDs; asking it with an "
                    "explicit range from now on when it answers short", mailbox.name, folder, len(uids),
                    len(again))  # fmt: skip
    return again


def read(
    mailbox: Mailbox, folder: str, uids: Sequence[int], uidvalidity: int, *, headers_only: bool = False
) -> list[RawMessage]:
    """The messages with these UIDs. A listed UID that did not come back is asked for once more if the folder
    still holds it; if it still does not come, MailboxError: reading on would move the position past it."""
    found = list(mailbox.fetch(folder, uids, headers_only))
    missing = sorted(set(uids) - {raw.uid for raw in found})
    if not missing:
        return found
    if mailbox.status(folder).uidvalidity != uidvalidity:
        return found  # renumbered meanwhile: the next cycle reads the folder afresh
    still_there = sorted(mailbox.flags(folder, missing))
    if still_there:
        found = sorted([*found, *mailbox.fetch(folder, still_there, headers_only)], key=lambda raw: raw.uid)
        unanswered = sorted(set(still_there) - {raw.uid for raw in found})
        if unanswered:
            raise MailboxError(
                mailbox.name,
                f"{folder}: the server lists UID {unanswered[0]} but does not return it: the position stays "
                "before it, and it is asked for again at the next cycle",
            )
    return found


def batches(
    mailbox: Mailbox, folder: str, uids: Sequence[int], size: int, uidvalidity: int, *, headers_only: bool = False
) -> Iterator[list[RawMessage]]:
    """``read`` in batches of ``size`` UIDs."""
    for begin in range(0, len(uids), size):
        yield read(mailbox, folder, uids[begin : begin + size], uidvalidity, headers_only=headers_only)
