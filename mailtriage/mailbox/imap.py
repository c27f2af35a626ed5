"""An IMAP account as a mailbox; the only module that imports imapclient.

Reading is side-effect free twice over: folders are opened read-only (EXAMINE) and bodies fetched with
``BODY.PEEK[]``, so no message ever gets ``\\Seen`` because mailtriage read it.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import imapclient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from mailtriage.errors import AuthenticationFailed, MailboxError, SecretError
from mailtriage.models import FolderStatus, RawMessage
from mailtriage.settings import Auth, MailboxSettings, Security

log = logging.getLogger(__name__)

FETCH_BYTES = 20 * 1024 * 1024
"""At most this many message bytes are fetched in one command, so a batch of big attachments stays in bounds."""
_SPECIAL = {"drafts": imapclient.imapclient.DRAFTS, "sent": imapclient.imapclient.SENT}
_NEW_MAIL = (b"EXISTS", b"RECENT")


class ImapMailbox:
    """One IMAP account; connects on first use and again after any failure."""

    def __init__(self, settings: MailboxSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.inbox = settings.folders.inbox
        self._client: Any = None
        self._view: _View | None = None
        self._delimiter: str | None = None
        self._lock = threading.RLock()
        self._warned: set[str] = set()
        self._special: dict[str, str | None] = {}

    # --- connection ----------------------------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        s = self.settings
        client = imapclient.IMAPClient(
            s.host, port=s.effective_port, ssl=s.security is Security.TLS, ssl_context=self._tls(), timeout=s.timeout
        )
        try:
            if s.security is Security.STARTTLS:
                client.starttls(self._tls())
            assert s.secret is not None and s.username is not None  # guaranteed by MailboxSettings
            secret = s.secret.read(f"mailbox {s.name!r}", "secret")
            if s.auth is Auth.XOAUTH2:
                client.oauth2_login(s.username, secret)
            else:
                client.login(s.username, secret)
        except BaseException:
            _quietly_close(client)
            raise
        client.normalise_times = False
        self._client = client
        self._view = None
        log.debug("mailbox %s: connected to %s:%s", self.name, s.host, s.effective_port)
        return client

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.settings.ca_file) if self.settings.ca_file else None)
        if not self.settings.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    @contextmanager
    def _session(self) -> Iterator[Any]:
        """A connected client; any failure drops the connection and becomes a MailboxError."""
        with self._lock:
            try:
                yield self._connect()
            except LoginError as exc:
                self._drop()
                raise AuthenticationFailed(
                    self.name, f"login refused for {self.settings.username}: {_text(exc)}"
                ) from None
            except SecretError as exc:
                self._drop()
                said = str(exc).removeprefix(f"mailbox {self.name!r}: ")
                raise AuthenticationFailed(self.name, f"cannot get the secret to log in: {said}") from None
            except (TimeoutError, IMAPClientAbortError, OSError, ssl.SSLError) as exc:
                self._drop()
                raise MailboxError(self.name, f"{type(exc).__name__}: {_text(exc)}") from None
            except IMAPClientError as exc:  # the server answered NO or BAD: trying again would not help
                self._drop()
                raise MailboxError(self.name, f"the server refused: {_text(exc)}", retryable=False) from None

    def _drop(self) -> None:
        if self._client is not None:
            _quietly_close(self._client)
        self._client = None
        self._view = None

    def _examine(self, client: Any, folder: str) -> _View:
        """Open ``folder`` read-only (EXAMINE), so nothing done on this connection can change a message."""
        found = client.select_folder(folder, readonly=True)
        uidnext = found.get(b"UIDNEXT")
        if uidnext is None:  # optional in the EXAMINE response
            uidnext = client.folder_status(folder, [b"UIDNEXT"])[b"UIDNEXT"]
        self._view = _View(folder, int(found[b"UIDVALIDITY"]), int(uidnext), int(found[b"EXISTS"]))
        return self._view

    def _opened(self, client: Any, folder: str) -> _View:
        """The view of ``folder``, opened if it is not; it may be stale after this (see ``status``)."""
        view = self._view if self._view is not None and self._view.folder == folder else self._examine(client, folder)
        view.current = False
        return view

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                try:
                    self._client.logout()
                except Exception:
                    pass
            self._drop()

    # --- reading -------------------------------------------------------------------------------------------------

    def status(self, folder: str) -> FolderStatus:
        """UIDVALIDITY and UIDNEXT of ``folder``, from a NOOP while nothing has changed since the last look.

        STATUS would be simpler, but Dovecot answers it from a stale view on a selected folder (RFC 3501 6.3.10
        allows that) and re-reads the whole folder for it once the session has selected any folder; a NOOP on the
        open folder costs the same whatever its size. Changes reported during other commands (SEARCH, FETCH) are
        not seen by a later NOOP, so after those the folder is examined anew.
        """
        with self._session() as client:
            folder = self._server_name(client, folder)
            view = self._view
            if view is None or view.folder != folder or not view.current or _changed(client.noop()[1]):
                view = self._examine(client, folder)
        return FolderStatus(view.uidvalidity, view.uidnext, view.exists)

    def uids_above(self, folder: str, uid: int) -> list[int]:
        with self._session() as client:
            self._opened(client, self._server_name(client, folder))
            found = client.search(["UID", f"{uid + 1}:*"])
        # "n:*" always matches the highest UID, even one below n.
        return sorted(u for u in found if u > uid)

    def fetch(self, folder: str, uids: Sequence[int], headers_only: bool = False) -> Iterator[RawMessage]:
        if not uids:
            return
        section, key = ("BODY.PEEK[HEADER]", b"BODY[HEADER]") if headers_only else ("BODY.PEEK[]", b"BODY[]")
        with self._session() as client:
            server_folder = self._server_name(client, folder)
            uidvalidity = self._opened(client, server_folder).uidvalidity
            sizes = {uid: {} for uid in uids} if headers_only else client.fetch(list(uids), ["RFC822.SIZE"])
        for chunk in _by_size(sorted(sizes), {u: int(sizes[u].get(b"RFC822.SIZE", 0)) for u in sizes}):
            with self._session() as client:
                if self._opened(client, server_folder).uidvalidity != uidvalidity:
                    return  # renumbered meanwhile: the next cycle resyncs
                found = client.fetch(chunk, [section, "FLAGS", "INTERNALDATE"])
            for uid in sorted(found):
                item = found[uid]
                if key not in item:
                    continue
                yield RawMessage(
                    folder=folder,
                    uidvalidity=uidvalidity,
                    uid=uid,
                    data=bytes(item[key]),
                    flags=frozenset(_text(f) for f in item.get(b"FLAGS", ())),
                    internal_date=_aware(item.get(b"INTERNALDATE")),
                )

    def flags(self, folder: str, uids: Sequence[int]) -> dict[int, frozenset[str]]:
        if not uids:
            return {}
        with self._session() as client:
            self._opened(client, self._server_name(client, folder))
            found = client.get_flags(list(uids))
        return {uid: frozenset(_text(f) for f in flags) for uid, flags in found.items()}

    def append(self, folder: str, data: bytes, flags: Sequence[str] = ()) -> None:
        with self._session() as client:
            client.append(self._server_name(client, folder), data, flags=tuple(flags))

    def find(self, folder: str, header: str, value: str) -> list[int]:
        with self._session() as client:
            self._opened(client, self._server_name(client, folder))
            # SEARCH is US-ASCII unless a charset is given; a Message-ID may carry raw 8-bit bytes.
            return sorted(client.search(["HEADER", header, value], charset=None if value.isascii() else "UTF-8"))

    def add_flags(self, folder: str, uid: int, flags: Sequence[str]) -> None:
        """Set flags and keywords; keywords the folder cannot keep (its PERMANENTFLAGS has no ``\\*``, as on
        Exchange Online) are left out, with a warning once per folder, rather than failing the whole change."""
        with self._session() as client:
            view = self._writable(client, self._server_name(client, folder))
            kept, dropped = storable(flags, view.permanent)
            if dropped and view.folder not in self._warned:
                self._warned.add(view.folder)
                log.warning("mailbox %s: %s keeps no new keywords (PERMANENTFLAGS): %s not set; flags are",
                            self.name, folder, ", ".join(dropped))  # fmt: skip
            if not kept:
                return
            client.add_flags([uid], kept, silent=True)
            labels = [flag for flag in kept if not flag.startswith("\\")]
            if labels and client.has_capability("X-GM-EXT-1"):  # Gmail shows labels, not keywords
                client.add_gmail_labels([uid], labels, silent=True)

    def move(self, folder: str, uid: int, destination: str) -> None:
        with self._session() as client:
            if not client.has_capability("MOVE"):
                # COPY then delete would expunge; mailtriage never deletes, so without MOVE nothing is moved.
                raise MailboxError(self.name, "the server has no MOVE: the message stays where it is", retryable=False)
            destination = self._server_name(client, destination)
            if not client.folder_exists(destination):
                client.create_folder(destination)
                client.subscribe_folder(destination)
            self._writable(client, self._server_name(client, folder))
            client.move([uid], destination)

    def _server_name(self, client: Any, folder: str) -> str:
        """A folder path written with '/' in the config, in the server's own hierarchy separator."""
        if self._delimiter is None:
            found = client.list_folders(directory="", pattern="")
            self._delimiter = _text(found[0][1]) if found and found[0][1] else "/"
        return folder.replace("/", self._delimiter)

    def _writable(self, client: Any, folder: str) -> _View:
        """Open ``folder`` read-write (for flags and MOVE); reads there still use BODY.PEEK. Never CLOSEd."""
        if self._view is None or self._view.folder != folder or not self._view.writable:
            found = client.select_folder(folder)
            uidnext = int(found.get(b"UIDNEXT", 0))
            permanent = frozenset(_text(f) for f in found.get(b"PERMANENTFLAGS", (b"\\*",)))
            self._view = _View(folder, int(found[b"UIDVALIDITY"]), uidnext, int(found[b"EXISTS"]), writable=True,
                               permanent=permanent)  # fmt: skip
        self._view.current = False
        return self._view

    def special_folder(self, role: str) -> str | None:
        """The folder the server marks with SPECIAL-USE ``role`` ('drafts' or 'sent'), or the configured one."""
        configured = getattr(self.settings.folders, role)
        if configured:
            return str(configured)
        if role not in self._special:  # folders' roles do not change under a running daemon: asked once
            with self._session() as client:
                found = client.find_special_folder(_SPECIAL[role])
            self._special[role] = None if found is None else str(found)
        return self._special[role]

    # --- waiting for mail ----------------------------------------------------------------------------------------

    def supports_idle(self) -> bool:
        with self._session() as client:
            return bool(client.has_capability("IDLE"))

    def wait_for_mail(
        self, folder: str, timeout: float, stop: threading.Event, listening: Callable[[], object] | None = None
    ) -> bool:
        """Block in IMAP IDLE until new mail arrives in ``folder`` (True) or ``timeout`` or ``stop`` (False).
        ``listening`` is called once the server has accepted the IDLE: from then on no new mail goes unnoticed.

        Meant for a connection of its own: IDLE occupies the connection until it ends.
        """
        with self._session() as client:
            self._opened(client, folder)
            client.idle()
            if listening is not None:
                listening()
            try:
                deadline = time.monotonic() + timeout
                silent_wakes = 0
                while not stop.is_set() and time.monotonic() < deadline:
                    wait = min(1.0, max(0.0, deadline - time.monotonic()))
                    started = time.monotonic()
                    responses = client.idle_check(timeout=wait)
                    if any(len(r) > 1 and r[1] in _NEW_MAIL for r in responses):
                        return True
                    # imapclient swallows EOF inside idle_check: a socket that keeps waking with nothing to read
                    # has been closed by the other end. Without this, a cut went unnoticed until the IDLE timeout.
                    silent_wakes = silent_wakes + 1 if not responses and time.monotonic() - started < wait / 2 else 0
                    if silent_wakes >= 2:
                        raise IMAPClientAbortError("the connection was closed during IDLE")
                return False
            finally:
                client.idle_done()


@dataclass
class _View:
    """What the connection knows of its selected folder; ``current`` while no command since EXAMINE could have
    swallowed a change notice."""

    folder: str
    uidvalidity: int
    uidnext: int
    exists: int
    current: bool = True
    writable: bool = False
    permanent: frozenset[str] = frozenset({"\\*"})
    """PERMANENTFLAGS of a folder opened read-write: ``\\*`` means any new keyword is kept."""


def storable(flags: Sequence[str], permanent: frozenset[str]) -> tuple[list[str], list[str]]:
    """The flags a folder with these PERMANENTFLAGS keeps, and the keywords it would refuse (RFC 3501 7.1)."""
    kept, dropped = [], []
    lowered = {p.lower() for p in permanent}
    for flag in flags:
        if flag.startswith("\\") or "\\*" in permanent or flag.lower() in lowered:
            kept.append(flag)
        else:
            dropped.append(flag)
    return kept, dropped


def _changed(responses: list[Any]) -> bool:
    """Whether NOOP's untagged responses announce arrivals or removals (flag changes do not matter here)."""
    return any(len(r) > 1 and r[1] in (b"EXISTS", b"EXPUNGE", b"RECENT") for r in responses)


def _by_size(uids: list[int], sizes: dict[int, int]) -> Iterator[list[int]]:
    chunk: list[int] = []
    total = 0
    for uid in uids:
        if chunk and total + sizes[uid] > FETCH_BYTES:
            yield chunk
            chunk, total = [], 0
        chunk.append(uid)
        total += sizes[uid]
    if chunk:
        yield chunk


def _aware(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Exception) and value.args and isinstance(value.args[0], bytes):
        return _text(value.args[0])  # imapclient carries the server's answer as bytes
    text = str(value)
    # LoginError wraps the repr of the server's bytes answer: b'[AUTHENTICATIONFAILED] ...'
    return text[2:-1] if text.startswith(("b'", 'b"')) and text[-1:] in "'\"" else text


def _quietly_close(client: Any) -> None:
    try:
        client.shutdown()
    except Exception:
        pass
