"""What imapclient hands back, as values: COPYUID answers, UID sets, a folder's view, flags a folder keeps, and the
raw commands imapclient does not offer. Only ``imap.py`` and this module know imapclient's shapes."""

from __future__ import annotations

import email
import re
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from imapclient.response_parser import parse_fetch_response

from mailtriage.mailbox import READ_BYTES, header_section
from mailtriage.mailbox.folders import Found, Namespace
from mailtriage.mailbox.server import MoveMethod
from mailtriage.settings import MailboxSettings

FETCH_BYTES = 20 * 1024 * 1024
"""At most this many message bytes are fetched in one command, so a batch of big attachments stays in bounds."""
NEW_MAIL = (b"EXISTS", b"RECENT")


@dataclass
class View:
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


COPYUID_CODE = re.compile(rb"\[COPYUID \d+ ([\d:,]+) ([\d:,]+)\]", re.IGNORECASE)


def copyuid(answer: object) -> dict[int, int] | None:
    """The source UID -> copy UID pairs of a COPY answer's COPYUID code (RFC 4315), None when it has none."""
    found = COPYUID_CODE.search(answer if isinstance(answer, bytes) else str(answer).encode())
    if found is None:
        return None
    sources, copies = (uid_set(part) for part in found.groups())
    return dict(zip(sources, copies, strict=False)) if len(sources) == len(copies) else None


def uid_set(text: bytes) -> list[int]:
    uids: list[int] = []
    for part in text.decode().split(","):
        low, _, high = part.partition(":")
        first, last = int(low), int(high or low)
        step = 1 if last >= first else -1  # RFC 4315: a range may be given high to low
        uids.extend(range(first, last + step, step))
    return uids


def copy(client: Any, uids: Sequence[int], folder: str) -> bytes:
    """``UID COPY`` of these messages, answering the server's text with its COPYUID code. imapclient's ``copy``
    returns only untagged answers, and servers put COPYUID in the tagged OK (Dovecot, Courier) or in an untagged
    OK (Cyrus, for MOVE): both are looked at."""
    uid_list = ",".join(str(uid) for uid in uids).encode()
    typ, data = client._raw_command(b"COPY", [uid_list, client._normalise_folder(folder)], uid=True)
    client._checkok("copy", typ, data)
    untagged = client._imap.untagged_responses.pop("COPYUID", None)
    said = b" ".join(part for part in data if isinstance(part, bytes))
    return said + b"".join(b" [COPYUID " + part + b"]" for part in untagged or () if isinstance(part, bytes))


def holds_copy(client: Any, original: bytes, received: datetime | None) -> bool:
    """Whether the selected folder holds a byte-identical copy of ``original``. Candidates are found by
    Message-ID, else by date (a copy keeps the INTERNALDATE); not by size, which Courier searches by its own count
    of line ends."""
    message_id = email.message_from_bytes(header_section(original)).get("Message-ID", "").strip()
    if message_id and message_id.isascii():
        candidates = client.search(["HEADER", "Message-ID", message_id])
    elif received is not None:
        candidates = client.search(["SINCE", (received - timedelta(days=1)).date()])
    else:
        candidates = client.search(["ALL"])
    sizes = client.fetch(candidates, ["RFC822.SIZE"]) if candidates else {}
    alike = [u for u, found in sizes.items() if found.get(b"RFC822.SIZE") == len(original)]
    bodies = client.fetch(alike, ["BODY.PEEK[]"]) if alike else {}
    return any(bytes(found.get(b"BODY[]", b"")) == original for found in bodies.values())


def fetched_uids(client: Any, uids: str) -> set[int]:
    """The UIDs a ``UID FETCH <uids> (UID)`` answers. imapclient's ``fetch`` keeps only the UIDs it was given one
    by one, so a range or ``*`` goes through its raw command."""
    data = client._raw_command_untagged(b"FETCH", [uids.encode(), b"(UID)"], response_name="FETCH")
    return set(parse_fetch_response(data, False, True)) if data and data != [None] else set()


def move_method(client: Any) -> MoveMethod:
    if client.has_capability("MOVE"):
        return MoveMethod.MOVE
    return MoveMethod.COPY_EXPUNGE if client.has_capability("UIDPLUS") else MoveMethod.NONE


def ask_namespace(client: Any) -> Namespace:
    """The personal namespace (RFC 2342); without NAMESPACE, LIST's hierarchy separator and no prefix."""
    if client.has_capability("NAMESPACE"):
        personal, other, shared = client.namespace()
        if personal:
            prefix, separator = personal[0]
            others = tuple(as_text(p) for group in (other or (), shared or ()) for p, _ in group)
            return Namespace(as_text(prefix), as_text(separator) or "/", others, announced=True)
    found = client.list_folders(directory="", pattern="")
    return Namespace("", as_text(found[0][1]) if found and found[0][1] else "/")


def named(found: Found | None, namespace: Namespace) -> Found | None:
    """A found special folder by its name on the server."""
    if found is None or found.how != "configured":
        return found
    return Found(found.role, namespace.server_name(found.name), found.how)


def context(doing: str) -> str:
    return f"{doing}: " if doing else ""


def changed(responses: list[Any]) -> bool:
    """Whether NOOP's untagged responses announce arrivals or removals (flag changes do not matter here)."""
    return any(len(r) > 1 and r[1] in (b"EXISTS", b"EXPUNGE", b"RECENT") for r in responses)


def by_size(uids: list[int], sizes: dict[int, int]) -> Iterator[list[int]]:
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


def aware(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def as_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Exception) and value.args and isinstance(value.args[0], bytes):
        return as_text(value.args[0])  # imapclient carries the server's answer as bytes
    text = str(value)
    # LoginError wraps the repr of the server's bytes answer: b'[AUTHENTICATIONFAILED] ...'
    return text[2:-1] if text.startswith(("b'", 'b"')) and text[-1:] in "'\"" else text


def quietly_close(client: Any) -> None:
    try:
        client.shutdown()
    except Exception:
        pass


MULTIAPPEND_BYTES = 8 * 1024 * 1024
"""Drafts are appended in MULTIAPPEND commands of about this much at most: a server caps a command's size."""


def append_all(client: Any, folder: str, messages: Sequence[bytes], flags: Sequence[str]) -> None:
    """The messages appended to ``folder``: one MULTIAPPEND (RFC 3502) per MULTIAPPEND_BYTES where the server
    offers it, which adds all of them or none; else one APPEND each, on this connection."""
    if len(messages) == 1 or not client.has_capability("MULTIAPPEND"):
        for data in messages:
            client.append(folder, data, flags=tuple(flags))
        return
    run: list[bytes] = []
    for data in messages:
        if run and sum(map(len, run)) + len(data) > MULTIAPPEND_BYTES:
            client.multiappend(folder, [{"msg": one, "flags": tuple(flags)} for one in run])
            run = []
        run.append(data)
    client.multiappend(folder, [{"msg": one, "flags": tuple(flags)} for one in run])


def tls_context(settings: MailboxSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    if not settings.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def fetch_chunk(
    client: Any, chunk: list[int], sizes: dict[int, int], headers_only: bool
) -> dict[int, tuple[bytes, dict[bytes, Any]]]:
    """(bytes, FETCH items) by UID: the header section, the whole message, or, for one bigger than
    READ_BYTES, its first READ_BYTES (a partial fetch: the server never sends the rest)."""
    if headers_only:
        requests = [(chunk, "BODY.PEEK[HEADER]", b"BODY[HEADER]")]
    else:
        whole = [uid for uid in chunk if sizes[uid] <= READ_BYTES]
        part = [uid for uid in chunk if sizes[uid] > READ_BYTES]
        requests = [(whole, "BODY.PEEK[]", b"BODY[]"), (part, f"BODY.PEEK[]<0.{READ_BYTES}>", b"BODY[]<0>")]
    found: dict[int, tuple[bytes, dict[bytes, Any]]] = {}
    for uids, section, key in requests:
        if not uids:
            continue
        for uid, item in client.fetch(uids, [section, "FLAGS", "INTERNALDATE"]).items():
            if key in item:
                found[uid] = (bytes(item.pop(key)), item)
    return found
