"""What a mail server offers, and what mailtriage therefore does there: ``config check --connect`` prints it, the
daemon logs it once at start.

Ask the server, never assume: where an extension is missing mailtriage does the next best thing that loses nothing
(COPY + UID EXPUNGE of that one message for MOVE; polling for IDLE; flags without keywords), and says so here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mailtriage.mailbox.folders import Found, Namespace

SHOWN = ("IDLE", "MOVE", "UIDPLUS", "SPECIAL-USE", "NAMESPACE", "CONDSTORE", "MULTIAPPEND")
"""The capabilities that change what mailtriage does, or could."""


class MoveMethod(enum.StrEnum):
    """How a message is moved to its category's folder."""

    MOVE = "move"
    """UID MOVE (RFC 6851), or a Maildir's rename: one atomic step."""
    COPY_EXPUNGE = "copy-expunge"
    """UID COPY, checked by its COPYUID, then ``\\Deleted`` and UID EXPUNGE of that message alone (RFC 4315)."""
    NONE = "none"
    """Neither: the message stays where it is, with its keywords and flag."""


@dataclass(frozen=True)
class ServerProfile:
    """One mailbox's server as mailtriage found it."""

    mailbox: str
    address: str
    """host:port, or the Maildir's path."""
    capabilities: frozenset[str]
    namespace: Namespace
    move: MoveMethod
    idle: bool
    keywords: bool
    """Whether the inbox keeps new keywords (PERMANENTFLAGS has ``\\*``)."""
    drafts: Found | None
    sent: Found | None
    folders: tuple[tuple[str, str, bool], ...] = ()
    """(configured path, the server's name, whether it exists yet) for the inbox and every category folder."""

    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities


def offers(profile: ServerProfile) -> list[str]:
    """What the server offers, one line each."""
    lines = [f"{name}: {'yes' if profile.has(name) else 'no'}" for name in SHOWN]
    ns = profile.namespace
    if ns.announced:
        lines[SHOWN.index("NAMESPACE")] += f" (personal prefix {ns.prefix!r}, separator {ns.separator!r})"
    else:
        lines[SHOWN.index("NAMESPACE")] += f" (separator {ns.separator!r} from LIST, no prefix)"
    refused = "refused (PERMANENTFLAGS has no \\*)"
    lines.append(f"keywords: {'kept' if profile.keywords else refused}")
    return lines


def behaviour(profile: ServerProfile) -> list[str]:
    """What mailtriage will do on this server, and where, in words an admin can act on."""
    lines = []
    if profile.move is MoveMethod.MOVE:
        lines.append("routed messages are moved to their category's folder (MOVE)")
    elif profile.move is MoveMethod.COPY_EXPUNGE:
        lines.append(
            "no MOVE, but UIDPLUS: routed messages are moved by COPY, checked by its COPYUID, then UID EXPUNGE of "
            "that message alone"
        )
    else:
        lines.append("no MOVE and no UIDPLUS: messages will be flagged and keyworded, not moved")
    if not profile.keywords:
        lines.append("the inbox keeps no new keywords: categories show as folders and \\Flagged only")
    lines.append(
        "new mail is noticed within a second, by IDLE" if profile.idle else "no IDLE: new mail is found by polling"
    )
    for found, role in ((profile.drafts, "drafts"), (profile.sent, "sent")):
        if found is None:
            then = "created at the first draft" if role == "drafts" else "replies in Sent cannot stop the clock"
            lines.append(f"{role} folder: none found ({then}; set folders.{role} to name one)")
        else:
            lines.append(f"{role} folder: {found.name} ({found.how})")
    for path, name, exists in profile.folders:
        shown = path if path == name else f"{path} -> {name}"
        lines.append(f"folder {shown}{'' if exists else ' (created when first used)'}")
    return lines


def local_profile(mailbox: str, address: str, folders: Iterable[str], exists: Callable[[str], bool]) -> ServerProfile:
    """The profile of a mailbox without a server (a Maildir, or one in memory): it moves, keeps keywords only as
    far as its flags go, and has no IDLE; its drafts and sent folders are Drafts and Sent."""
    return ServerProfile(
        mailbox=mailbox, address=address, capabilities=frozenset(), namespace=Namespace(), move=MoveMethod.MOVE,
        idle=False, keywords=False, drafts=Found("drafts", "Drafts", "Maildir++ folder"),
        sent=Found("sent", "Sent", "Maildir++ folder"),
        folders=tuple((path, path, exists(path)) for path in dict.fromkeys(folders)),
    )  # fmt: skip


def describe(profile: ServerProfile) -> list[str]:
    """The whole account of one mailbox's server: what it offers, then what mailtriage will do there."""
    return [
        f"mailbox {profile.mailbox} ({profile.address})",
        *(f"  offers {line}" for line in offers(profile)),
        *(f"  will: {line}" for line in behaviour(profile)),
    ]
