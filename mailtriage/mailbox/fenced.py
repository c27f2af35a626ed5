"""A mailbox that changes nothing on its server unless this daemon holds its lease: the fence of ``cluster``.

Reading goes straight through; every change (a draft, a flag, a move) is preceded by ``check``, which raises
LeaseLost when the lease is gone or about to be. The cycle and the sweeps need not know about leases at all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

from mailtriage.mailbox import Mailbox
from mailtriage.mailbox.server import ServerProfile
from mailtriage.models import FolderStatus, RawMessage


class FencedMailbox:
    """``mailbox``, its changes checked by ``check(mailbox.name)`` first."""

    def __init__(self, mailbox: Mailbox, check: Callable[[str], None]) -> None:
        self.inner, self.check = mailbox, check
        self.name, self.inbox = mailbox.name, mailbox.inbox

    # Reading.

    def status(self, folder: str) -> FolderStatus:
        return self.inner.status(folder)

    def uids_above(self, folder: str, uid: int, upto: int | None = None) -> list[int]:
        return self.inner.uids_above(folder, uid, upto)

    def last_uid(self, folder: str) -> int | None:
        return self.inner.last_uid(folder)

    def fetch(self, folder: str, uids: Sequence[int], headers_only: bool = False) -> Iterator[RawMessage]:
        return self.inner.fetch(folder, uids, headers_only)

    def close(self) -> None:
        self.inner.close()

    def flags(self, folder: str, uids: Sequence[int]) -> dict[int, frozenset[str]]:
        return self.inner.flags(folder, uids)

    def special_folder(self, role: str) -> str | None:
        return self.inner.special_folder(role)

    def find(self, folder: str, header: str, value: str) -> list[int]:
        return self.inner.find(folder, header, value)

    # Changes: each after the check.

    def append(self, folder: str, data: bytes, flags: Sequence[str] = ()) -> None:
        self.check(self.name)
        self.inner.append(folder, data, flags)

    def append_many(self, folder: str, messages: Sequence[bytes], flags: Sequence[str] = ()) -> None:
        self.check(self.name)
        self.inner.append_many(folder, messages, flags)

    def add_flags(self, folder: str, uids: Sequence[int], flags: Sequence[str]) -> None:
        self.check(self.name)
        self.inner.add_flags(folder, uids, flags)

    def remove_flags(self, folder: str, uid: int, flags: Sequence[str]) -> None:
        self.check(self.name)
        self.inner.remove_flags(folder, uid, flags)

    def move(self, folder: str, uid: int, destination: str, *, resume: bool = False) -> bool:
        self.check(self.name)
        return self.inner.move(folder, uid, destination, resume=resume)

    def move_many(self, folder: str, uids: Sequence[int], destination: str) -> bool:
        self.check(self.name)
        return self.inner.move_many(folder, uids, destination)

    # Waiting.

    def twin(self) -> Mailbox:
        return FencedMailbox(self.inner.twin(), self.check)

    def can_wait(self) -> bool:
        return self.inner.can_wait()

    def wait_for_mail(
        self, timeout: float, stop: threading.Event, listening: Callable[[], object] | None = None
    ) -> bool:
        return self.inner.wait_for_mail(timeout, stop, listening)

    def profile(self, folders: Sequence[str] = ()) -> ServerProfile:
        return self.inner.profile(folders)
