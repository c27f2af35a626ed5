"""Intake against a real Dovecot: every test has its own fresh IMAP user."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailtriage.cli import main
from mailtriage.errors import AuthenticationFailed, MailboxError
from mailtriage.mailbox.imap import ImapMailbox
from mailtriage.pipeline import run_cycle
from mailtriage.scheduler import Daemon
from mailtriage.settings import Auth, ScheduleSettings, Secret, Security
from mailtriage.store import Store
from tests.dovecot import Account, DovecotServer, write_config
from tests.helpers import now, order_mail

pytestmark = pytest.mark.dovecot


def run_once(config: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), "--log-level", "WARNING", "run", "--once", *extra])
    return result.exit_code, result.output


def test_run_once_records_300_messages_then_none_and_sets_no_seen_flag(
    seed_model: Path, account: Account, tmp_path: Path
) -> None:
    account.append_many(order_mail(n) for n in range(300))
    config = write_config(tmp_path / "c.toml", [account], tmp_path / "store.db", seed_model, intake={"batch_size": 50})
    assert run_once(config) == (0, f"{account.username}: 300 new, 0 skipped, 0 failed\n")
    assert run_once(config) == (0, f"{account.username}: 0 new, 0 skipped, 0 failed\n")
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    assert store.messages.count() == 300 and len({r.message_id for r in store.messages.all()}) == 300
    flags = account.flags()
    assert len(flags) == 300 and not any(b"\\Seen" in f for f in flags.values())


def test_run_once_json_reports_each_mailbox(seed_model: Path, account: Account, tmp_path: Path) -> None:
    account.append_many([order_mail(1)])
    config = write_config(tmp_path / "c.toml", [account], tmp_path / "store.db", seed_model)
    code, output = run_once(config, "--json")
    [report] = json.loads(output)
    assert code == 0 and (report["mailbox"], report["new"], report["error"]) == (account.username, 1, None)
    assert report["reasons"] == []


def test_mail_arriving_between_two_cycles_on_one_connection_is_found(account: Account, store: Store) -> None:
    mailbox = ImapMailbox(account.settings())
    account.append_many([order_mail(1)])
    assert run_cycle(mailbox, store, now=now).new == 1
    account.append_many([order_mail(2)])  # right after a fetch
    assert run_cycle(mailbox, store, now=now).new == 1
    assert run_cycle(mailbox, store, now=now).new == 0
    account.append_many([order_mail(3)])  # after an idle cycle
    assert run_cycle(mailbox, store, now=now).new == 1
    assert [run_cycle(mailbox, store, now=now).new for _ in range(2)] == [0, 0]


def test_mail_already_read_by_another_client_is_still_processed(account: Account, store: Store) -> None:
    account.append_many([order_mail(1)], flags=["\\Seen"])
    assert run_cycle(ImapMailbox(account.settings()), store, now=now).new == 1


def test_mail_that_arrived_during_downtime_is_processed_however_old(account: Account, store: Store) -> None:
    account.append_many([order_mail(1)])
    run_cycle(ImapMailbox(account.settings()), store, now=now)
    long_ago = datetime(2019, 3, 1, 12, 0, tzinfo=UTC)
    account.append_many((order_mail(n) for n in range(2, 12)), date=long_ago)
    restarted = ImapMailbox(account.settings())
    assert run_cycle(restarted, store, now=now).new == 10
    assert min(r.received_at for r in store.messages.all() if r.received_at) == long_ago


def test_a_changed_uidvalidity_on_the_server_reprocesses_nothing(
    dovecot: DovecotServer, account: Account, store: Store
) -> None:
    account.append_many(order_mail(n) for n in range(5))
    mailbox = ImapMailbox(account.settings())
    run_cycle(mailbox, store, now=now)
    mailbox.close()
    subprocess.run(
        ["doveadm", "-c", str(dovecot.config), "mailbox", "update", "-u", account.username, "--uid-validity", "4242",
         "INBOX"],
        check=True,
    )  # fmt: skip
    report = run_cycle(mailbox, store, now=now)
    assert (report.new, report.skipped) == (0, 5)
    assert {r.uidvalidity for r in store.messages.all()} == {4242}


def test_tls_and_starttls_connect_to_a_server_whose_certificate_is_trusted(
    dovecot: DovecotServer, account: Account
) -> None:
    tls = ImapMailbox(account.settings(security=Security.TLS, port=dovecot.tls_port, ca_file=dovecot.certificate))
    starttls = ImapMailbox(account.settings(security=Security.STARTTLS, ca_file=dovecot.certificate))
    assert tls.status("INBOX").messages == 0 and starttls.status("INBOX").messages == 0


def test_an_untrusted_certificate_is_refused_with_a_clear_error(dovecot: DovecotServer, account: Account) -> None:
    mailbox = ImapMailbox(account.settings(security=Security.TLS, port=dovecot.tls_port))
    with pytest.raises(MailboxError, match="CERTIFICATE_VERIFY_FAILED"):
        mailbox.status("INBOX")


def test_drafts_and_sent_are_found_by_special_use(account: Account) -> None:
    mailbox = ImapMailbox(account.settings())
    assert (mailbox.special_folder("drafts"), mailbox.special_folder("sent")) == ("Drafts", "Sent")
    configured = ImapMailbox(account.settings(folders={"drafts": "Brouillons"}))
    assert configured.special_folder("drafts") == "Brouillons"


def test_xoauth2_logs_in_with_a_token_from_a_command_and_an_expired_token_is_refused(
    dovecot: DovecotServer, account: Account, store: Store, tmp_path: Path
) -> None:
    dovecot.tokens["fresh-token"] = account.username
    account.append_many([order_mail(1)])
    good = ImapMailbox(account.settings(auth=Auth.XOAUTH2, secret=Secret(command="echo fresh-token")))
    assert run_cycle(good, store, now=now).new == 1
    expired = ImapMailbox(account.settings(auth=Auth.XOAUTH2, secret=Secret(command="echo expired-token")))
    with pytest.raises(AuthenticationFailed, match="login refused"):
        expired.status("INBOX")


def test_one_mailbox_with_a_wrong_password_does_not_stop_the_others(
    seed_model: Path, dovecot: DovecotServer, tmp_path: Path
) -> None:
    accounts = [dovecot.new_account() for _ in range(3)]
    for account in accounts:
        account.append_many(order_mail(n, tag=account.username) for n in range(4))
    accounts[1].secret_file.write_text("not-the-password\n")
    config = write_config(tmp_path / "c.toml", accounts, tmp_path / "store.db", seed_model)
    code, output = run_once(config)
    lines = output.splitlines()
    assert code == 3
    assert lines[0] == f"{accounts[0].username}: 4 new, 0 skipped, 0 failed"
    assert lines[1].startswith(f"{accounts[1].username}: FAILED: ") and "login refused" in lines[1]
    assert lines[2] == f"{accounts[2].username}: 4 new, 0 skipped, 0 failed"


def test_the_daemon_reconnects_after_the_server_restarts(
    dovecot: DovecotServer, account: Account, store: Store
) -> None:
    schedule = ScheduleSettings(backoff_initial=0.1)
    daemon = Daemon([ImapMailbox(account.settings())], store, schedule)
    account.append_many([order_mail(1)])
    assert daemon.cycle(daemon.mailboxes[0]).new == 1
    dovecot.restart()
    dovecot.kick(account.username)  # a restart leaves running sessions alone; a crash would not
    account.append_many([order_mail(2)])
    reports = [daemon.cycle(daemon.mailboxes[0]) for _ in range(2)]
    assert sum(r.new for r in reports) == 1 and reports[-1].ok
    daemon.close()


def test_idle_reports_new_mail_within_a_second(account: Account) -> None:
    listener = ImapMailbox(account.settings())
    assert listener.can_wait()
    stop = threading.Event()
    woke: list[float] = []
    thread = threading.Thread(target=lambda: woke.append(listener.wait_for_mail(30, stop) and time.monotonic()))
    thread.start()
    time.sleep(0.5)  # let IDLE begin
    sent = time.monotonic()
    account.append_many([order_mail(1)])
    thread.join(timeout=10)
    stop.set()
    assert woke and woke[0] and woke[0] - sent < 1.0
    listener.close()


def test_the_running_daemon_triages_mail_pushed_by_idle_long_before_its_next_poll(
    account: Account, tmp_path: Path
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    schedule = ScheduleSettings(poll_interval=3600, idle=True)
    daemon = Daemon([ImapMailbox(account.settings())], store, schedule)
    runner = threading.Thread(target=daemon.run_forever, kwargs={"install_signals": False})
    runner.start()
    try:
        time.sleep(3.5)  # first poll done, IDLE listening (and, with a short timeout, re-issued a few times)
        account.append_many([order_mail(1)])
        deadline = time.monotonic() + 5
        while store.messages.count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.messages.count() == 1
    finally:
        daemon.stop.set()
        runner.join(timeout=15)
    assert not runner.is_alive()
