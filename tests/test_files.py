"""What mailtriage writes is private to its user whatever the umask, and config check warns about what is not."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailtriage.cli import main
from mailtriage.compliance import Approval, write_approvals
from mailtriage.demo import build_maildir
from mailtriage.store import Store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The usual umask 022, under which files are created readable by everyone."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def test_a_run_under_umask_022_leaves_the_store_its_journal_heartbeat_and_folders_private(
    tmp_path: Path, seed_model: Path
) -> None:
    build_maildir(tmp_path / "Maildir")
    config = tmp_path / "c.toml"
    config.write_text(
        f'[[mailboxes]]\nname = "local"\nmaildir = "{tmp_path / "Maildir"}"\n'
        f'[store]\nurl = "sqlite:///{tmp_path / "var" / "store.db"}"\n[classifier]\nmodel = "{seed_model}"\n'
        f'[health]\nheartbeat_file = "{tmp_path / "run" / "heartbeat.json"}"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "mailtriage", "--config", str(config), "run", "--once"],
        capture_output=True, preexec_fn=lambda: os.umask(0o022), timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    written = [tmp_path / "var" / name for name in ("store.db", "store.db-wal", "store.db-shm")]
    written.append(tmp_path / "run" / "heartbeat.json")
    for path in written:
        if path.exists():  # -wal and -shm may be gone after a clean close
            assert mode(path) == 0o600, path
    assert (tmp_path / "var" / "store.db").exists() and (tmp_path / "run" / "heartbeat.json").exists()
    assert mode(tmp_path / "var") == mode(tmp_path / "run") == 0o700


def test_a_store_opened_as_a_library_is_created_private(tmp_path: Path, loose_umask: None) -> None:
    store = Store(f"sqlite:///{tmp_path / 'new' / 'store.db'}")
    store.close()
    assert mode(tmp_path / "new" / "store.db") == 0o600
    assert mode(tmp_path / "new") == 0o700


def test_a_written_approvals_manifest_is_private_and_an_existing_one_keeps_its_mode(
    tmp_path: Path, loose_umask: None
) -> None:
    approval = Approval("0" * 64, "A. Martin", "2026-11-23", "")
    write_approvals(tmp_path, {"billing/en": approval})
    assert mode(tmp_path / "approvals.json") == 0o600
    (tmp_path / "approvals.json").chmod(0o644)  # shipped in the checkout, readable by the daemon's user
    write_approvals(tmp_path, {"billing/en": approval})
    assert mode(tmp_path / "approvals.json") == 0o644


def test_config_check_warns_about_a_secret_file_and_a_store_folder_others_can_read(tmp_path: Path) -> None:
    secret = tmp_path / "imap.secret"
    secret.write_text("hunter2\n")
    store = tmp_path / "var"
    store.mkdir()
    config = tmp_path / "c.toml"
    config.write_text(
        f'[[mailboxes]]\nname = "support"\nhost = "imap.example.com"\nusername = "u"\n'
        f'secret = {{ file = "{secret}" }}\n[store]\nurl = "sqlite:///{store / "store.db"}"\n'
    )
    secret.chmod(0o644)
    store.chmod(0o755)
    loose = CliRunner().invoke(main, ["config", "check", str(config)])
    assert loose.exit_code == 0
    assert f"the secret file {secret} is readable by its group and others: chmod 600 {secret}" in loose.stderr
    assert f"store: {store} holds customers' mail and is readable by its group and others: chmod 700" in loose.stderr
    assert "hunter2" not in loose.output
    secret.chmod(0o600)
    store.chmod(0o700)
    assert "warning" not in CliRunner().invoke(main, ["config", "check", str(config)]).stderr
