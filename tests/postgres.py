"""A private PostgreSQL server for tests: its own cluster (``initdb`` into a temporary folder), port and socket.

Started once per test run (per pytest-xdist worker) on a free loopback port from Debian's ``postgresql`` package,
the newest version under ``/usr/lib/postgresql``; every test gets a fresh database. ``initdb`` and the server refuse
to run as root, so as root they run as the ``postgres`` user (``runuser``), which owns the cluster's folders.

Who may connect, and how: the store's URLs name ``mailtriage``, an ordinary role (not a superuser, without
CREATEDB) that owns each database it is given, as a deployment's role would, and that logs in over
``127.0.0.1`` with ``trust``. So a URL carries no password (the operations guide keeps a real one out of the URL
too), and a daemon's settings, logs and process list hold no secret; what any local user could reach by it is the
throwaway data of one run. The ``postgres`` superuser logs in only through the Unix socket, with ``trust``, in a
folder only the ``postgres`` user (and root) can enter: a superuser can run programs as the ``postgres`` user,
which is not for every local user to do. Durability is off (``fsync``, ``synchronous_commit``,
``full_page_writes``) and the cluster is kept in memory (``/dev/shm``) where there is room: a crash of the machine
loses it, and it is removed at the end anyway.
"""

from __future__ import annotations

import importlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.dovecot import free_port

INSTALL = "bash tests/install-servers.sh"
VERSIONS = Path("/usr/lib/postgresql")
"""Where Debian's postgresql-NN packages put each version's programs, in NN/bin."""
SUPERUSER = "postgres"
ROLE = "mailtriage"
"""The role the store's URLs name: each new database's owner."""

SHM_NEEDED = 1 << 30
"""The free room in /dev/shm for a cluster there: itself and a hundred databases."""

CONFIG = """
# mailtriage's test server: loopback and a private socket only; no durability, it is thrown away after the run.
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{dir}/run'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
"""

HBA = f"""\
local all {SUPERUSER} trust
host all {ROLE} 127.0.0.1/32 trust
"""


def bin_dir() -> Path | None:
    """The newest installed version's programs (initdb, pg_ctl), or None when there is none."""
    found = [path for path in VERSIONS.glob("*/bin") if (path / "initdb").exists() and (path / "pg_ctl").exists()]
    return max(
        found, key=lambda path: [int(part) for part in path.parent.name.split(".") if part.isdigit()], default=None
    )


def in_memory() -> str | None:
    """``/dev/shm`` where it has room, for the cluster's folder; else None, the usual temporary folder.

    Each database is a copy of ``template1``, 300 files and 7 MiB: on a virtual machine's disk that took 300 to
    450 ms (``cp -r`` of them alone, 350 ms), in memory 25 ms; ``initdb`` took 2 s there and 0.7 s here. A
    container's ``/dev/shm`` is often 64 MiB, too small for a cluster (40 MiB) and its databases: there, the disk.
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= SHM_NEEDED:
        return str(shm)
    return None


def unavailable_reason() -> str | None:
    """Why a private PostgreSQL cannot run here, or None when it can."""
    if bin_dir() is None:
        return f"PostgreSQL is not installed (no initdb and pg_ctl in {VERSIONS}/*/bin): run {INSTALL}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            return f"there is no postgres user to run the server as, not root (postgresql makes it): run {INSTALL}"
    try:
        importlib.import_module("psycopg")
    except ImportError as exc:
        return f"the psycopg driver cannot be imported ({exc}): pip install -e '.[dev]'"
    return None


@dataclass
class PostgresServer:
    directory: Path
    port: int
    bin: Path

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "log" / "postgres.log"

    def start(self) -> None:
        for sub in ("data", "run", "log"):
            (self.directory / sub).mkdir(mode=0o700)
        if os.geteuid() == 0:
            for sub in ("data", "run", "log"):
                shutil.chown(self.directory / sub, SUPERUSER, SUPERUSER)
        # --no-sync: the cluster need not survive a crash of the machine, which saves most of initdb's time.
        self._run("initdb", "--pgdata", str(self.data), "--username", SUPERUSER, "--auth", "trust", "--encoding",
                  "UTF8", "--locale", "C", "--no-sync", "--no-instructions")  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(CONFIG.format(port=self.port, dir=self.directory))
        (self.data / "pg_hba.conf").write_text(HBA)
        self._run("pg_ctl", "start", "--wait", "--pgdata", str(self.data), "--log", str(self.log))
        self.admin(f"CREATE ROLE {ROLE} LOGIN")

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        # In the server's folder: the postgres user may not enter the one the tests run in.
        result = subprocess.run(
            command, cwd=self.directory, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} exited with {result.returncode}: {result.stderr.strip() or result.stdout.strip()};"
                f" see {self.log}"
            )

    def stop(self) -> None:
        """Stop the server at once (``immediate``: nothing is worth a checkpoint); every connection is dropped."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "--wait", "--pgdata", str(self.data), "--mode", "immediate")

    @property
    def admin_url(self) -> str:
        """The superuser's URL, to the ``postgres`` database, through the private socket."""
        return f"postgresql+psycopg://{SUPERUSER}@/postgres?host={self.directory / 'run'}&port={self.port}"

    def url(self, name: str) -> str:
        """The URL of the database ``name``, as the ordinary role ``mailtriage`` over loopback TCP."""
        return f"postgresql+psycopg://{ROLE}@127.0.0.1:{self.port}/{name}"

    def admin(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        """Run ``sql`` as the superuser, outside a transaction (as CREATE DATABASE must be); the rows it returns."""
        import psycopg  # imported here: where the driver is missing, unavailable_reason says so instead

        socket = str(self.directory / "run")
        with psycopg.connect(host=socket, port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True) as db:
            cursor = db.execute(sql, params or None)
            return cursor.fetchall() if cursor.description is not None else []

    def new_database(self) -> str:
        """A fresh, empty database owned by ``mailtriage``; its URL."""
        name = f"t_{secrets.token_hex(6)}"
        # FILE_COPY copies template1's files and checkpoints, which is cheap without fsync: 25 to 45 ms in memory,
        # where the default (WAL_LOG, which also writes every block of them to the WAL) takes 45 to 110 ms.
        self.admin(f"CREATE DATABASE {name} OWNER {ROLE} STRATEGY FILE_COPY")
        return self.url(name)

    def terminate(self, database: str) -> int:
        """End every client's connection to ``database`` (its name, or a URL from ``new_database``), as a
        restart of the server or a network cut would for a daemon; how many there were. Each has ended when this
        returns: a new connection works at once."""
        name = make_url(database).database if "://" in database else database
        rows = self.admin(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            " WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            name,
        )
        return len(rows)


def start_server() -> PostgresServer:
    found = bin_dir()
    assert found is not None, "start_server() where unavailable_reason() says it cannot run"
    directory = Path(tempfile.mkdtemp(prefix="mailtriage-postgres-", dir=in_memory()))
    directory.chmod(0o755)  # the postgres user must reach its folders inside
    server = PostgresServer(directory, free_port(), found)
    try:
        server.start()
    except BaseException:
        server.stop()  # a server that started, but without its role, is not left running
        raise
    return server
