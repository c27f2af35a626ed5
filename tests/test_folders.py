"""Folder names through the server's namespace, and special folders by marker or by name: pure logic."""

from __future__ import annotations

import pytest

from mailtriage.mailbox.folders import Found, Listed, Namespace, listed, special_folder
from mailtriage.mailbox.imap_wire import copyuid

DOVECOT = Namespace("", "/", announced=True)
CYRUS = Namespace("INBOX.", ".", ("user.", ""), announced=True)
GMAIL = Namespace("", "/", announced=True)


@pytest.mark.parametrize(
    "namespace,path,expected",
    [
        (DOVECOT, "Support/Defects", "Support/Defects"),
        (CYRUS, "Support/Defects", "INBOX.Support.Defects"),
        (CYRUS, "INBOX", "INBOX"),
        (CYRUS, "inbox", "INBOX"),
        (CYRUS, "INBOX/Support/Defects", "INBOX.Support.Defects"),
        (CYRUS, "INBOX.Support.Defects", "INBOX.Support.Defects"),
        (CYRUS, "Drafts", "INBOX.Drafts"),
        (CYRUS, "user/anna/Support", "user.anna.Support"),
        (GMAIL, "[Gmail]/Drafts", "[Gmail]/Drafts"),
        (Namespace("", "."), "Support/Billing", "Support.Billing"),
    ],
)
def test_configured_paths_are_put_under_the_personal_namespace(namespace: Namespace, path: str, expected: str) -> None:
    assert namespace.server_name(path) == expected


@pytest.mark.parametrize("path", ["Support/Defects", "Drafts", "INBOX", "Entwürfe"])
def test_a_server_name_reads_back_as_the_configured_path(path: str) -> None:
    assert CYRUS.configured_path(CYRUS.server_name(path)) == path
    assert DOVECOT.configured_path(DOVECOT.server_name(path)) == path


def folders(*entries: tuple[str, tuple[str, ...]]) -> list[Listed]:
    return listed((attributes, name) for name, attributes in entries)


def test_special_use_markers_are_matched_whatever_their_case() -> None:
    found = folders(("INBOX", ()), ("INBOX.Entwürfe", ("\\HasNoChildren", "\\drafts")), ("INBOX.Drafts", ()))
    assert special_folder("drafts", found, CYRUS) == Found("drafts", "INBOX.Entwürfe", "marked \\Drafts")


def test_without_markers_the_usual_names_are_tried_in_the_personal_namespace() -> None:
    found = folders(("INBOX", ()), ("INBOX.Gesendete Objekte", ()), ("INBOX.brouillons", ()))
    assert special_folder("sent", found, CYRUS) == Found(
        "sent", "INBOX.Gesendete Objekte", "by its name: the server marks none"
    )
    assert special_folder("drafts", found, CYRUS).name == "INBOX.brouillons"  # type: ignore[union-attr]


def test_gmail_folders_are_found_under_their_prefix() -> None:
    found = folders(("INBOX", ()), ("[Gmail]", ("\\Noselect",)), ("[Gmail]/Drafts", ()), ("[Gmail]/Sent Mail", ()))
    assert special_folder("drafts", found, GMAIL).name == "[Gmail]/Drafts"  # type: ignore[union-attr]
    assert special_folder("sent", found, GMAIL).name == "[Gmail]/Sent Mail"  # type: ignore[union-attr]


def test_a_folder_that_cannot_be_selected_is_never_chosen() -> None:
    found = folders(("Drafts", ("\\Noselect", "\\Drafts")))
    assert special_folder("drafts", found, DOVECOT) is None


def test_no_folder_for_a_role_is_none() -> None:
    assert special_folder("sent", folders(("INBOX", ()), ("Archive", ())), DOVECOT) is None


@pytest.mark.parametrize(
    "answer,expected",
    [
        (b"[COPYUID 1700000000 7 12] Copy completed.", {7: 12}),
        (b"[COPYUID 38505 304,319:320 3956:3958] Done", {304: 3956, 319: 3957, 320: 3958}),
        (b"[copyuid 1 5:3 10:12] ok", {5: 10, 4: 11, 3: 12}),
        (b"Copy completed.", None),
        (b"[COPYUID 1 1:3 9] mismatched", None),
    ],
)
def test_a_copyuid_answer_pairs_each_source_uid_with_its_copy(answer: bytes, expected: dict[int, int] | None) -> None:
    assert copyuid(answer) == expected
