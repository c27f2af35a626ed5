"""A private Cyrus IMAP 3.6 for tests: its own imapd.conf, cyrus.conf, SASL password database and mail spool.

Started once per test run on a free loopback port, as root (Cyrus's master drops to the ``cyrus`` user); every
test gets a fresh user. Debian's ``cyrus-imapd`` conflicts with ``dovecot-imapd``, so ``bash
tests/install-servers.sh`` installs only its dependencies (``cyrus-common`` brings ``master`` and ``ctl_cyrusdb``)
and unpacks ``imapd`` and ``idled`` into a private root, ``$MAILTRIAGE_TEST_SERVERS/cyrus``.

What a client sees is Cyrus's default namespace: the personal namespace is ``INBOX.`` with ``.`` as the separator
(``altnamespace: no``, ``unixhierarchysep: no``), so every folder of the user lives under ``INBOX.``; the other
users' namespace is ``user.`` and the shared one ``""``. ``idled`` makes IDLE immediate (without it Cyrus looks
for changes every 60 s). Cyrus logs to syslog (``/dev/log``) only: where nothing listens there, it logs nothing.

SPECIAL-USE markers: Cyrus answers LIST with each marker as it was stored. Its own autocreation at a user's first
login (``autocreate_inbox_folders`` with ``xlist-drafts``/``xlist-sent``, the usual deployment, used here) stores
them in lower case, so a fresh user's LIST answer is ``(\\HasNoChildren \\drafts) "." INBOX.Drafts`` and
``(\\HasNoChildren \\sent) "." INBOX.Sent``, and RENAME keeps them. A marker a client sets, with ``CREATE ...
(USE (\\drafts))`` or ``SETMETADATA ... /private/specialuse``, is stored and answered as ``\\Drafts`` whatever its
case. A client must compare the markers without case. Cyrus allows one folder per role.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import secrets
import shutil
import signal
import string
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from imapclient import imap_utf7

from tests.dovecot import Account, free_port, wait_for_greeting

SERVERS = Path(os.environ.get("MAILTRIAGE_TEST_SERVERS", "/opt/mailtriage-test-servers"))
INSTALL = "bash tests/install-servers.sh"
CYRUS_BIN = Path("/usr/lib/cyrus/bin")  # from cyrus-common: master, ctl_cyrusdb
SERVERNAME = "mailtriage-test"
"""Cyrus's ``servername``, which is also the SASL realm users are created in."""

IMAPD_CONF = """\
configdirectory: {dir}/lib
proc_path: {dir}/run/proc
mboxname_lockpath: {dir}/run/lock
defaultpartition: default
partition-default: {dir}/spool
sievedir: {dir}/sieve
servername: {servername}
altnamespace: no
unixhierarchysep: no
autocreate_quota: 0
autocreate_inbox_folders: Drafts | Sent | Trash
xlist-drafts: Drafts
xlist-sent: Sent
allowplaintext: yes
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {dir}/sasldb2
sasl_mech_list: PLAIN LOGIN
idlesocket: {dir}/run/socket/idle
lmtpsocket: {dir}/run/socket/lmtp
notifysocket: {dir}/run/socket/notify
umask: 077
"""

# master reads one entry a line, each section's braces on lines of their own: a one-line section is ignored.
CYRUS_CONF = """\
START {{
  recover cmd="{bin}/ctl_cyrusdb -C {dir}/imapd.conf -r"
}}
SERVICES {{
  imap cmd="{root}/usr/lib/cyrus/bin/imapd -C {dir}/imapd.conf" listen="127.0.0.1:{port}" prefork=0
}}
DAEMON {{
  idled cmd="{root}/usr/lib/cyrus/bin/idled -C {dir}/imapd.conf"
}}
"""


def root() -> Path:
    """Where install-servers.sh unpacked cyrus-imapd."""
    return SERVERS / "cyrus"


def unavailable_reason() -> str | None:
    """Why a private Cyrus cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "cyrus tests start a private Cyrus IMAP as root (its master drops to the cyrus user)"
    if not (CYRUS_BIN / "master").exists() or shutil.which("saslpasswd2") is None:
        return f"Cyrus IMAP's dependencies (cyrus-common, sasl2-bin) are not installed: run {INSTALL}"
    if not (root() / "usr/lib/cyrus/bin/imapd").exists():
        return f"cyrus-imapd is not unpacked in {root()}: run {INSTALL}"
    try:
        pwd.getpwnam("cyrus")
    except KeyError:
        return f"there is no cyrus user (cyrus-common makes it): run {INSTALL}"
    return None


def quote(folder: str) -> str:
    """A folder name as an IMAP quoted string, in modified UTF-7."""
    encoded: bytes = imap_utf7.encode(folder)
    return '"' + encoded.decode("ascii").replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class CyrusServer:
    directory: Path
    port: int
    _master: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.directory / "imapd.conf"

    def start(self) -> None:
        lib, run = self.directory / "lib", self.directory / "run"
        for sub in ("db", "proc", "socket", "log", "msg", "user", "quota", "lock"):
            (lib / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("user", "quota", "lock"):
            for letter in string.ascii_lowercase:
                (lib / sub / letter).mkdir(exist_ok=True)
        for letter in [*string.ascii_lowercase, "stage."]:
            (self.directory / "spool" / letter).mkdir(parents=True, exist_ok=True)
        for sub in ("proc", "lock", "socket"):
            (run / sub).mkdir(parents=True, exist_ok=True)
        (self.directory / "sieve").mkdir(exist_ok=True)
        (self.directory / "log").mkdir(exist_ok=True)
        self.config.write_text(IMAPD_CONF.format(dir=self.directory, servername=SERVERNAME))
        (self.directory / "cyrus.conf").write_text(
            CYRUS_CONF.format(dir=self.directory, bin=CYRUS_BIN, root=root(), port=self.port)
        )
        subprocess.run(["chown", "-R", "cyrus:mail", str(self.directory)], check=True)
        self._launch()

    def _launch(self) -> None:
        with (self.directory / "log" / "master.log").open("ab") as log:
            # -D keeps master in the foreground, so it is this process's child and is reaped here; its own
            # process group lets stop() reach whatever it leaves behind.
            self._master = subprocess.Popen(
                [str(CYRUS_BIN / "master"), "-C", str(self.config), "-M", str(self.directory / "cyrus.conf"),
                 "-p", str(self.directory / "master.pid"), "-D"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        if not wait_for_greeting(self.port, 20):
            code = self._master.poll()
            self.stop()
            raise RuntimeError(
                f"cyrus did not greet on port {self.port} (master exited with {code}): it logs to syslog only;"
                f" see {self.directory}/log/master.log"
            )

    def stop(self) -> None:
        """Stop master, which stops imapd and idled first; every connection is dropped."""
        master, self._master = self._master, None
        if master is None:
            return
        if master.poll() is None:
            master.terminate()
            try:
                master.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(master.pid, signal.SIGKILL)
                master.wait(10)
        # A child master could not stop (imapd, idled) would still be in its process group.
        try:
            os.killpg(master.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def restart(self) -> None:
        """Stop and start the server, as an operator or a crash would; every connection is dropped."""
        self.stop()
        self._launch()

    def new_account(self, drafts: str = "Drafts", sent: str = "Sent") -> Account:
        """A fresh user with an empty INBOX and ``INBOX.<drafts>``, ``INBOX.<sent>`` and ``INBOX.Trash``.

        The drafts and sent folders are marked ``\\drafts`` and ``\\sent`` (SPECIAL-USE, in lower case: see the
        module's docstring), and no other folder has either role: ``drafts="Entwürfe"`` makes
        ``INBOX.Entw&APw-rfe`` the only Drafts folder, to be found by its marker alone. Both are subscribed.
        """
        username = f"u{secrets.token_hex(5)}"
        password = secrets.token_urlsafe(12)
        sasldb = self.directory / "sasldb2"
        subprocess.run(
            ["saslpasswd2", "-p", "-c", "-f", str(sasldb), "-u", SERVERNAME, username],
            input=password.encode(), check=True, capture_output=True,
        )  # fmt: skip
        shutil.chown(sasldb, "cyrus", "mail")
        sasldb.chmod(0o640)
        secret_file = self.directory / f"{username}.secret"
        secret_file.write_text(password + "\n")
        # The first login creates INBOX, INBOX.Drafts (\drafts), INBOX.Sent (\sent) and INBOX.Trash; a rename
        # keeps the marker as autocreation stored it, where CREATE ... (USE) would store it capitalised.
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        try:
            imap.login(username, password)
            for default, name in (("Drafts", drafts), ("Sent", sent)):
                mailbox = quote(f"INBOX.{name}")
                if name != default:
                    typ, data = imap.rename(quote(f"INBOX.{default}"), mailbox)
                    if typ != "OK":
                        raise RuntimeError(f"cyrus refused RENAME INBOX.{default} {mailbox}: {data!r}")
                imap.subscribe(mailbox)
        finally:
            imap.logout()
        account = Account(self, username, password, secret_file)
        self._check_markers(account, {f"INBOX.{drafts}": b"\\drafts", f"INBOX.{sent}": b"\\sent"})
        return account

    @staticmethod
    def _check_markers(account: Account, expected: dict[str, bytes]) -> None:
        client = account.client()
        try:
            listed = {name: flags for flags, _delimiter, name in client.list_folders()}
        finally:
            client.logout()
        for name, marker in expected.items():
            if marker not in listed.get(name, ()):
                raise RuntimeError(f"cyrus LIST does not show {name} marked {marker.decode()}: {listed!r}")


def start_server() -> CyrusServer:
    directory = Path(tempfile.mkdtemp(prefix="mailtriage-cyrus-"))
    server = CyrusServer(directory, free_port())
    server.start()
    return server
