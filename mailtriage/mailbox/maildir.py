"""A local Maildir as a mailbox (standard library ``mailbox``): the demo's backend and for servers that deliver to
Maildir.

Maildir has no UIDs, so this adapter keeps them, IMAP-style, in ``.mailtriage-uids.json`` inside each folder it
reads: a file of its own beside ``cur/``, ``new/`` and ``tmp/``, which mail clients ignore. If the file is lost a new
UIDVALIDITY is chosen, and the pipeline recognises the messages it already has by Message-ID and content.
"""

from __future__ import annotations

import json
import mailbox
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mailtriage.errors import MailboxError
from mailtriage.mailbox import READ_BYTES, header_section
from mailtriage.mailbox.server import ServerProfile, local_profile
from mailtriage.models import FolderStatus, RawMessage

UID_FILE = ".mailtriage-uids.json"
_FLAGS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}


@dataclass
class _UidMap:
    uidvalidity: int
    next_uid: int = 1
    uids: dict[str, int] = field(default_factory=dict)
    stamp: tuple[int, int] = (0, 0)


class MaildirMailbox:
    """A Maildir (with Maildir++ subfolders such as ``.Drafts``) seen through IMAP's UID semantics."""

    def __init__(self, name: str, path: Path, inbox: str = "INBOX") -> None:
        self.name = name
        self.path = path
        self.inbox = inbox
        self._maps: dict[str, _UidMap] = {}

    def _folder(self, folder: str) -> mailbox.Maildir:
        if not (self.path / "cur").is_dir():
            raise MailboxError(self.name, f"{self.path} is not a Maildir (no cur/ folder)", retryable=True)
        root = mailbox.Maildir(self.path, create=False)
        if folder == self.inbox:
            return root
        try:
            return root.get_folder(folder)
        except mailbox.NoSuchMailboxError:
            raise MailboxError(self.name, f"no folder {folder!r} in {self.path}", retryable=False) from None

    def _refresh(self, folder: str) -> tuple[mailbox.Maildir, _UidMap]:
        box = self._folder(folder)
        directory = Path(box._path)
        stamp = (os.stat(directory / "new").st_mtime_ns, os.stat(directory / "cur").st_mtime_ns)
        uid_map = self._maps.get(folder) or _load(directory / UID_FILE)
        if uid_map.stamp != stamp:
            keys = set(box.keys())
            fresh = sorted(keys - uid_map.uids.keys(), key=_delivery_order)
            for key in fresh:
                uid_map.uids[key] = uid_map.next_uid
                uid_map.next_uid += 1
            uid_map.uids = {k: v for k, v in uid_map.uids.items() if k in keys}
            uid_map.stamp = stamp
            _save(directory / UID_FILE, uid_map)
        self._maps[folder] = uid_map
        return box, uid_map

    def status(self, folder: str) -> FolderStatus:
        _, uid_map = self._refresh(folder)
        return FolderStatus(uid_map.uidvalidity, uid_map.next_uid, len(uid_map.uids))

    def uids_above(self, folder: str, uid: int, upto: int | None = None) -> list[int]:
        _, uid_map = self._refresh(folder)
        return sorted(u for u in uid_map.uids.values() if uid < u <= (upto or u))

    def last_uid(self, folder: str) -> int | None:
        _, uid_map = self._refresh(folder)
        return max(uid_map.uids.values(), default=None)

    def fetch(self, folder: str, uids: Sequence[int], headers_only: bool = False) -> Iterator[RawMessage]:
        box, uid_map = self._refresh(folder)
        keys = {uid: key for key, uid in uid_map.uids.items()}
        for uid in sorted(uids):
            key = keys.get(uid)
            if key is None:
                continue
            try:
                # The file itself, read only as far as needed: parsing it whole (get_message) to learn its flags
                # would hold all of a 40 MB message in memory several times over.
                path = Path(box._path) / box._lookup(key)  # type: ignore[attr-defined]  # get_info is 3.13+
                whole = path.stat().st_size
                with path.open("rb") as handle:
                    data = handle.read(READ_BYTES)
            except (KeyError, FileNotFoundError):
                continue  # removed by another client since it was listed
            info = path.name.partition(":2,")[2]
            flags = frozenset(_FLAGS[f] for f in info if f in _FLAGS)
            received = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            if headers_only:
                data, cut = header_section(data), None
            else:
                cut = whole if whole > READ_BYTES else None
            yield RawMessage(folder, uid_map.uidvalidity, uid, data, flags, received, whole_size=cut)

    def close(self) -> None:
        self._maps.clear()

    # Keywords have no place in a Maildir file name: only the standard flags are kept.

    def special_folder(self, role: str) -> str | None:
        return {"drafts": "Drafts", "sent": "Sent"}[role]

    def _writable_folder(self, folder: str) -> mailbox.Maildir:
        if folder == self.inbox:
            return self._folder(folder)
        root = self._folder(self.inbox)
        try:
            return root.get_folder(folder)
        except mailbox.NoSuchMailboxError:
            return root.add_folder(folder)

    def flags(self, folder: str, uids: Sequence[int]) -> dict[int, frozenset[str]]:
        box, uid_map = self._refresh(folder)
        keys = {uid: key for key, uid in uid_map.uids.items()}
        found = {}
        for uid in uids:
            if uid in keys:
                found[uid] = frozenset(_FLAGS[f] for f in box.get_message(keys[uid]).get_flags() if f in _FLAGS)
        return found

    def append(self, folder: str, data: bytes, flags: Sequence[str] = ()) -> None:
        message = mailbox.MaildirMessage(data)
        message.set_subdir("cur")
        message.set_flags("".join(letter for letter, flag in _FLAGS.items() if flag in flags))
        self._writable_folder(folder).add(message)

    def find(self, folder: str, header: str, value: str) -> list[int]:
        if folder != self.inbox and folder not in self._folder(self.inbox).list_folders():
            return []
        box, uid_map = self._refresh(folder)
        return sorted(
            uid
            for key, uid in uid_map.uids.items()
            if any(value in str(v) for v in box.get_message(key).get_all(header) or [])
        )

    def append_many(self, folder: str, messages: Sequence[bytes], flags: Sequence[str] = ()) -> None:
        for data in messages:
            self.append(folder, data, flags)

    def add_flags(self, folder: str, uids: Sequence[int], flags: Sequence[str]) -> None:
        box, uid_map = self._refresh(folder)
        keys = {u: k for k, u in uid_map.uids.items()}
        for uid in uids:
            message = box.get_message(keys[uid])
            message.add_flag("".join(letter for letter, flag in _FLAGS.items() if flag in flags))
            box[keys[uid]] = message

    def remove_flags(self, folder: str, uid: int, flags: Sequence[str]) -> None:
        box, uid_map = self._refresh(folder)
        key = {u: k for k, u in uid_map.uids.items()}.get(uid)
        letters = "".join(letter for letter, flag in _FLAGS.items() if flag in flags)
        if key is None or not letters:  # a Maildir keeps no keywords: mailtriage's own were never set there
            return
        message = box.get_message(key)
        message.remove_flag(letters)
        box[key] = message

    def move(self, folder: str, uid: int, destination: str, *, resume: bool = False) -> bool:
        box, uid_map = self._refresh(folder)
        key = {u: k for k, u in uid_map.uids.items()}[uid]
        self._writable_folder(destination).add(box.get_message(key))
        box.remove(key)  # the copy is in place first: a crash between leaves two copies, never none
        return True

    def move_many(self, folder: str, uids: Sequence[int], destination: str) -> bool:
        return all([self.move(folder, uid, destination) for uid in uids])

    def twin(self) -> MaildirMailbox:
        return MaildirMailbox(self.name, self.path, self.inbox)

    def can_wait(self) -> bool:
        return True

    def wait_for_mail(
        self, timeout: float, stop: threading.Event, listening: Callable[[], object] | None = None
    ) -> bool:
        """Look at the inbox's ``new`` and ``cur`` folders every half second: a delivery changes one of them."""
        before = self._stamp()
        if listening is not None:
            listening()
        deadline = time.monotonic() + timeout
        while not stop.wait(min(0.5, max(0.0, deadline - time.monotonic()))):
            if self._stamp() != before:
                return True
            if time.monotonic() >= deadline:
                return False
        return False

    def _stamp(self) -> tuple[int, int]:
        try:
            return (os.stat(self.path / "new").st_mtime_ns, os.stat(self.path / "cur").st_mtime_ns)
        except OSError as exc:
            raise MailboxError(self.name, f"{self.path} is not a Maildir ({exc.strerror})") from None

    def profile(self, folders: Sequence[str] = ()) -> ServerProfile:
        def exists(path: str) -> bool:
            return path == self.inbox or path in self._folder(self.inbox).list_folders()

        return local_profile(self.name, str(self.path), [self.inbox, *folders], exists)


def _delivery_order(key: str) -> tuple[float, str]:
    head = key.split(".", 1)[0]
    try:
        return float(head), key
    except ValueError:
        return 0.0, key


def _load(path: Path) -> _UidMap:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return _UidMap(
            int(data["uidvalidity"]), int(data["next_uid"]), {str(k): int(v) for k, v in data["uids"].items()}
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        # No UID file yet, or a damaged one: start a new UID space under a new UIDVALIDITY; messages already
        # recorded are recognised by Message-ID and content.
        return _UidMap(uidvalidity=secrets.randbelow(2**31 - 1) + 1)


def _save(path: Path, uid_map: _UidMap) -> None:
    data = {"uidvalidity": uid_map.uidvalidity, "next_uid": uid_map.next_uid, "uids": uid_map.uids}
    temporary = path.with_suffix(".tmp")
    with temporary.open("w", encoding="utf-8") as out:
        json.dump(data, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
