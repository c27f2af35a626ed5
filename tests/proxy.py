"""A TCP proxy for fault tests: it sits between mailtriage and the test Dovecot and cuts connections at chosen
points of an IMAP command, as a server restart or a network drop would; or it blanks the answers of searches, as
a buggy server does."""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field
from typing import Literal

When = Literal["before", "during", "after"]
"""``before``: the command never reaches the server. ``during``: the server's answer is cut after its first chunk.
``after``: the server did the command, but its completion never reaches the client."""


@dataclass
class _Trap:
    pattern: bytes
    when: When
    tag: bytes | None = None
    sprung: threading.Event = field(default_factory=threading.Event)


class Proxy:
    """Forwards 127.0.0.1:``port`` to ``target_port``; ``cut_at`` arms a cut at the next command matching a pattern."""

    def __init__(self, target_port: int, port: int = 0) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._trap: _Trap | None = None
        self.commands: list[bytes] = []
        """Every command line a client sent through the proxy (for tests to wait on, e.g. until IDLE begins)."""
        self.blank: bytes | None = None
        """Searches whose command contains this answer nothing: ``b"UID SEARCH UID"`` with ``b":*"`` is what GNU
        Mailutils' imap4d gets wrong; see ``blank_searches``."""
        self._blanking: set[bytes] = set()
        self.connections = 0
        """How many connections clients have opened through the proxy."""
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_at(self, pattern: bytes, when: When) -> threading.Event:
        """Arm one cut at the next command containing ``pattern``; the event is set once it has been made."""
        trap = _Trap(pattern, when)
        with self._lock:
            self._trap = trap
        return trap.sprung

    def blank_searches(self, pattern: bytes = b":*") -> None:
        """From now on, every ``SEARCH`` command containing ``pattern`` gets an empty ``* SEARCH`` answer (the
        server's OK still follows), as GNU Mailutils' imap4d answers ``UID SEARCH UID 1:*``."""
        self.blank = pattern

    def cut_all(self) -> None:
        """Drop every open connection at once, as a server restart does."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            _close(*pair)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut_all()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._pairs.append((client, server))
                self.connections += 1
            threading.Thread(target=self._upstream, args=(client, server), daemon=True).start()
            threading.Thread(target=self._downstream, args=(client, server), daemon=True).start()

    def _upstream(self, client: socket.socket, server: socket.socket) -> None:
        """Client to server: where a trap's command is recognised."""
        while True:
            data = _receive(client)
            if not data:
                return _close(client, server)
            with self._lock:
                self.commands.extend(line for line in data.split(b"\r\n") if line)
                if self.blank is not None:
                    for line in data.split(b"\r\n"):
                        if b" SEARCH " in line.upper() and self.blank in line:
                            self._blanking.add(line.split(b" ", 1)[0])
                trap = self._trap
                if trap is not None and trap.tag is None and trap.pattern in data:
                    line = next(line for line in data.split(b"\r\n") if trap.pattern in line)
                    trap.tag = line.split(b" ", 1)[0]
                    if trap.when == "before":
                        self._trap = None
                        trap.sprung.set()
                        return _close(client, server)
            try:
                server.sendall(data)
            except OSError:
                return _close(client, server)

    def _downstream(self, client: socket.socket, server: socket.socket) -> None:
        """Server to client: where a trap set off by a command cuts the answer."""
        while True:
            data = _receive(server)
            if not data:
                return _close(client, server)
            with self._lock:
                if self._blanking:  # a client waits for each answer: every SEARCH line now is that search's
                    data = re.sub(rb"(^|\r\n)\* SEARCH[^\r\n]*", rb"\1* SEARCH", data)
                    for tag in list(self._blanking):
                        if re.search(rb"(^|\r\n)" + re.escape(tag) + rb" ", data):
                            self._blanking.discard(tag)
                trap = self._trap
                cut = False
                if trap is not None and trap.tag is not None:
                    if trap.when == "during":
                        data, cut = data[: max(1, len(data) // 2)], True
                    elif trap.when == "after" and re.search(rb"(^|\r\n)" + re.escape(trap.tag) + rb" ", data):
                        data, cut = b"", True
                if cut:
                    self._trap = None
            try:
                if data:
                    client.sendall(data)
            except OSError:
                return _close(client, server)
            if cut:
                assert trap is not None
                trap.sprung.set()
                return _close(client, server)


def _receive(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
