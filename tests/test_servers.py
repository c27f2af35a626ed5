"""What the private Cyrus and Courier servers are, pinned: the fixtures' own checks.

mailtriage must cope with each as it really answers; these tests say what that is, so a change of server version
or configuration shows here first, and not as a puzzling failure elsewhere.
"""

from __future__ import annotations

import imaplib
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import imapclient
import pytest

from tests.courier import CourierServer
from tests.cyrus import CyrusServer
from tests.dovecot import Account

LETTER = b"From: c@example.com\r\nTo: support@example.com\r\nSubject: Hello\r\n\r\nMy order is late.\r\n"


def folders(account: Account) -> dict[str, tuple[bytes, ...]]:
    """Each folder's LIST flags, by name (decoded from modified UTF-7)."""
    client = account.client()
    try:
        return {name: flags for flags, _delimiter, name in client.list_folders()}
    finally:
        client.logout()


@contextmanager
def raw(account: Account) -> Iterator[imaplib.IMAP4]:
    """A logged-in imaplib connection, for commands imapclient does not offer and answers it does not keep."""
    imap = imaplib.IMAP4("127.0.0.1", account.server.port, timeout=10)
    try:
        imap.login(account.username, account.password)
        yield imap
    finally:
        imap.logout()


def idle_wakes_on_append(account: Account, within: float = 2.0) -> float:
    """Seconds from another connection's APPEND until an IDLE on INBOX hears of it; fails after ``within``."""
    watcher = account.client()
    writer = account.client()
    try:
        watcher.select_folder("INBOX")
        watcher.idle()
        time.sleep(0.2)  # IDLE is in force once the server has answered "+ idling"; give it a moment all the same
        started = time.monotonic()
        writer.append("INBOX", LETTER)
        responses = watcher.idle_check(timeout=within)
        elapsed = time.monotonic() - started
        watcher.idle_done()
    finally:
        writer.logout()
        watcher.logout()
    assert any(kind == b"EXISTS" for _n, kind, *_ in responses), f"no EXISTS within {within} s: {responses!r}"
    return elapsed


# Cyrus IMAP 3.6 --------------------------------------------------------------------------------------------------


@pytest.mark.cyrus
class TestCyrus:
    def test_the_personal_namespace_is_inbox_dot(self, cyrus_account: Account) -> None:
        client = cyrus_account.client()
        try:
            namespace = client.namespace()
        finally:
            client.logout()
        assert namespace.personal == (("INBOX.", "."),)
        assert namespace.other == (("user.", "."),)
        assert namespace.shared == (("", "."),)

    def test_drafts_and_sent_are_marked_in_lower_case(self, cyrus_account: Account) -> None:
        listed = folders(cyrus_account)
        assert set(listed) == {"INBOX", "INBOX.Drafts", "INBOX.Sent", "INBOX.Trash"}
        assert listed["INBOX.Drafts"] == (b"\\HasNoChildren", b"\\drafts")
        assert listed["INBOX.Sent"] == (b"\\HasNoChildren", b"\\sent")
        assert listed["INBOX.Trash"] == (b"\\HasNoChildren",)

    def test_a_marker_a_client_sets_is_answered_capitalised(self, cyrus_account: Account) -> None:
        with raw(cyrus_account) as imap:
            typ, _data = imap.xatom("CREATE", '"INBOX.Old"', "(USE (\\archive))")
        assert typ == "OK"
        assert folders(cyrus_account)["INBOX.Old"] == (b"\\HasNoChildren", b"\\Archive")

    def test_a_drafts_folder_named_entwuerfe_is_found_by_its_marker_alone(self, cyrus: CyrusServer) -> None:
        account = cyrus.new_account(drafts="Entwürfe", sent="Gesendete Objekte")
        listed = folders(account)
        assert [name for name, flags in listed.items() if b"\\drafts" in flags] == ["INBOX.Entwürfe"]
        assert [name for name, flags in listed.items() if b"\\sent" in flags] == ["INBOX.Gesendete Objekte"]
        assert "INBOX.Drafts" not in listed and "INBOX.Sent" not in listed
        client = account.client()
        try:
            client.folder_encode = False
            raw = {name for _flags, _delimiter, name in client.list_folders()}
        finally:
            client.logout()
        assert b"INBOX.Entw&APw-rfe" in raw  # on the wire: modified UTF-7

    def test_capabilities_include_move_uidplus_special_use_and_idle(self, cyrus_account: Account) -> None:
        client = cyrus_account.client()
        try:
            capabilities = set(client.capabilities())
        finally:
            client.logout()
        assert {b"MOVE", b"UIDPLUS", b"SPECIAL-USE", b"IDLE", b"NAMESPACE", b"CONDSTORE"} <= capabilities

    def test_move_answers_copyuid(self, cyrus_account: Account) -> None:
        cyrus_account.append_many([LETTER])
        with raw(cyrus_account) as imap:
            imap.select("INBOX")
            typ, _data = imap.uid("MOVE", "1", "INBOX.Drafts")
            _name, answers = imap.response("OK")  # RFC 6851: COPYUID comes untagged, before the EXPUNGE
        assert typ == "OK"
        assert any(re.match(rb"\[COPYUID \d+ 1 1\]", answer or b"") for answer in answers), answers
        assert cyrus_account.flags("INBOX") == {}
        assert len(cyrus_account.flags("INBOX.Drafts")) == 1

    def test_idle_notices_an_append_from_another_connection_at_once(self, cyrus_account: Account) -> None:
        # idled tells imapd at once (some 50 ms here); without idled Cyrus would look every 60 s.
        assert idle_wakes_on_append(cyrus_account, within=2.0) < 2.0

    def test_settings_point_at_the_server(self, cyrus: CyrusServer, cyrus_account: Account) -> None:
        settings = cyrus_account.settings()
        assert (settings.host, settings.port, settings.username) == ("127.0.0.1", cyrus.port, cyrus_account.username)

    def test_a_restart_drops_connections_and_keeps_mail(self, cyrus: CyrusServer, cyrus_account: Account) -> None:
        cyrus_account.append_many([LETTER])
        client = cyrus_account.client()
        cyrus.restart()
        try:
            with pytest.raises((imapclient.exceptions.IMAPClientError, OSError)):
                client.noop()
        finally:
            client.shutdown()
        assert len(cyrus_account.flags()) == 1


# Courier-IMAP 5 --------------------------------------------------------------------------------------------------


@pytest.mark.courier
class TestCourier:
    def test_the_personal_namespace_is_inbox_dot(self, courier_account: Account) -> None:
        client = courier_account.client()
        try:
            namespace = client.namespace()
        finally:
            client.logout()
        assert namespace.personal == (("INBOX.", "."),)
        assert namespace.other is None

    def test_drafts_and_sent_are_plain_folders_under_inbox(self, courier_account: Account) -> None:
        listed = folders(courier_account)
        assert set(listed) == {"INBOX", "INBOX.Drafts", "INBOX.Sent"}
        assert listed["INBOX.Drafts"] == (b"\\HasNoChildren",)
        assert listed["INBOX.Sent"] == (b"\\HasNoChildren",)

    def test_capabilities_have_uidplus_and_idle_but_no_move_nor_special_use(self, courier_account: Account) -> None:
        client = courier_account.client()
        try:
            capabilities = set(client.capabilities())
        finally:
            client.logout()
        assert {b"UIDPLUS", b"IDLE", b"NAMESPACE"} <= capabilities
        assert not capabilities & {b"MOVE", b"SPECIAL-USE", b"CONDSTORE"}

    def test_copy_answers_copyuid_and_uid_expunge_removes_only_that_message(self, courier_account: Account) -> None:
        courier_account.append_many([LETTER, LETTER], flags=["\\Deleted"])
        with raw(courier_account) as imap:
            imap.select("INBOX")
            typ, answer = imap.copy("1", "INBOX.Drafts")  # message 1 is UID 1 in a fresh folder
            expunged, _data = imap.uid("EXPUNGE", "1")  # message 2 is \Deleted too, and must stay
        assert typ == "OK"
        assert re.match(rb"\[COPYUID \d+ 1 1\] ", answer[0]), answer  # in the tagged OK, not untagged
        assert expunged == "OK"
        assert list(courier_account.flags("INBOX")) == [2]
        assert len(courier_account.flags("INBOX.Drafts")) == 1

    def test_imapclient_uid_copy_loses_the_tagged_copyuid(self, courier_account: Account) -> None:
        """imapclient's copy() is a UID COPY, and imaplib's uid() returns untagged answers only: Courier's (and
        Dovecot's) COPYUID comes in the tagged OK, so copy() returns None. Read it some other way."""
        courier_account.append_many([LETTER])
        client = courier_account.client()
        try:
            client.select_folder("INBOX")
            assert client.copy(client.search("ALL"), "INBOX.Drafts") is None
        finally:
            client.logout()
        assert len(courier_account.flags("INBOX.Drafts")) == 1

    def test_idle_notices_an_append_from_another_connection_at_once(self, courier_account: Account) -> None:
        # Through gamin it takes 0.8 to 1 s here; without IMAP_ENHANCEDIDLE Courier would look every 60 s.
        assert idle_wakes_on_append(courier_account, within=3.0) < 3.0

    def test_two_accounts_are_separate(self, courier: CourierServer) -> None:
        first, second = courier.new_account(), courier.new_account()
        first.append_many([LETTER])
        assert len(first.flags()) == 1
        assert second.flags() == {}
        client = imapclient.IMAPClient("127.0.0.1", port=courier.port, ssl=False, timeout=10)
        try:
            with pytest.raises(imapclient.exceptions.LoginError):
                client.login(second.username, first.password)
        finally:
            client.shutdown()

    def test_a_drafts_folder_may_have_a_non_ascii_name(self, courier: CourierServer) -> None:
        account = courier.new_account(drafts="Entwürfe")
        assert set(folders(account)) == {"INBOX", "INBOX.Entwürfe", "INBOX.Sent"}

    def test_a_restart_drops_connections_and_keeps_mail(self, courier: CourierServer, courier_account: Account) -> None:
        courier_account.append_many([LETTER])
        client = courier_account.client()
        courier.restart()
        try:
            with pytest.raises((imapclient.exceptions.IMAPClientError, OSError)):
                client.noop()
        finally:
            client.shutdown()
        assert len(courier_account.flags()) == 1
