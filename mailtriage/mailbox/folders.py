"""Folder names as the configuration writes them and as a server spells them, and the special folders it marks.

Pure: the IMAP adapter asks the server (NAMESPACE, LIST) and hands the answers here. Configured paths are written
with ``/`` and relative to the personal namespace (RFC 2342), so ``Support/Defects`` is ``Support/Defects`` on
Dovecot and ``INBOX.Support.Defects`` on Cyrus or Courier; a path that already starts with a namespace's prefix is
taken as the server's own name.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

INBOX = "INBOX"

USUAL_NAMES = {
    "drafts": (
        "Drafts", "Draft", "Entwürfe", "Brouillons", "[Gmail]/Drafts", "[Google Mail]/Drafts", "[Gmail]/Entwürfe",
        "[Google Mail]/Entwürfe", "[Gmail]/Brouillons",
    ),
    "sent": (
        "Sent", "Sent Items", "Sent Messages", "Sent Mail", "Gesendet", "Gesendete Objekte", "Gesendete Elemente",
        "Envoyés", "Éléments envoyés", "Messages envoyés", "[Gmail]/Sent Mail", "[Google Mail]/Sent Mail",
        "[Gmail]/Gesendet", "[Google Mail]/Gesendet", "[Gmail]/Messages envoyés",
    ),
}  # fmt: skip
"""Folder names mail clients use for each role, tried (case-insensitively) when no folder carries its marker."""


@dataclass(frozen=True)
class Namespace:
    """The personal namespace of an account: its prefix and hierarchy separator, and the prefixes of the other
    users' and shared namespaces (a configured path under one of those is taken as it is)."""

    prefix: str = ""
    separator: str = "/"
    others: tuple[str, ...] = ()
    announced: bool = False
    """Whether the server said so (NAMESPACE); else the separator comes from LIST and the prefix is empty."""

    def server_name(self, path: str) -> str:
        """The server's name for a configured ``path`` (``Support/Defects`` -> ``INBOX.Support.Defects``)."""
        if path.upper() == INBOX:
            return INBOX
        spelled = path.replace("/", self.separator)
        if self._prefixed(spelled):
            return spelled
        return self.prefix + spelled

    def configured_path(self, name: str) -> str:
        """A server's folder name as the configuration would write it (the inverse of ``server_name``)."""
        if name.upper() == INBOX:
            return INBOX
        if self.prefix and name.upper().startswith(self.prefix.upper()):
            name = name[len(self.prefix) :]
        return name.replace(self.separator, "/") if self.separator else name

    def _prefixed(self, spelled: str) -> bool:
        upper = spelled.upper()
        prefixes = [p for p in (self.prefix, *self.others) if p]
        return any(upper.startswith(p.upper()) or upper == p.upper().rstrip(self.separator) for p in prefixes)


@dataclass(frozen=True)
class Listed:
    """One folder of a LIST answer: its name on the server and its attributes, lower-cased (RFC 3501 makes them
    case-insensitive, and Cyrus sends ``\\drafts``)."""

    name: str
    attributes: frozenset[str]

    @property
    def selectable(self) -> bool:
        return not self.attributes & {"\\noselect", "\\nonexistent"}


@dataclass(frozen=True)
class Found:
    """The folder chosen for a role, and how: ``configured``, ``marked \\Drafts`` (SPECIAL-USE) or ``named``."""

    role: str
    name: str
    how: str


def listed(entries: Iterable[tuple[Iterable[str], str]]) -> list[Listed]:
    """LIST answers, (attributes, name) pairs, as Listed folders."""
    return [Listed(name, frozenset(a.lower() for a in attributes)) for attributes, name in entries]


def special_folder(role: str, folders: Iterable[Listed], namespace: Namespace) -> Found | None:
    """The folder for ``role`` ('drafts' or 'sent'): the one marked with its SPECIAL-USE attribute (RFC 6154),
    else the first of the usual names found in the personal namespace, else None."""
    folders = [folder for folder in folders if folder.selectable]
    marker = f"\\{role}"
    for folder in folders:
        if marker in folder.attributes:
            return Found(role, folder.name, f"marked \\{role.capitalize()}")
    by_path = {_fold(namespace.configured_path(folder.name)): folder.name for folder in folders}
    for name in USUAL_NAMES[role]:
        found = by_path.get(_fold(name))
        if found is not None:
            return Found(role, found, "by its name: the server marks none")
    return None


def _fold(name: str) -> str:
    """A name compared case-blind and in one Unicode form ("Entwürfe" written either way matches)."""
    return unicodedata.normalize("NFC", name).casefold()
