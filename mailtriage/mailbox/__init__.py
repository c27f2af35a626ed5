"""Mailbox adapters behind one interface: IMAP, a local Maildir, and an in-memory one for tests."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from mailtriage.models import FolderStatus, RawMessage
from mailtriage.settings import MailboxSettings


class Mailbox(Protocol):
    """What the pipeline needs from a mailbox. Reading never changes a message (no ``\\Seen``, no move)."""

    name: str
    inbox: str

    def status(self, folder: str) -> FolderStatus:
        """UIDVALIDITY and UIDNEXT of ``folder``, in time independent of its size."""
        ...

    def uids_above(self, folder: str, uid: int) -> list[int]:
        """UIDs in ``folder`` greater than ``uid``, ascending."""
        ...

    def fetch(self, folder: str, uids: Sequence[int]) -> Iterator[RawMessage]:
        """The messages with these UIDs, ascending; UIDs that no longer exist are left out."""
        ...

    def close(self) -> None:
        """Let go of connections and files; the mailbox may be used again afterwards (it reconnects)."""
        ...


def open_mailbox(settings: MailboxSettings) -> Mailbox:
    """The adapter for a configured mailbox: a Maildir when ``maildir`` is set, IMAP otherwise."""
    if settings.maildir is not None:
        from mailtriage.mailbox.maildir import MaildirMailbox

        return MaildirMailbox(settings.name, settings.maildir, settings.folders.inbox)
    from mailtriage.mailbox.imap import ImapMailbox

    return ImapMailbox(settings)
