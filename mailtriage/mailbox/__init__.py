"""Mailbox adapters behind one interface: IMAP, a local Maildir, and an in-memory one for tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from mailtriage.errors import MailboxError
from mailtriage.mailbox.server import ServerProfile
from mailtriage.models import FolderStatus, RawMessage
from mailtriage.settings import MailboxSettings

READ_BYTES = 8 * 1024 * 1024
"""At most this much of one message is read. The customer's words and the parts a draft needs come first; a big
attachment beyond is listed from the headers read, not loaded: memory stays bounded however big the message."""


class Mailbox(Protocol):
    """What the pipeline needs from a mailbox. Reading never changes a message (no ``\\Seen``, no move)."""

    name: str
    inbox: str

    def status(self, folder: str) -> FolderStatus:
        """UIDVALIDITY and UIDNEXT of ``folder``, in time independent of its size."""
        ...

    def uids_above(self, folder: str, uid: int, upto: int | None = None) -> list[int]:
        """UIDs in ``folder`` greater than ``uid`` (and at most ``upto``), ascending. Given ``upto``, the answer
        is asked for more carefully (an IMAP server's search may answer short: see ``cursor``)."""
        ...

    def last_uid(self, folder: str) -> int | None:
        """The highest UID in ``folder``, None when it holds no message."""
        ...

    def fetch(self, folder: str, uids: Sequence[int], headers_only: bool = False) -> Iterator[RawMessage]:
        """The messages with these UIDs, ascending; UIDs that no longer exist are left out. ``headers_only``: the
        header section alone (what the deadline sweep reads of a reply). Of a message bigger than READ_BYTES only
        its first READ_BYTES are read (``RawMessage.whole_size`` says so)."""
        ...

    def close(self) -> None:
        """Let go of connections and files; the mailbox may be used again afterwards (it reconnects)."""
        ...

    def flags(self, folder: str, uids: Sequence[int]) -> dict[int, frozenset[str]]:
        """The flags and keywords of these messages (those no longer there are left out)."""
        ...

    # Changes, each safe to repeat: the pipeline records before and after every one of them.

    def special_folder(self, role: str) -> str | None:
        """The configured folder for ``role`` ('drafts' or 'sent'), else the one the server marks so."""
        ...

    def append(self, folder: str, data: bytes, flags: Sequence[str] = ()) -> None:
        """Add a message (a draft) to ``folder`` with these flags."""
        ...

    def append_many(self, folder: str, messages: Sequence[bytes], flags: Sequence[str] = ()) -> None:
        """Add these messages to ``folder``, each with these flags: all of them or, on an error, none (IMAP:
        one MULTIAPPEND, RFC 3502, where the server offers it; else one APPEND each, and an error may come after
        some landed)."""
        ...

    def find(self, folder: str, header: str, value: str) -> list[int]:
        """UIDs of the messages in ``folder`` whose header ``header`` contains ``value``."""
        ...

    def add_flags(self, folder: str, uids: Sequence[int], flags: Sequence[str]) -> None:
        """Set flags and keywords on these messages (one request); those they already have stay."""
        ...

    def remove_flags(self, folder: str, uid: int, flags: Sequence[str]) -> None:
        """Take these flags and keywords off a message (mailtriage's own, once they are no longer true); the
        others stay, and a message no longer there is no error."""
        ...

    def move(self, folder: str, uid: int, destination: str, *, resume: bool = False) -> bool:
        """Move a message to ``destination``, creating that folder if it is missing. Never deletes anything else.
        False when this mailbox cannot move messages (it is left where it is). ``resume``: a move of it was begun
        before, and may have left a copy in ``destination``, which is not made twice."""
        ...

    def move_many(self, folder: str, uids: Sequence[int], destination: str) -> bool:
        """``move`` for several messages none of which a move was begun for before, in one request where the
        server allows (IMAP: one UID MOVE; or one COPY, then UID EXPUNGE of exactly these UIDs)."""
        ...

    # Waiting for new mail, beside the poll.

    def twin(self) -> Mailbox:
        """Another handle on the same mailbox, to wait on beside the one that polls (IMAP: a connection of its
        own, since IDLE occupies the connection it runs on)."""
        ...

    def can_wait(self) -> bool:
        """Whether ``wait_for_mail`` can tell when mail arrives (False: an IMAP server without IDLE)."""
        ...

    def wait_for_mail(
        self, timeout: float, stop: threading.Event, listening: Callable[[], object] | None = None
    ) -> bool:
        """Block until new mail arrives in the inbox (True), or ``timeout`` seconds pass or ``stop`` is set
        (False). ``listening`` is called once nothing that arrives from then on can go unnoticed."""
        ...

    def profile(self, folders: Sequence[str] = ()) -> ServerProfile:
        """What the server offers and what mailtriage does there; ``folders``: configured paths to resolve."""
        ...


def flags_at(mailbox: Mailbox, places: Iterable[tuple[str, int]]) -> dict[tuple[str, int], frozenset[str]]:
    """The flags of the messages at these (folder, UID) places, one request per folder. Places no longer there,
    and folders that are gone, are left out; a lost connection raises MailboxError."""
    by_folder: dict[str, list[int]] = {}
    for folder, uid in places:
        by_folder.setdefault(folder, []).append(uid)
    found: dict[tuple[str, int], frozenset[str]] = {}
    for folder, uids in by_folder.items():
        try:
            flags = mailbox.flags(folder, uids)
        except MailboxError as exc:
            if exc.retryable:
                raise
            continue  # the folder is gone
        found.update(((folder, uid), value) for uid, value in flags.items())
    return found


def header_section(data: bytes) -> bytes:
    """The header section of a raw message, up to and including the blank line that ends it."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = data.find(separator)
        if end != -1:
            return data[: end + len(separator)]
    return data


def open_mailbox(settings: MailboxSettings) -> Mailbox:
    """The adapter for a configured mailbox: a Maildir when ``maildir`` is set, IMAP otherwise."""
    if settings.maildir is not None:
        from mailtriage.mailbox.maildir import MaildirMailbox

        return MaildirMailbox(settings.name, settings.maildir, settings.folders.inbox)
    from mailtriage.mailbox.imap import ImapMailbox

    return ImapMailbox(settings)
