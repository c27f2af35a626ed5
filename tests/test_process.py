"""The daemon as a real process: killed with SIGKILL mid-cycle and restarted, stopped with SIGTERM."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailtriage.demo import build_maildir
from mailtriage.mailbox.maildir import UID_FILE
from mailtriage.settings import MailboxSettings
from tests.dovecot import Account, write_config
from tests.helpers import order_mail

pytestmark = pytest.mark.dovecot


def start(config: Path, *args: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "mailtriage", "--config", str(config), "--log-level", "INFO", "run", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def recorded(database: Path) -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # the schema is not there yet


def kill_when(process: subprocess.Popen[bytes], database: Path, at_least: int) -> None:
    deadline = time.monotonic() + 60
    while recorded(database) < at_least and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_sigkill_at_several_points_of_a_cycle_then_restart_records_every_message_exactly_once(
    seed_model: Path, account: Account, tmp_path: Path
) -> None:
    account.append_many(order_mail(n) for n in range(300))
    database = tmp_path / "store.db"
    config = write_config(tmp_path / "c.toml", [account], database, seed_model, intake={"batch_size": 7})
    killed_at = []
    for threshold in (0, 1, 45, 150, 280):
        process = start(config, "--once")
        kill_when(process, database, threshold)
        killed_at.append(recorded(database))
    print("killed with", killed_at, "recorded")
    assert killed_at == sorted(killed_at) and killed_at[-1] < 300, killed_at  # every kill landed mid-cycle
    finished = start(config, "--once")
    out, _ = finished.communicate(timeout=120)
    assert finished.returncode == 0
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT message_id, uid FROM messages").fetchall()
        audited = db.execute("SELECT count(*) FROM audit_log WHERE action = 'recorded'").fetchone()[0]
    assert len(rows) == 300
    assert len({message_id for message_id, _ in rows}) == 300
    assert sorted(uid for _, uid in rows) == list(range(1, 301))
    assert audited == 300
    assert not any(b"\\Seen" in flags for flags in account.flags().values())


def test_sigterm_stops_the_daemon_cleanly_with_exit_code_0(seed_model: Path, account: Account, tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    build_maildir(maildir)
    local = MailboxSettings(name="local", maildir=maildir)
    config = write_config(
        tmp_path / "c.toml", [account, local], tmp_path / "store.db", seed_model, schedule={"poll_interval": 3600}
    )
    process = start(config)
    deadline = time.monotonic() + 30
    while recorded(tmp_path / "store.db") < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the IDLE listener is up
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=20)
    log = err.decode()
    assert process.returncode == 0, log
    assert "received SIGTERM" in log and log.rstrip().endswith("stopped")
    # What the server offers and which folders it uses, said once at start.
    assert f"mailbox {account.username}: will: drafts folder: Drafts (marked \\Drafts)" in log
    assert log.count("offers MOVE: yes") == 1
    assert "Traceback" not in log
    assert (maildir / UID_FILE).exists()
