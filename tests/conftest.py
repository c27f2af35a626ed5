from __future__ import annotations

import atexit
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import pytest

from mailtriage.classify import save, seed_examples, train
from mailtriage.store import Store
from tests import browser as headless
from tests import courier as courier_server
from tests import cyrus as cyrus_server
from tests import postgres as postgres_server
from tests.courier import CourierServer
from tests.cyrus import CyrusServer
from tests.dovecot import Account, DovecotServer, start_server, unavailable_reason
from tests.postgres import PostgresServer

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
IN_CI = os.environ.get("CI", "").lower() == "true"
# The default model is kept in the user's cache folder: tests (and the daemons they start) use one of their own,
# one per process, so each pytest-xdist worker builds its own; removed when the process ends.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="mailtriage-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)


def skip_or_fail(reason: str | None) -> None:
    """Skip where a test server cannot run; under CI=true that is a failure."""
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)


class TestServer(Protocol):
    directory: Path

    def stop(self) -> None: ...


S = TypeVar("S", bound=TestServer)


def serve(unavailable: Callable[[], str | None], start: Callable[[], S]) -> Iterator[S]:
    """A private server for the whole run: skipped where it cannot run (a failure under CI=true), stopped and
    removed at the end."""
    skip_or_fail(unavailable())
    server = start()
    yield server
    server.stop()
    shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """A private Dovecot for the whole run; skipped where it cannot run, a failure under CI=true."""
    yield from serve(unavailable_reason, start_server)


@pytest.fixture
def account(dovecot: DovecotServer) -> Account:
    """A fresh IMAP user with an empty INBOX, Drafts and Sent."""
    return dovecot.new_account()


@pytest.fixture(scope="session")
def cyrus() -> Iterator[CyrusServer]:
    """A private Cyrus IMAP 3.6 for the whole run (namespace INBOX., lower-case SPECIAL-USE markers)."""
    yield from serve(cyrus_server.unavailable_reason, cyrus_server.start_server)


@pytest.fixture
def cyrus_account(cyrus: CyrusServer) -> Account:
    """A fresh Cyrus user with an empty INBOX, INBOX.Drafts (\\drafts), INBOX.Sent (\\sent) and INBOX.Trash."""
    return cyrus.new_account()


@pytest.fixture(scope="session")
def courier() -> Iterator[CourierServer]:
    """A private Courier-IMAP 5 for the whole run (namespace INBOX., no SPECIAL-USE, no MOVE)."""
    yield from serve(courier_server.unavailable_reason, courier_server.start_server)


@pytest.fixture
def courier_account(courier: CourierServer) -> Account:
    """A fresh Courier user with an empty INBOX, INBOX.Drafts and INBOX.Sent."""
    return courier.new_account()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL for the whole run (a cluster of its own, not the system's); skipped where it cannot run,
    a failure under CI=true."""
    yield from serve(postgres_server.unavailable_reason, postgres_server.start_server)


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """The URL of a fresh, empty database on the private PostgreSQL, owned by the ordinary role it names."""
    return postgres.new_database()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """A fresh headless Chromium (Selenium's WebDriver, 1280x900) with a profile of its own, quit when the test ends;
    skipped where Chromium, ChromeDriver or selenium is missing, a failure under CI=true."""
    skip_or_fail(headless.unavailable_reason())
    with headless.open_browser(tmp_path / "chromium") as driver:
        yield driver


@pytest.fixture(autouse=True)
def _umask_restored() -> Iterator[None]:
    """The CLI tightens the process umask (what it creates is private); tests run it in-process, so each test
    gives back the umask it found, for the servers that read what the next test writes."""
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)


@pytest.fixture(scope="session")
def seed_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model, trained once per run on the shipped seed mails. Under pytest-xdist the first worker
    that needs it trains it while the others wait, and all of them share the file: tests read it, never write it."""
    run = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        run = run.parent  # the run's folder, above each worker's own
    folder = run / "seed-model"
    with (run / "seed-model.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not folder.exists():
            partial = run / f"seed-model.{os.getpid()}"
            partial.mkdir()
            save(train(seed_examples(), folds=3, sources=["seed"]), partial / "default.npz")
            partial.rename(folder)  # the model and its metadata appear together
    return folder / "default.npz"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store: each test that takes one runs on SQLite and on PostgreSQL (a database of its own)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres").new_database()
    opened = Store(url)
    yield opened
    opened.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """A fresh SQLite store, for what only SQLite does (a file locked or made read-only)."""
    opened = Store(f"sqlite:///{tmp_path / 'store.db'}")
    yield opened
    opened.close()
