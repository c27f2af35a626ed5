"""A private Courier-IMAP 5 for tests: its own authdaemon, userdb and Maildirs, in private namespaces.

Started once per test run on a free loopback port, as root; every test gets a fresh user. Debian's ``courier-imap``
conflicts with ``dovecot-imapd``, so ``bash tests/install-servers.sh`` installs only its dependencies
(``courier-base``, ``courier-authdaemon``, ``courier-authlib-userdb``, ``gamin``) and unpacks ``imaplogin`` and
``imapd`` into a private root, ``$MAILTRIAGE_TEST_SERVERS/courier``.

Courier's authlib has ``/etc/courier`` and ``/run/courier/authdaemon`` compiled in. The server runs in a private
mount namespace where ``DIR/etc`` (a copy of the host's ``/etc/courier`` and the unpacked package's, with
``authmodulelist="authuserdb"``) is bind-mounted on ``/etc/courier`` and ``DIR/run`` on ``/run/courier``: the
host's are never written. ``userdb`` and ``makeuserdb`` take ``-f DIR/etc/userdb``, so users are added from
outside the namespace, into the very file authdaemond reads inside it. The namespace is also a private PID
namespace: killing its first process kills everything in it, including the ``gam_server`` that IDLE starts.

What a client sees: namespace ``INBOX.`` with ``.`` as the separator, folders under ``INBOX.``; no SPECIAL-USE
and no MOVE; UIDPLUS (COPY answers COPYUID), keywords, and IDLE that answers within a second of a change
(``IMAP_ENHANCEDIDLE=1``, through gamin; the default polls every 60 s).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.dovecot import Account, free_port, wait_for_greeting

SERVERS = Path(os.environ.get("MAILTRIAGE_TEST_SERVERS", "/opt/mailtriage-test-servers"))
INSTALL = "bash tests/install-servers.sh"
AUTHDAEMOND = Path("/usr/lib/courier/courier-authlib/authdaemond")
NEEDED = ["couriertcpd", "maildirmake", "userdb", "userdbpw", "makeuserdb", "unshare"]

AUTHDAEMONRC = """\
authmodulelist="authuserdb"
authmodulelistorig="authuserdb"
daemons=3
authdaemonvar=/run/courier/authdaemon
DEBUG_LOGIN=0
DEFAULTOPTIONS=""
LOGGEROPTS=""
"""

# Run by `unshare --mount --pid --fork` as the namespace's first process: it stays, to reap what its children
# leave (gam_server double-forks), until it is killed, and all the namespace with it.
START = """\
set -e
mkdir -p /run/courier
mount --bind {dir}/etc /etc/courier
mount --bind {dir}/run /run/courier
rm -f /run/courier/authdaemon/socket /run/courier/authdaemon/socket.lock
{authdaemond} &
i=0
while [ ! -S /run/courier/authdaemon/socket ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
env -i sh -c 'set -a; prefix=/usr; exec_prefix=/usr; sbindir=/usr/sbin; bindir=/usr/bin
  . {root}/etc/courier/imapd
  IMAP_ENHANCEDIDLE=1; IMAP_STARTTLS=NO; IMAP_TLS_REQUIRED=0; GAM_CLIENT_ID=mailtriage-{port}
  exec /usr/sbin/couriertcpd -address=127.0.0.1 -maxprocs=40 -maxperip=40 -nodnslookup -noidentlookup {port} \\
    {root}/usr/lib/courier/courier/imaplogin {root}/usr/bin/imapd Maildir' &
while :; do wait || :; done
"""


def root() -> Path:
    """Where install-servers.sh unpacked courier-imap."""
    return SERVERS / "courier"


def unavailable_reason() -> str | None:
    """Why a private Courier-IMAP cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "courier tests start a private Courier-IMAP as root, in its own mount namespace"
    missing = [name for name in NEEDED if shutil.which(name) is None]
    if missing or not AUTHDAEMOND.exists() or not Path("/etc/courier").is_dir():
        return f"Courier-IMAP's dependencies are not installed ({', '.join(missing) or 'authdaemond'}): run {INSTALL}"
    if not (root() / "usr/bin/imapd").exists():
        return f"courier-imap is not unpacked in {root()}: run {INSTALL}"
    return None


@dataclass
class CourierServer:
    directory: Path
    port: int
    _unshare: subprocess.Popen[bytes] | None = None
    _userdb_stamp: int = 0

    @property
    def userdb(self) -> Path:
        return self.directory / "etc" / "userdb"

    def start(self) -> None:
        etc = self.directory / "etc"
        shutil.copytree("/etc/courier", etc, dirs_exist_ok=True)
        shutil.copytree(root() / "etc" / "courier", etc, dirs_exist_ok=True)
        (etc / "authdaemonrc").write_text(AUTHDAEMONRC)
        (self.directory / "run" / "authdaemon").mkdir(parents=True, exist_ok=True)
        (self.directory / "log").mkdir(exist_ok=True)
        mail = self.directory / "mail"
        mail.mkdir(exist_ok=True)
        shutil.chown(mail, "mail", "mail")
        self.userdb.touch()
        self.userdb.chmod(0o600)  # makeuserdb refuses a userdb that others may read
        self._make_userdb()
        (self.directory / "start.sh").write_text(
            START.format(dir=self.directory, root=root(), port=self.port, authdaemond=AUTHDAEMOND)
        )
        self._launch()

    def _launch(self) -> None:
        with (self.directory / "log" / "courier.log").open("ab") as log:
            self._unshare = subprocess.Popen(
                ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
                 "sh", str(self.directory / "start.sh")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        if not wait_for_greeting(self.port, 20):
            code = self._unshare.poll()
            self.stop()
            raise RuntimeError(
                f"courier did not greet on port {self.port} (unshare exited with {code}):"
                f" see {self.directory}/log/courier.log"
            )

    def stop(self) -> None:
        """Kill the namespace's first process: the kernel kills everything else in it, and every connection drops."""
        process, self._unshare = self._unshare, None
        if process is None:
            return
        if process.poll() is None:
            try:
                children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
            except OSError:
                children = []
            for child in children:  # the namespace's first process: unshare waits for it, then exits
                try:
                    os.kill(int(child), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()  # --kill-child: its death kills the namespace's first process
                process.wait(10)

    def restart(self) -> None:
        """Stop and start the server, as an operator or a crash would; every connection is dropped."""
        self.stop()
        self._launch()

    def new_account(self, drafts: str = "Drafts", sent: str = "Sent") -> Account:
        """A fresh user with an empty INBOX and the folders ``INBOX.<drafts>`` and ``INBOX.<sent>`` (no markers:
        Courier has no SPECIAL-USE), in its own Maildir."""
        username = f"u{secrets.token_hex(5)}"
        password = secrets.token_urlsafe(12)
        home = self.directory / "mail" / username
        home.mkdir()
        maildir = home / "Maildir"
        subprocess.run(["maildirmake", str(maildir)], check=True, capture_output=True)
        for name in (drafts, sent):
            # Courier-IMAP 5 names folders on disk in UTF-8 (and answers in modified UTF-7).
            subprocess.run(["maildirmake", "-f", name, str(maildir)], check=True, capture_output=True)
        subprocess.run(["chown", "-R", "mail:mail", str(home)], check=True)
        owner = pwd.getpwnam("mail")
        fields = [f"home={home}", f"mail={maildir}", f"uid={owner.pw_uid}", f"gid={owner.pw_gid}"]
        subprocess.run(["userdb", "-f", str(self.userdb), username, "set", *fields], check=True, capture_output=True)
        hashed = subprocess.run(
            ["userdbpw", "-md5"], input=f"{password}\n{password}\n".encode(), check=True, capture_output=True
        ).stdout
        subprocess.run(
            ["userdb", "-f", str(self.userdb), username, "set", "systempw"],
            input=hashed, check=True, capture_output=True,
        )  # fmt: skip
        self._make_userdb()
        secret_file = self.directory / f"{username}.secret"
        secret_file.write_text(password + "\n")
        account = Account(self, username, password, secret_file)
        self._wait_for_login(account)
        return account

    def _make_userdb(self) -> None:
        subprocess.run(["makeuserdb", "-f", str(self.userdb)], check=True, capture_output=True)
        # authdaemond reopens userdb.dat when its mtime (in seconds) or inode changes; a second makeuserdb within
        # the same second may reuse the inode, so each one gets a later mtime than the one before.
        self._userdb_stamp = max(int(time.time()), self._userdb_stamp + 1)
        for name in ("userdb.dat", "userdbshadow.dat"):
            os.utime(self.directory / "etc" / name, (self._userdb_stamp, self._userdb_stamp))

    @staticmethod
    def _wait_for_login(account: Account, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                account.client().logout()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def start_server() -> CourierServer:
    directory = Path(tempfile.mkdtemp(prefix="mailtriage-courier-"))
    directory.chmod(0o755)  # the mail user must reach its Maildirs
    server = CourierServer(directory, free_port())
    server.start()
    return server
