"""An in-memory mailbox with IMAP's UID semantics, for unit tests and for trying stages without a server."""

from __future__ import annotations

import email
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mailtriage.errors import MailboxError
from mailtriage.mailbox import READ_BYTES, header_section
from mailtriage.mailbox.server import ServerProfile, local_profile
from mailtriage.models import FolderStatus, RawMessage


@dataclass
class _Folder:
    uidvalidity: int
    next_uid: int = 1
    messages: dict[int, tuple[bytes, frozenset[str], datetime]] = field(default_factory=dict)


class MemoryMailbox:
    """Folders of messages held in memory; UIDs ascend per folder and UIDVALIDITY can be changed at will."""

    def __init__(self, name: str = "memory", inbox: str = "INBOX", uidvalidity: int = 1) -> None:
        self.name = name
        self.inbox = inbox
        self._folders: dict[str, _Folder] = {inbox: _Folder(uidvalidity)}
        self.fetched: list[int] = []
        """Every UID fetched, in order: lets tests see what a cycle read."""
        self.asked: list[str] = []
        """Every folder whose status was asked, in order."""
        self._arrived = threading.Event()

    def append(self, folder: str, data: bytes, flags: Iterable[str] = (), internal_date: datetime | None = None) -> int:
        box = self._folders.setdefault(folder, _Folder(1))
        uid = box.next_uid
        box.next_uid += 1
        box.messages[uid] = (data, frozenset(flags), internal_date or datetime.now(UTC))
        if folder == self.inbox:
            self._arrived.set()
        return uid

    def expunge(self, folder: str, uid: int) -> None:
        """Remove a message, as another client might (mailtriage itself never does)."""
        del self._folders[folder].messages[uid]

    def renumber(self, folder: str, uidvalidity: int) -> None:
        """Give the folder a new UIDVALIDITY and new UIDs, as a server does after a rebuild."""
        box = self._folders[folder]
        old = [box.messages[uid] for uid in sorted(box.messages)]
        self._folders[folder] = _Folder(uidvalidity, len(old) + 1, {i + 1: m for i, m in enumerate(old)})

    def status(self, folder: str) -> FolderStatus:
        self.asked.append(folder)
        if folder not in self._folders:
            raise MailboxError(self.name, f"no folder {folder!r}", retryable=False)
        box = self._folders[folder]
        return FolderStatus(box.uidvalidity, box.next_uid, len(box.messages))

    def uids_above(self, folder: str, uid: int, upto: int | None = None) -> list[int]:
        return sorted(u for u in self._folders[folder].messages if uid < u <= (upto or u))

    def last_uid(self, folder: str) -> int | None:
        return max(self._folders[folder].messages, default=None)

    def fetch(self, folder: str, uids: Sequence[int], headers_only: bool = False) -> Iterator[RawMessage]:
        box = self._folders[folder]
        for uid in sorted(uids):
            if uid in box.messages:
                data, flags, date = box.messages[uid]
                self.fetched.append(uid)
                whole = len(data) if len(data) > READ_BYTES and not headers_only else None
                data = header_section(data) if headers_only else data[:READ_BYTES]
                yield RawMessage(folder, box.uidvalidity, uid, data, flags, date, whole_size=whole)

    def close(self) -> None:
        pass

    def special_folder(self, role: str) -> str | None:
        return {"drafts": "Drafts", "sent": "Sent"}[role]

    def find(self, folder: str, header: str, value: str) -> list[int]:
        box = self._folders.get(folder)
        if box is None:
            return []
        found = []
        for uid, (data, _flags, _date) in sorted(box.messages.items()):
            parsed = email.message_from_bytes(data)
            if any(value in str(v) for v in parsed.get_all(header) or []):
                found.append(uid)
        return found

    def flags(self, folder: str, uids: Sequence[int]) -> dict[int, frozenset[str]]:
        box = self._folders.get(folder)
        return {} if box is None else {uid: box.messages[uid][1] for uid in uids if uid in box.messages}

    def set_flags(self, folder: str, uid: int, flags: Iterable[str]) -> None:
        """Replace a message's flags, as an agent's mail client does."""
        data, _old, date = self._folders[folder].messages[uid]
        self._folders[folder].messages[uid] = (data, frozenset(flags), date)

    def append_many(self, folder: str, messages: Sequence[bytes], flags: Sequence[str] = ()) -> None:
        for data in messages:
            self.append(folder, data, flags)

    def add_flags(self, folder: str, uids: Sequence[int], flags: Sequence[str]) -> None:
        for uid in uids:
            data, old, date = self._folders[folder].messages[uid]
            self._folders[folder].messages[uid] = (data, old | frozenset(flags), date)

    def remove_flags(self, folder: str, uid: int, flags: Sequence[str]) -> None:
        if uid in self._folders[folder].messages:
            data, old, date = self._folders[folder].messages[uid]
            self._folders[folder].messages[uid] = (data, old - frozenset(flags), date)

    def move(self, folder: str, uid: int, destination: str, *, resume: bool = False) -> bool:
        data, flags, date = self._folders[folder].messages.pop(uid)
        self.append(destination, data, flags, date)
        return True

    def move_many(self, folder: str, uids: Sequence[int], destination: str) -> bool:
        return all([self.move(folder, uid, destination) for uid in uids])

    def twin(self) -> MemoryMailbox:
        return self  # one memory: the same folders

    def can_wait(self) -> bool:
        return True

    def wait_for_mail(
        self, timeout: float, stop: threading.Event, listening: Callable[[], object] | None = None
    ) -> bool:
        self._arrived.clear()
        if listening is not None:
            listening()
        deadline = time.monotonic() + timeout
        while not stop.is_set() and time.monotonic() < deadline:
            if self._arrived.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
                return True
        return False

    def profile(self, folders: Sequence[str] = ()) -> ServerProfile:
        return local_profile(self.name, "memory", [self.inbox, *folders], lambda path: path in self._folders)

    def folder(self, name: str) -> list[tuple[bytes, frozenset[str]]]:
        """A folder's messages in UID order (for tests)."""
        box = self._folders.get(name)
        return [] if box is None else [(d, f) for _, (d, f, _) in sorted(box.messages.items())]
