"""A private Dovecot IMAP server for tests: its own config, passwd-file users, maildirs and an OAuth2 endpoint.

Started once per test run on a free loopback port; every test gets a fresh user. Dovecot refuses uid 0 for
mail, so mail is stored as the ``mail`` user, and the server itself must be started as root.
"""

from __future__ import annotations

import http.server
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import imapclient

from mailtriage.settings import MailboxSettings, Secret, Security

CONFIG = """\
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/log/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{dir}/cert.pem
ssl_key = <{dir}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
mail_location = maildir:{dir}/mail/%u
mail_uid = mail
mail_gid = mail
first_valid_uid = 1
auth_verbose = yes
imap_idle_notify_interval = 1 secs
# Every test logs in from 127.0.0.1: with anvil's penalty, each refused login would make the next one's answer
# wait longer (2, 4, 8, then 15 s), whichever test it is in. Each refused login is still delayed as usual.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {dir}/users/%u
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {dir}/oauth2.conf.ext
}}
userdb {{
  driver = static
  args = uid=mail gid=mail home={dir}/mail/%u allow_all_users=yes
}}
namespace inbox {{
  inbox = yes
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
}}
"""

OAUTH2 = """\
introspection_mode = post
introspection_url = http://127.0.0.1:{port}/introspect
username_attribute = username
active_attribute = active
active_value = true
force_introspection = yes
"""


_GIVEN: set[int] = set()
"""The ports free_port gave this process."""


def free_port() -> int:
    """A loopback port nothing listens on, for a server to bind next: one the kernel offers, never one this process
    was given before, and under pytest-xdist only one of this worker's share, so that two workers starting their
    servers at once never pick the same one. The share is by ``port // 2``: Linux offers odd ports first."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    for _ in range(10_000):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if (port // 2) % workers == worker and port not in _GIVEN:
            _GIVEN.add(port)
            return port
    raise RuntimeError(f"no free loopback port for pytest-xdist worker {worker} of {workers}")


def wait_for_greeting(port: int, timeout: float) -> bool:
    """True once an IMAP server on ``port`` greets with ``* OK``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                if sock.recv(200).startswith(b"* OK"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def unavailable_reason() -> str | None:
    """Why a private Dovecot cannot run here, or None when it can."""
    if shutil.which("dovecot") is None:
        return "dovecot is not installed (apt-get install dovecot-imapd)"
    if shutil.which("openssl") is None:
        return "openssl is not installed (it makes the test server's certificate)"
    if os.geteuid() != 0:
        return "dovecot tests start a private server as root (mail is stored as the mail user)"
    return None


class ImapTestServer(Protocol):
    """What an Account needs of its test server (Dovecot, Cyrus or Courier): the loopback port it listens on."""

    port: int


@dataclass
class Account:
    """A fresh IMAP user on the test server."""

    server: ImapTestServer
    username: str
    password: str
    secret_file: Path

    def settings(self, name: str | None = None, **overrides: object) -> MailboxSettings:
        values: dict[str, object] = {
            "name": name or self.username,
            "host": "127.0.0.1",
            "port": self.server.port,
            "security": Security.NONE,
            "username": self.username,
            "secret": Secret(file=self.secret_file),
            "timeout": 10.0,
        }
        values.update(overrides)
        return MailboxSettings.model_validate(values)

    def client(self) -> imapclient.IMAPClient:
        client = imapclient.IMAPClient("127.0.0.1", port=self.server.port, ssl=False, timeout=10)
        client.login(self.username, self.password)
        return client

    def append_many(
        self, messages: Iterable[bytes], folder: str = "INBOX", flags: Iterable[str] = (), date: datetime | None = None
    ) -> int:
        client = self.client()
        count = 0
        try:
            for data in messages:
                client.append(folder, data, flags=tuple(flags), msg_time=date)
                count += 1
        finally:
            client.logout()
        return count

    def flags(self, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
        client = self.client()
        try:
            client.select_folder(folder, readonly=True)
            return {uid: item[b"FLAGS"] for uid, item in client.fetch(client.search("ALL"), ["FLAGS"]).items()}
        finally:
            client.logout()


@dataclass
class DovecotServer:
    directory: Path
    port: int
    tls_port: int
    http_port: int
    tokens: dict[str, str] = field(default_factory=dict)
    """XOAUTH2 tokens the introspection endpoint accepts, token -> username."""
    _httpd: http.server.HTTPServer | None = None

    @property
    def config(self) -> Path:
        return self.directory / "dovecot.conf"

    def start(self) -> None:
        for sub in ("run", "state", "log", "mail", "users"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.directory / "mail", "mail", "mail")
        self._make_certificate()
        self.config.write_text(CONFIG.format(dir=self.directory, port=self.port, tls_port=self.tls_port))
        (self.directory / "oauth2.conf.ext").write_text(OAUTH2.format(port=self.http_port))
        self._start_introspection()
        self._launch()

    @property
    def certificate(self) -> Path:
        """The server's self-signed certificate, to trust as a private CA."""
        return self.directory / "cert.pem"

    def _make_certificate(self) -> None:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(self.directory / "key.pem"),
             "-out", str(self.certificate)],
            check=True, capture_output=True,
        )  # fmt: skip

    def _launch(self) -> None:
        # Dovecot daemonizes and its children keep stdout open: capturing it would wait forever.
        with (self.directory / "log" / "launch.log").open("ab") as log:
            subprocess.run(["dovecot", "-c", str(self.config)], check=True, stdout=log, stderr=log)
        self.wait_until_listening()

    def wait_until_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot did not listen on port {self.port}: see {self.directory}/log/dovecot.log")

    def stop(self) -> None:
        subprocess.run(["doveadm", "-c", str(self.config), "stop"], stdout=subprocess.DEVNULL, check=False)
        if self._httpd is not None:
            self._httpd.shutdown()

    def restart(self) -> None:
        """Stop and start the server, as an operator or a crash would; every connection is dropped."""
        subprocess.run(["doveadm", "-c", str(self.config), "stop"], stdout=subprocess.DEVNULL, check=False)
        pid_file = self.directory / "run" / "master.pid"
        deadline = time.monotonic() + 10
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._launch()

    def kick(self, username: str) -> None:
        """Drop every connection of ``username``, as a server crash or a network cut would."""
        subprocess.run(["doveadm", "-c", str(self.config), "kick", username], stdout=subprocess.DEVNULL, check=False)

    def new_account(self) -> Account:
        username = f"u{secrets.token_hex(5)}"
        password = secrets.token_urlsafe(12)
        # One passwd-file per user: Dovecot reads a new file at once, where it re-reads a changed one at most
        # once a second.
        (self.directory / "users" / username).write_text(f"{username}:{{PLAIN}}{password}\n")
        secret_file = self.directory / f"{username}.secret"
        secret_file.write_text(password + "\n")
        return Account(self, username, password, secret_file)

    def _start_introspection(self) -> None:
        tokens = self.tokens

        class Introspect(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("Content-Length", 0))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                token = form.get("token", [""])[0]
                body = {"active": "true", "username": tokens[token]} if token in tokens else {"active": "false"}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.http_port), Introspect)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()


def start_server() -> DovecotServer:
    directory = Path(tempfile.mkdtemp(prefix="mailtriage-dovecot-"))
    directory.chmod(0o755)  # the mail user must reach its maildirs
    server = DovecotServer(directory, free_port(), free_port(), free_port())
    server.start()
    return server


def write_config(
    path: Path,
    accounts: Iterable[Account | MailboxSettings],
    store: Path | str,
    model: Path,
    **sections: dict[str, object],
) -> Path:
    """A mailtriage TOML config for these accounts (or mailbox settings), a store (a SQLite file, or a URL) and a
    model file."""
    lines = []
    for entry in accounts:
        settings = entry.settings(name=entry.username) if isinstance(entry, Account) else entry
        lines += ["[[mailboxes]]", f'name = "{settings.name}"']
        if settings.maildir is not None:
            lines.append(f'maildir = "{settings.maildir}"')
        else:
            assert settings.secret is not None
            lines += [
                f'host = "{settings.host}"', f"port = {settings.port}", 'security = "none"',
                f'username = "{settings.username}"', f'auth = "{settings.auth.value}"',
                f'secret = {{ file = "{settings.secret.file}" }}',
            ]  # fmt: skip
    url = store if isinstance(store, str) else f"sqlite:///{store}"
    lines += ["[store]", f'url = "{url}"', "[classifier]", f'model = "{model}"']
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path
