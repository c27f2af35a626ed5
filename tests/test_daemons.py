"""Several daemons as real processes sharing one PostgreSQL store and twelve Dovecot mailboxes: the split, and
takeover after one is killed and another cut off from the database, with nothing lost or done twice."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path

import pytest
import sqlalchemy as sa

from mailtriage.draft import ANSWERS_HEADER
from tests.dovecot import Account, DovecotServer, write_config
from tests.helpers import order_mail
from tests.postgres import PostgresServer
from tests.proxy import Proxy
from tests.test_faults import folder_ids

pytestmark = [pytest.mark.dovecot, pytest.mark.postgres]

LEASE, POLL = 6.0, 2.0
"""Short enough for a quick test; the bound on a takeover is LEASE + POLL."""
CONTENDING = ("duplicate key", "UniqueViolation", "database is locked", "deadlock", "could not serialize")
"""What two daemons working one mailbox would log."""


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "mailtriage", "--config", str(config), "--log-level", "INFO", "run"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("wb"))


def wait_for(what: str, done: Callable[[], bool], timeout: float = 90) -> float:
    """Wait until ``done()``; the moment it was (time.time())."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return time.time()
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class StoreView:
    """What the test reads of the shared store, on a connection of its own."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url)

    def rows(self, query: str) -> list[sa.Row[tuple[object, ...]]]:
        """The rows of ``query``; none while the daemons have not made the schema yet."""
        try:
            with self.engine.connect() as db:
                return list(db.execute(sa.text(query)))
        except sa.exc.ProgrammingError:
            return []

    def owners(self) -> Counter[str | None]:
        return Counter(str(row[0]) for row in self.rows("SELECT owner FROM mailbox_leases") if row[0] is not None)

    def recorded_by(self) -> Counter[str]:
        return Counter({str(d): int(n) for d, n in self.rows("SELECT daemon, count(*) FROM messages GROUP BY 1")})

    def settled(self, count: int) -> bool:
        """``count`` messages recorded and none left half done."""
        rows = self.rows("SELECT count(*), count(*) FILTER (WHERE status = 'pending') FROM messages")
        return rows == [(count, 0)]

    def taken_after(self, gone: str, moment: float) -> float | None:
        """When the last of ``gone``'s mailboxes was taken by another daemon (None: not all of them yet)."""
        rows = self.rows("SELECT owner, acquired_at FROM mailbox_leases")
        if any(owner in (gone, None) for owner, _ in rows):
            return None
        return max(at.replace(tzinfo=UTC).timestamp() for _, at in rows if at is not None)


@pytest.fixture
def accounts(dovecot: DovecotServer) -> list[Account]:
    return [dovecot.new_account() for _ in range(12)]


@pytest.fixture
def proxied(postgres: PostgresServer) -> Iterator[Proxy]:
    """A way to the database that the test can cut, as a network failure between one daemon and it does."""
    opened = Proxy(postgres.port)
    yield opened
    opened.close()


def test_three_daemons_share_twelve_mailboxes_and_take_over_from_a_killed_and_a_cut_off_one(
    accounts: list[Account], postgres_url: str, proxied: Proxy, seed_model: Path, tmp_path: Path
) -> None:
    through_proxy = sa.engine.make_url(postgres_url).set(port=proxied.port).render_as_string(hide_password=False)
    names = ["d1", "d2", "d3"]
    configs = {
        name: write_config(
            tmp_path / f"{name}.toml",
            accounts,
            through_proxy if name == "d2" else postgres_url,
            seed_model,
            schedule={"poll_interval": POLL},
            intake={"batch_size": 10},
            cluster={"name": name, "lease_seconds": LEASE},
        )  # fmt: skip
        for name in names
    }
    store = StoreView(postgres_url)
    processes = {name: start(configs[name], tmp_path / f"{name}.log") for name in names}
    try:
        wait_for("an even split", lambda: store.owners() == Counter(d1=4, d2=4, d3=4), timeout=60)

        # Half the mail with the three at work: each triages its third.
        for account in accounts:
            account.append_many(order_mail(n) for n in range(50))
        wait_for("the first 600 mails", lambda: store.settled(600))
        assert store.recorded_by() == Counter(d1=200, d2=200, d3=200)

        # The other half: d1 is killed in the middle of it, then d2 loses the database.
        for account in accounts:
            account.append_many(order_mail(n) for n in range(50, 100))
        wait_for("d1 at work", lambda: store.recorded_by()["d1"] >= 210, timeout=30)
        processes["d1"].send_signal(signal.SIGKILL)
        processes["d1"].wait()
        killed = time.time()
        wait_for("d1's mailboxes taken over", lambda: store.taken_after("d1", killed) is not None)
        assert (store.taken_after("d1", killed) or 0) - killed <= LEASE + POLL
        proxied.close()
        cut = time.time()
        wait_for("d2's mailboxes taken over", lambda: store.taken_after("d2", cut) is not None)
        assert (store.taken_after("d2", cut) or 0) - cut <= LEASE + POLL
        wait_for("all 1200 mails", lambda: store.settled(1200))
        assert store.owners() == Counter(d3=12)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            process.wait(timeout=30)

    records = store.rows("SELECT mailbox, message_id FROM messages")
    assert len(records) == 1200 and len(set(records)) == 1200  # every mail triaged, once
    expected = sorted(f"<m{n}@example.com>" for n in range(100))
    for account in accounts:
        assert folder_ids(account, "Drafts", ANSWERS_HEADER) == expected  # one draft each
    logs = {name: (tmp_path / f"{name}.log").read_text() for name in names}
    for name, log in logs.items():
        assert not [line for line in log.splitlines() if any(word in line for word in CONTENDING)], name
        assert "Traceback" not in log, log
    assert " ERROR " not in logs["d1"] and " ERROR " not in logs["d3"], logs["d3"]
    assert "leases not renewed" in logs["d2"]  # cut off, it said so, and stopped
