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
from typing import Any

import imapclient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from mailtriage.errors import AuthenticationFailed, MailboxError, SecretError
from mailtriage.mailbox import READ_BYTES
from mailtriage.mailbox.folders import INBOX, Found, Namespace, listed, special_folder
from mailtriage.mailbox.imap_wire import (
    NEW_MAIL,
    View,
    append_all,
    as_text,
    ask_namespace,
    aware,
    by_size,
    changed,
    context,
    copy,
    copyuid,
    fetch_chunk,
    fetched_uids,
    holds_copy,
    move_method,
    named,
    quietly_close,
    storable,
    tls_context,
)
from mailtriage.mailbox.server import MoveMethod, ServerProfile
from mailtriage.models import FolderStatus, RawMessage
from mailtriage.settings import Auth, MailboxSettings, Security

log = logging.getLogger(__name__)


class ImapMailbox:
    """One IMAP account; connects on first use and again after any failure."""

    def __init__(self, settings: MailboxSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.inbox = settings.folders.inbox
        self._client: Any = None
        self._view: View | None = None
        self._namespace: Namespace | None = None
        self._lock = threading.RLock()
        self._warned: set[str] = set()
        self._special: dict[str, Found | None] = {}
        self._exists: set[str] = set()
        """Server folder names known to exist: each is looked for (and created) once."""

    # --- connection ----------------------------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        s = self.settings
        client = imapclient.IMAPClient(
            s.host, port=s.effective_port, ssl=s.security is Security.TLS, ssl_context=tls_context(s), timeout=s.timeout
        )
        try:
            if s.security is Security.STARTTLS:
                client.starttls(tls_context(s))
            assert s.secret is not None and s.username is not None  # guaranteed by MailboxSettings
            secret = s.secret.read(f"mailbox {s.name!r}", "secret")
            if s.auth is Auth.XOAUTH2:
                client.oauth2_login(s.username, secret)
            else:
                client.login(s.username, secret)
        except BaseException:
            quietly_close(client)
            raise
        client.normalise_times = False
        self._client = client
        self._view = None
        log.debug("mailbox %s: connected to %s:%s", self.name, s.host, s.effective_port)
        return client

    @contextmanager
    def _session(self, doing: str = "") -> Iterator[Any]:
        """A connected client; any failure becomes a MailboxError saying what was being ``doing`` (naming the
        folder). A lost connection is dropped, to be made again; a NO or BAD answer keeps it."""
        with self._lock:
            try:
                yield self._connect()
            except LoginError as exc:
                self._drop()
                raise AuthenticationFailed(
                    self.name, f"login refused for {self.settings.username}: {as_text(exc)}"
                ) from None
            except SecretError as exc:
                self._drop()
                said = str(exc).removeprefix(f"mailbox {self.name!r}: ")
                raise AuthenticationFailed(self.name, f"cannot get the secret to log in: {said}") from None
            except (TimeoutError, IMAPClientAbortError, OSError, ssl.SSLError) as exc:
                self._drop()
                raise MailboxError(self.name, f"{context(doing)}{type(exc).__name__}: {as_text(exc)}") from None
            except IMAPClientError as exc:  # the server answered NO or BAD: trying again would not help
                self._view = None  # a failed SELECT leaves no folder selected (RFC 3501 6.3.1)
                raise MailboxError(
                    self.name, f"{context(doing)}the server refused: {as_text(exc)}", retryable=False
                ) from None

    def _drop(self) -> None:
        if self._client is not None:
            quietly_close(self._client)
        self._client = None
        self._view = None
        self._exists.clear()

    def _examine(self, client: Any, folder: str) -> View:
        """Open ``folder`` read-only (EXAMINE), so nothing done on this connection can change a message."""
        found = client.select_folder(folder, readonly=True)
        uidnext = found.get(b"UIDNEXT")
        if uidnext is None:  # optional in the EXAMINE response
            uidnext = client.folder_status(folder, [b"UIDNEXT"])[b"UIDNEXT"]
        self._view = View(folder, int(found[b"UIDVALIDITY"]), int(uidnext), int(found[b"EXISTS"]))
        return self._view

    def _opened(self, client: Any, folder: str) -> View:
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
        with self._session(f"opening {folder}") as client:
            name = self._server_name(client, folder)
            view = self._view
            if view is None or view.folder != name or not view.current or changed(client.noop()[1]):
                view = self._examine(client, name)
        return FolderStatus(view.uidvalidity, view.uidnext, view.exists)

    def uids_above(self, folder: str, uid: int, upto: int | None = None) -> list[int]:
        """UIDs above ``uid``: by ``UID SEARCH UID n:*``, or, given ``upto``, by both an explicit-range SEARCH and
        a ``UID FETCH n:m (UID)``: a second opinion for servers whose ``*`` search answers short."""
        with self._session(f"searching {folder}") as client:
            self._opened(client, self._server_name(client, folder))
            if upto is None:
                found = set(client.search(["UID", f"{uid + 1}:*"]))
            elif upto <= uid:
                return []
            else:
                found = set(client.search(["UID", f"{uid + 1}:{upto}"])) | fetched_uids(client, f"{uid + 1}:{upto}")
        # "n:*" always matches the highest UID, even one below n.
        return sorted(u for u in found if uid < u <= (upto or u))

    def last_uid(self, folder: str) -> int | None:
        """The highest UID in ``folder`` (``UID FETCH * (UID)``), None when it is empty."""
        with self._session(f"reading the last UID of {folder}") as client:
            if self._opened(client, self._server_name(client, folder)).exists == 0:
                return None
            found = fetched_uids(client, "*")
        return max(found) if found else None

    def fetch(self, folder: str, uids: Sequence[int], headers_only: bool = False) -> Iterator[RawMessage]:
        if not uids:
            return
        with self._session(f"fetching from {folder}") as client:
            server_folder = self._server_name(client, folder)
            uidvalidity = self._opened(client, server_folder).uidvalidity
            found_sizes = {} if headers_only else client.fetch(list(uids), ["RFC822.SIZE"])
        sizes = {uid: int(found_sizes.get(uid, {}).get(b"RFC822.SIZE", 0)) for uid in uids}
        for chunk in by_size(sorted(sizes), {uid: min(size, READ_BYTES) for uid, size in sizes.items()}):
            with self._session(f"fetching from {folder}") as client:
                if self._opened(client, server_folder).uidvalidity != uidvalidity:
                    return  # renumbered meanwhile: the next cycle resyncs
                found = fetch_chunk(client, chunk, sizes, headers_only)
            for uid in sorted(found):
                data, item = found[uid]
                yield RawMessage(
                    folder=folder,
                    uidvalidity=uidvalidity,
                    uid=uid,
                    data=data,
                    flags=frozenset(as_text(f) for f in item.get(b"FLAGS", ())),
                    internal_date=aware(item.get(b"INTERNALDATE")),
                    whole_size=sizes[uid] if sizes[uid] > READ_BYTES else None,
                )

    def flags(self, folder: str, uids: Sequence[int]) -> dict[int, frozenset[str]]:
        if not uids:
            return {}
        with self._session(f"reading flags in {folder}") as client:
            self._opened(client, self._server_name(client, folder))
            found = client.get_flags(list(uids))
        return {uid: frozenset(as_text(f) for f in flags) for uid, flags in found.items()}

    def find(self, folder: str, header: str, value: str) -> list[int]:
        with self._session(f"searching {folder}") as client:
            self._opened(client, self._server_name(client, folder))
            # SEARCH is US-ASCII unless a charset is given; a Message-ID may carry raw 8-bit bytes.
            return sorted(client.search(["HEADER", header, value], charset=None if value.isascii() else "UTF-8"))

    # --- changes -------------------------------------------------------------------------------------------------

    def append(self, folder: str, data: bytes, flags: Sequence[str] = ()) -> None:
        with self._session(f"appending to {folder}") as client:
            name = self._server_name(client, folder)
            self._ensure_folder(client, folder, name)
            client.append(name, data, flags=tuple(flags))

    def append_many(self, folder: str, messages: Sequence[bytes], flags: Sequence[str] = ()) -> None:
        """MULTIAPPEND where the server offers it (``imap_wire.append_all``), else one APPEND each."""
        if not messages:
            return
        with self._session(f"appending {len(messages)} messages to {folder}") as client:
            name = self._server_name(client, folder)
            self._ensure_folder(client, folder, name)
            append_all(client, name, messages, flags)

    def add_flags(self, folder: str, uids: Sequence[int], flags: Sequence[str]) -> None:
        """Set flags and keywords; keywords the folder cannot keep (its PERMANENTFLAGS has no ``\\*``, as on
        Exchange Online) are left out, with a warning once per folder, rather than failing the whole change."""
        with self._session(f"setting flags in {folder}") as client:
            view = self._writable(client, self._server_name(client, folder))
            kept, dropped = storable(flags, view.permanent)
            if dropped and view.folder not in self._warned:
                self._warned.add(view.folder)
                log.warning("mailbox %s: %s keeps no new keywords (PERMANENTFLAGS): %s not set; flags are",
                            self.name, folder, ", ".join(dropped))  # fmt: skip
            if not kept:
                return
            client.add_flags(list(uids), kept, silent=True)
            labels = [flag for flag in kept if not flag.startswith("\\")]
            if labels and client.has_capability("X-GM-EXT-1"):  # Gmail shows labels, not keywords
                client.add_gmail_labels(list(uids), labels, silent=True)

    def remove_flags(self, folder: str, uid: int, flags: Sequence[str]) -> None:
        with self._session(f"removing flags in {folder}") as client:
            self._writable(client, self._server_name(client, folder))
            client.remove_flags([uid], list(flags), silent=True)
            labels = [flag for flag in flags if not flag.startswith("\\")]
            if labels and client.has_capability("X-GM-EXT-1"):
                client.remove_gmail_labels([uid], labels, silent=True)

    def move(self, folder: str, uid: int, destination: str, *, resume: bool = False) -> bool:
        """Move a message to ``destination`` (created and subscribed if missing): by MOVE, else by COPY and UID
        EXPUNGE of that message alone. False, and nothing done, where the server has neither MOVE nor UIDPLUS.

        ``resume``: a move of this message was begun before (and a crash may have come between COPY and
        EXPUNGE): a copy already in ``destination`` is not made again.
        """
        return self._move(folder, [uid], destination, resume)

    def move_many(self, folder: str, uids: Sequence[int], destination: str) -> bool:
        return self._move(folder, uids, destination, resume=False) if uids else True

    def _move(self, folder: str, uids: Sequence[int], destination: str, resume: bool) -> bool:
        which = f"UID {uids[0]}" if len(uids) == 1 else f"{len(uids)} messages"
        with self._session(f"moving {which} from {folder} to {destination}") as client:
            method = move_method(client)
            if method is MoveMethod.NONE:
                return False
            target = self._server_name(client, destination)
            self._ensure_folder(client, destination, target)
            source = self._writable(client, self._server_name(client, folder))
            if method is MoveMethod.MOVE:
                client.move(list(uids), target)
            else:
                self._copy_then_expunge(client, source, uids, destination, target, resume)
        return True

    def _copy_then_expunge(self, client: Any, source: View, uids: Sequence[int], destination: str, target: str,
                           resume: bool) -> None:  # fmt: skip
        """What MOVE does, in three steps that lose nothing: the copies are made and confirmed (COPYUID) before
        the originals are marked ``\\Deleted``, and only those UIDs are expunged (UID EXPUNGE), never another
        message. ``resume`` (one message): a copy already made is not made again."""
        if not (resume and len(uids) == 1 and self._copied(client, source, uids[0], target)):
            self._writable(client, source.folder)
            answer = copy(client, uids, target)
            copied = copyuid(answer)
            if copied is None or any(uid not in copied for uid in uids):
                said = f"no COPYUID in {as_text(answer)!r}" if copied is None else "COPYUID names other messages"
                which = f"UID {uids[0]}" if len(uids) == 1 else f"UIDs {', '.join(map(str, uids))}"
                raise MailboxError(self.name, f"COPY of {which} to {destination} was not confirmed ({said}): the "
                                   "messages stay where they are", retryable=False)  # fmt: skip
        self._writable(client, source.folder)
        client.add_flags(list(uids), ["\\Deleted"], silent=True)
        client.uid_expunge(list(uids))
        self._view = None  # EXPUNGE changed the folder: the next look examines it anew

    def _copied(self, client: Any, source: View, uid: int, target: str) -> bool:
        """Whether ``target`` already holds a byte-identical copy of message ``uid`` of ``source``."""
        self._writable(client, source.folder)
        item = client.fetch([uid], ["BODY.PEEK[]", "INTERNALDATE"]).get(uid, {})
        if b"BODY[]" not in item:
            return False
        self._examine(client, target)
        return holds_copy(client, bytes(item[b"BODY[]"]), aware(item.get(b"INTERNALDATE")))

    def _ensure_folder(self, client: Any, path: str, name: str) -> None:
        """Create ``name`` (the server's name for the configured ``path``) and subscribe to it if it is missing;
        looked for once per connection, created once, with one log line."""
        if name in self._exists or name.upper() == INBOX:
            return
        if not client.folder_exists(name):
            client.create_folder(name)
            try:
                client.subscribe_folder(name)
            except IMAPClientError as exc:  # the folder is there: a client that shows subscribed ones will miss it
                log.warning("mailbox %s: created %s but could not subscribe to it: %s", self.name, path, as_text(exc))
            log.info("mailbox %s: created the folder %s%s", self.name, path, "" if path == name else f" ({name})")
        self._exists.add(name)

    # --- folders -------------------------------------------------------------------------------------------------

    def _server_name(self, client: Any, folder: str) -> str:
        """A folder path written with '/' in the config, as the server names it (through its NAMESPACE)."""
        return self._namespace_of(client).server_name(folder)

    def _namespace_of(self, client: Any) -> Namespace:
        if self._namespace is None:
            self._namespace = ask_namespace(client)
        return self._namespace

    def _writable(self, client: Any, folder: str) -> View:
        """Open ``folder`` read-write (for flags and MOVE); reads there still use BODY.PEEK. Never CLOSEd."""
        if self._view is None or self._view.folder != folder or not self._view.writable:
            found = client.select_folder(folder)
            uidnext = int(found.get(b"UIDNEXT", 0))
            permanent = frozenset(as_text(f) for f in found.get(b"PERMANENTFLAGS", (b"\\*",)))
            self._view = View(folder, int(found[b"UIDVALIDITY"]), uidnext, int(found[b"EXISTS"]), writable=True,
                               permanent=permanent)  # fmt: skip
        self._view.current = False
        return self._view

    def special_folder(self, role: str) -> str | None:
        """The folder for ``role`` ('drafts' or 'sent') as a configured path: the configured one, else the one the
        server marks with SPECIAL-USE, else one of the usual names (see ``folders.USUAL_NAMES``)."""
        found = self._special_folder(role)
        if found is None:
            return None
        return found.name if found.how == "configured" else self._namespace_or_default().configured_path(found.name)

    def _special_folder(self, role: str) -> Found | None:
        configured = getattr(self.settings.folders, role)
        if configured:
            return Found(role, str(configured), "configured")
        if role not in self._special:  # folders' roles do not change under a running daemon: asked once
            with self._session(f"looking for the {role} folder") as client:
                folders = listed((map(as_text, flags), as_text(name)) for flags, _, name in client.list_folders())
                self._special[role] = special_folder(role, folders, self._namespace_of(client))
        return self._special[role]

    def _namespace_or_default(self) -> Namespace:
        with self._session("asking for the namespace") as client:
            return self._namespace_of(client)

    def profile(self, folders: Sequence[str] = ()) -> ServerProfile:
        """What the server offers and which folders mailtriage will use there, for ``config check --connect``
        and the daemon's first log lines. ``folders``: configured paths to resolve besides the inbox."""
        drafts, sent = self._special_folder("drafts"), self._special_folder("sent")
        with self._session("asking what the server offers") as client:
            namespace = self._namespace_of(client)
            capabilities = frozenset(as_text(c).upper() for c in client.capabilities())
            resolved = []
            for path in dict.fromkeys((self.inbox, *folders)):
                name = namespace.server_name(path)
                resolved.append((path, name, bool(client.folder_exists(name))))
            view = self._writable(client, namespace.server_name(self.inbox))
        s = self.settings
        return ServerProfile(
            mailbox=self.name, address=f"{s.host}:{s.effective_port}", capabilities=capabilities, namespace=namespace,
            move=move_method(client), idle="IDLE" in capabilities, keywords="\\*" in view.permanent,
            drafts=named(drafts, namespace), sent=named(sent, namespace), folders=tuple(resolved),
        )  # fmt: skip

    # --- waiting for mail ----------------------------------------------------------------------------------------

    def twin(self) -> ImapMailbox:
        return ImapMailbox(self.settings)

    def can_wait(self) -> bool:
        with self._session("asking for IDLE") as client:
            return bool(client.has_capability("IDLE"))

    def wait_for_mail(
        self, timeout: float, stop: threading.Event, listening: Callable[[], object] | None = None
    ) -> bool:
        """Block in IMAP IDLE until new mail arrives in the inbox (True) or ``timeout`` or ``stop`` (False).
        ``listening`` is called once the server has accepted the IDLE: from then on no new mail goes unnoticed.

        Meant for a connection of its own (``twin``): IDLE occupies the connection until it ends.
        """
        with self._session(f"listening (IDLE) on {self.inbox}") as client:
            self._opened(client, self._server_name(client, self.inbox))
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
                    if any(len(r) > 1 and r[1] in NEW_MAIL for r in responses):
                        return True
                    # imapclient swallows EOF inside idle_check: a socket that keeps waking with nothing to read
                    # has been closed by the other end. Without this, a cut went unnoticed until the IDLE timeout.
                    silent_wakes = silent_wakes + 1 if not responses and time.monotonic() - started < wait / 2 else 0
                    if silent_wakes >= 2:
                        raise IMAPClientAbortError("the connection was closed during IDLE")
                return False
            finally:
                client.idle_done()
