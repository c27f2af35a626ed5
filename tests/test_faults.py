"""Faults against a real Dovecot, through a proxy that cuts connections at chosen points of a command (as a server
restart or a network drop does), and a store that is locked or full. After each: nothing lost, nothing processed
twice, no duplicate draft, the other mailboxes unaffected, and one clear log line saying what failed and what the
daemon will do."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mailtriage.draft import ANSWERS_HEADER
from mailtriage.errors import MailboxError
from mailtriage.mailbox.imap import ImapMailbox
from mailtriage.scheduler import Daemon
from mailtriage.settings import (
    Auth,
    ClassifierSettings,
    MailboxSettings,
    ScheduleSettings,
    Secret,
    Settings,
    StoreSettings,
)
from mailtriage.store import Status, Store
from mailtriage.store.database import TABLES
from mailtriage.wiring import daemon_from_settings
from tests.courier import CourierServer
from tests.dovecot import Account, DovecotServer, free_port, write_config
from tests.helpers import order_mail
from tests.proxy import Proxy, When
from tests.test_process import kill_when, recorded, start
from tests.test_routing_imap import FRENCH_RETURN
from tests.test_routing_imap import settings_for as routed_settings

pytestmark = pytest.mark.dovecot


def return_request(number: int, padding: int = 0) -> bytes:
    """A return request (routed to Support/Returns with a draft), different each time; ``padding`` lines more."""
    data = FRENCH_RETURN.replace(b"<retour-1@example.org>", f"<retour-{number}@example.org>".encode()).replace(
        b"A-10487", f"A-{20000 + number}".encode()
    )
    return data + b"Le colis est encore dans son emballage d'origine, avec la notice et le ticket.\r\n" * padding


@pytest.fixture
def proxy(dovecot: DovecotServer) -> Iterator[Proxy]:
    opened = Proxy(dovecot.port)
    yield opened
    opened.close()


def settings_through(account: Account, store: Store, model: Path, port: int | None = None, **schedule: Any) -> Settings:
    base = routed_settings(account)
    mailbox = base.mailboxes[0].model_copy(update={"port": port} if port else {})
    return base.model_copy(
        update={
            "mailboxes": (mailbox,),
            "store": StoreSettings(url=store.url, busy_timeout=0.3),
            "classifier": ClassifierSettings(model=model),
            "schedule": ScheduleSettings(backoff_initial=0.2, backoff_max=1, **schedule),
        }
    )


def folder_ids(account: Account, folder: str, header: str = "Message-ID") -> list[str]:
    """The values of ``header`` of every message in ``folder`` (the server's own separator)."""
    client = account.client()
    try:
        if not client.folder_exists(folder):
            return []
        client.select_folder(folder, readonly=True)
        found = client.fetch(client.search("ALL"), [f"BODY.PEEK[HEADER.FIELDS ({header})]"])
        values = []
        for item in found.values():
            raw = next(v for k, v in item.items() if k.startswith(b"BODY[HEADER"))
            values.append(raw.decode().split(":", 1)[1].strip() if b":" in raw else "")
        return sorted(values)
    finally:
        client.logout()


def assert_each_processed_once(account: Account, store: Store, count: int, prefix: str = "") -> None:
    """Every message recorded once and routed, in its folder, with one draft each; none left in the inbox.
    ``prefix``: the server's personal namespace (``INBOX.`` on Courier)."""
    expected = sorted(f"<retour-{n}@example.org>" for n in range(count))
    records = store.messages.all()
    assert sorted(r.message_id for r in records) == expected
    assert {r.status for r in records} == {Status.ROUTED}
    assert folder_ids(account, f"{prefix}Support.Returns") == expected
    assert folder_ids(account, "INBOX") == []
    assert folder_ids(account, f"{prefix}Drafts", ANSWERS_HEADER) == expected
    for record in records:  # appended, or found already there after a cut that hid the append
        assert len(store.audit.events(record.id, "draft-appended") + store.audit.events(record.id, "draft-exists")) >= 1


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    "pattern,when",
    [
        (b"BODY.PEEK[]", "during"),  # the server restarted while sending the messages
        (b"APPEND", "before"),  # ... before the draft was appended
        (b"APPEND", "after"),  # ... after the draft was appended, before mailtriage heard so
        (b"UID MOVE", "before"),
        (b"UID MOVE", "after"),  # the message was moved, mailtriage never heard
        (b"UID STORE", "after"),
    ],
)
def test_a_connection_cut_at_any_point_of_a_cycle_loses_nothing_and_drafts_once(
    account: Account,
    store: Store,
    seed_model: Path,
    proxy: Proxy,
    caplog: pytest.LogCaptureFixture,
    pattern: bytes,
    when: When,
) -> None:
    account.append_many(return_request(n) for n in range(3))
    daemon = daemon_from_settings(settings_through(account, store, seed_model, proxy.port))
    cut = proxy.cut_at(pattern, when)
    with caplog.at_level(logging.INFO):
        first = daemon.cycle(daemon.mailboxes[0])
    assert cut.is_set() and not first.ok
    [line] = errors(caplog)
    assert account.username in line and "retrying it in" in line and "finished at the next cycle" in line
    second = daemon.cycle(daemon.mailboxes[0])
    assert second.ok, second.error
    daemon.close()
    assert_each_processed_once(account, store, 3)


@pytest.fixture
def courier_proxy(courier: CourierServer) -> Iterator[Proxy]:
    opened = Proxy(courier.port)
    yield opened
    opened.close()


@pytest.mark.courier
@pytest.mark.parametrize(
    "pattern,when",
    [
        (b"UID COPY", "before"),
        (b"UID COPY", "after"),  # copied, and mailtriage never heard: the next cycle must not copy again
        (b"(\\Deleted)", "after"),
        (b"UID EXPUNGE", "before"),  # copied and marked, not expunged yet
        (b"UID EXPUNGE", "after"),
    ],
)
def test_a_cut_in_the_middle_of_a_move_by_copy_and_expunge_leaves_one_copy_and_no_original(
    courier_account: Account, store: Store, seed_model: Path, courier_proxy: Proxy, pattern: bytes, when: When
) -> None:
    account = courier_account
    account.append_many(return_request(n) for n in range(3))
    daemon = daemon_from_settings(settings_through(account, store, seed_model, courier_proxy.port))
    cut = courier_proxy.cut_at(pattern, when)
    first = daemon.cycle(daemon.mailboxes[0])
    assert cut.is_set() and not first.ok
    second = daemon.cycle(daemon.mailboxes[0])
    assert second.ok, second.error
    daemon.close()
    assert_each_processed_once(account, store, 3, prefix="INBOX.")
    assert not any(b"\\Seen" in flags for flags in account.flags("INBOX.Support.Returns").values())


def test_the_daemon_keeps_triaging_after_its_idle_connection_is_cut(
    account: Account, store: Store, seed_model: Path, proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_through(account, store, seed_model, proxy.port, poll_interval=3600, idle_timeout=60)
    daemon = daemon_from_settings(settings)
    runner = threading.Thread(target=daemon.run_forever, kwargs={"install_signals": False})
    with caplog.at_level(logging.INFO):
        runner.start()
        try:
            wait_for(lambda: any(c.endswith(b" IDLE") for c in proxy.commands), "the daemon to start IDLE")
            proxy.cut_all()
            account.append_many([return_request(0)])
            wait_for(
                lambda: len(store.messages.all()) == 1 and store.messages.all()[0].status == Status.ROUTED,
                "the message",
            )
        finally:
            daemon.stop.set()
            runner.join(timeout=30)
    assert not runner.is_alive()
    warnings = [r.getMessage() for r in caplog.records if "(IDLE)" in r.getMessage()]
    assert warnings and "polling goes on; listening again in" in warnings[0] and "arrived meanwhile" in warnings[0]
    assert_each_processed_once(account, store, 1)


def wait_for(condition: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --- the store ----------------------------------------------------------------------------------------------------


@contextmanager
def locked(store: Store) -> Iterator[None]:
    """Another process holding the whole store: a backup (SQLite), a migration or maintenance (PostgreSQL)."""
    if store.engine.dialect.name == "sqlite":
        holder = sqlite3.connect(str(store.engine.url.database), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    engine = sa.create_engine(store.engine.url)
    with engine.connect() as db:
        db.execute(sa.text(f"LOCK TABLE {', '.join(TABLES)} IN ACCESS EXCLUSIVE MODE"))
        try:
            yield
        finally:
            db.rollback()
    engine.dispose()


def test_a_locked_store_fails_the_cycle_with_one_line_and_the_next_cycle_loses_nothing(
    account: Account, store: Store, seed_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    account.append_many(return_request(n) for n in range(3))
    daemon = daemon_from_settings(settings_through(account, store, seed_model))
    with locked(store), caplog.at_level(logging.INFO):
        first = daemon.cycle(daemon.mailboxes[0])
    assert not first.ok and "database is locked" in str(first.error)
    [line] = errors(caplog)
    assert "database is locked" in line and "nothing is lost" in line and "retrying it in" in line
    assert daemon.cycle(daemon.mailboxes[0]).ok
    daemon.close()
    assert_each_processed_once(account, store, 3)


def test_a_full_disk_under_the_store_fails_the_cycle_and_once_there_is_room_nothing_is_lost(
    account: Account, sqlite_store: Store, seed_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = sqlite_store
    account.append_many(return_request(n, padding=100) for n in range(3))  # rows that need new pages
    daemon = daemon_from_settings(settings_through(account, store, seed_model))
    full = {"on": True}

    @sa.event.listens_for(daemon.store.engine, "connect")
    def _no_room(dbapi_connection: Any, _record: Any) -> None:
        if full["on"]:  # SQLite's page limit answers exactly as a full disk does: SQLITE_FULL
            pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
            dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    daemon.store.engine.dispose()
    with caplog.at_level(logging.INFO):
        first = daemon.cycle(daemon.mailboxes[0])
    assert not first.ok and "full" in str(first.error)
    [line] = errors(caplog)
    assert "database or disk is full" in line and "nothing is lost" in line
    assert store.messages.all() == []
    full["on"] = False  # the daemon's own connections were opened under the limit: it must open fresh ones
    assert daemon.cycle(daemon.mailboxes[0]).ok
    daemon.close()
    assert_each_processed_once(account, store, 3)


def test_a_store_that_was_read_only_when_the_daemon_opened_it_works_again_once_it_is_writable(
    account: Account, sqlite_store: Store, seed_model: Path
) -> None:
    """SQLite opens a file it may not write read-only, and that connection stays so for its life: a daemon
    started during a read-only window kept failing after the permissions came back, until restarted."""
    store = sqlite_store
    account.append_many(return_request(n) for n in range(3))
    read_only = {"on": True}
    daemon = daemon_from_settings(settings_through(account, store, seed_model))

    @sa.event.listens_for(daemon.store.engine, "connect")
    def _opened_read_only(dbapi_connection: Any, _record: Any) -> None:
        if read_only["on"]:
            dbapi_connection.execute("PRAGMA query_only = ON")

    daemon.store.engine.dispose()
    failed = [daemon.cycle(daemon.mailboxes[0]) for _ in range(2)]
    assert all("readonly" in str(report.error) for report in failed)
    read_only["on"] = False
    assert daemon.cycle(daemon.mailboxes[0]).ok
    daemon.close()
    assert_each_processed_once(account, store, 3)


@pytest.mark.parametrize("fault", ["refused at start", "cut later"])
def test_idle_that_fails_comes_back_by_itself_and_says_so_once(
    dovecot: DovecotServer,
    account: Account,
    store: Store,
    seed_model: Path,
    caplog: pytest.LogCaptureFixture,
    fault: str,
) -> None:
    """IDLE that failed once stayed off for the life of the process: latency fell from a second to the poll
    interval without a word. Here nothing listens at first (or the connection is cut), then the server is back:
    a mail that arrives later is triaged by IDLE alone, the poll being an hour away."""
    port = free_port()
    proxy = None if fault == "refused at start" else Proxy(dovecot.port, port=port)
    settings = settings_through(account, store, seed_model, port, poll_interval=3600, idle_timeout=60)
    daemon = daemon_from_settings(settings)
    runner = threading.Thread(target=daemon.run_forever, kwargs={"install_signals": False})
    try:
        with caplog.at_level(logging.DEBUG, logger="mailtriage"):
            runner.start()
            if proxy is None:
                wait_for(lambda: any("(IDLE)" in r.getMessage() for r in caplog.records), "IDLE to fail")
                time.sleep(2)  # several attempts fail meanwhile
                proxy = Proxy(dovecot.port, port=port)
            else:
                wait_for(lambda: any(c.endswith(b" IDLE") for c in proxy.commands), "the daemon to start IDLE")
                proxy.cut_all()
            wait_for(lambda: any("listening again after" in r.getMessage() for r in caplog.records), "IDLE")
            wait_for(lambda: daemon._failures[account.username] == 0 and not daemon._running, "a good cycle")
            account.append_many([return_request(0)])
            wait_for(
                lambda: len(store.messages.all()) == 1 and store.messages.all()[0].status == Status.ROUTED,
                "the message",
                10,
            )
    finally:
        daemon.stop.set()
        runner.join(timeout=30)
        if proxy is not None:
            proxy.close()
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO and r.name == "mailtriage.listener"]
    assert len([line for line in said if "polling goes on" in line]) == 1
    assert len([line for line in said if "listening again after" in line]) == 1


# --- logins -------------------------------------------------------------------------------------------------------


def test_a_failing_token_command_an_expired_token_and_a_wrong_password_each_say_so_and_spare_the_others(
    dovecot: DovecotServer, store: Store, seed_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    accounts = [dovecot.new_account() for _ in range(4)]
    for index, account in enumerate(accounts):
        account.append_many([return_request(index)])
    dovecot.tokens["good-token"] = accounts[0].username
    broken_command = tmp_path / "token.sh"
    broken_command.write_text("#!/bin/sh\necho 'token endpoint: 503' >&2\nexit 1\n")
    broken_command.chmod(0o755)
    accounts[3].secret_file.write_text("not-the-password\n")
    mailboxes = (
        accounts[0].settings(auth=Auth.XOAUTH2, secret=Secret(command="echo good-token")),
        accounts[1].settings(auth=Auth.XOAUTH2, secret=Secret(command=str(broken_command))),
        accounts[2].settings(auth=Auth.XOAUTH2, secret=Secret(command="echo expired-token")),
        accounts[3].settings(),
    )
    settings = routed_settings(accounts[0]).model_copy(
        update={
            "mailboxes": tuple(MailboxSettings.model_validate(m.model_dump()) for m in mailboxes),
            "store": StoreSettings(url=store.url),
            "classifier": ClassifierSettings(model=seed_model),
        }
    )
    daemon: Daemon = daemon_from_settings(settings)
    with caplog.at_level(logging.INFO):
        reports = daemon.run_once()
    assert [r.ok for r in reports] == [True, False, False, False]
    assert [r.message_id for r in store.messages.all()] == ["<retour-0@example.org>"]
    lines = errors(caplog)
    assert len(lines) == 3
    assert accounts[1].username in lines[0] and "cannot get the secret" in lines[0] and "503" in lines[0]
    assert accounts[2].username in lines[1] and "login refused" in lines[1]
    assert accounts[3].username in lines[2] and "login refused" in lines[2]
    assert all("check its username and secret; other mailboxes go on; the next run tries it again" in line
               for line in lines)  # fmt: skip
    assert all("not-the-password" not in line and "expired-token" not in line for line in lines)
    health = store.health.all()
    assert health[accounts[0].username].failures == 0 and health[accounts[0].username].last_ok_at is not None
    assert health[accounts[3].username].failures == 1 and "login refused" in str(
        health[accounts[3].username].last_error
    )


@pytest.mark.parametrize("blanked", [b":*", b"SEARCH UID"], ids=["search-to-star", "every-uid-search"])
def test_a_server_whose_search_answers_nothing_skips_no_mail_across_sigkills_and_restarts(
    blanked: bytes, proxy: Proxy, seed_model: Path, account: Account, tmp_path: Path
) -> None:
    """GNU Mailutils' imap4d answers ``UID SEARCH UID 1:*`` with nothing while UIDNEXT and EXISTS say 30 messages
    wait; ``every-uid-search`` blanks explicit ranges too, so only ``UID FETCH`` lists the mail."""
    proxy.blank_searches(blanked)
    account.append_many(order_mail(n) for n in range(30))
    database = tmp_path / "store.db"
    through = account.settings(name=account.username, port=proxy.port)
    config = write_config(tmp_path / "c.toml", [through], database, seed_model, intake={"batch_size": 7})
    killed_at = []
    for threshold in (1, 12):  # once the first batch of 7 is recorded, then once the second is
        process = start(config, "--once")
        kill_when(process, database, threshold)
        killed_at.append(recorded(database))
    assert killed_at[-1] < 30, killed_at  # the kills landed mid-cycle
    account.append_many(order_mail(n) for n in range(30, 40))  # more mail while the daemon was down
    finished = start(config, "--once")
    out, err = finished.communicate(timeout=120)
    assert finished.returncode == 0, err.decode()
    again = start(config, "--once")
    out_again, _ = again.communicate(timeout=120)
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT message_id, uid FROM messages").fetchall()
    assert sorted(uid for _, uid in rows) == list(range(1, 41))
    assert len({message_id for message_id, _ in rows}) == 40
    assert b"0 new" in out_again
    assert any(blanked in command and b"SEARCH" in command for command in proxy.commands)  # the bug was met
    assert not any(b"\\Seen" in flags for flags in account.flags().values())


def test_a_missing_folder_is_a_clear_error_that_keeps_the_connection(account: Account, proxy: Proxy) -> None:
    mailbox = ImapMailbox(account.settings(port=proxy.port))
    mailbox.status("INBOX")
    with pytest.raises(MailboxError, match="opening Support/Nowhere: the server refused") as raised:
        mailbox.status("Support/Nowhere")
    assert not raised.value.retryable
    mailbox.status("INBOX")
    mailbox.close()
    assert proxy.connections == 1
