"""What was read from files, kept until one of the files changes: a draft re-checks its template and the approvals
by a ``stat`` of each file (modification time in nanoseconds and size) instead of reading and parsing them again.

What is kept is what was checked: a template's text is hashed against its approval when it is read, and drafts are
rendered from that very text, so a file changed on disk is never drafted from unchecked, only read again at the
next draft. A file modified in the same second it was read is not kept (the "racy" case git knows: a second
change within the timestamp's granularity could go unseen); it is read again until it has been still for a while.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")
Stamp = tuple[tuple[str, int, int], ...]
RACY_SECONDS = 2.0


def stamp(paths: Iterable[Path]) -> Stamp:
    """Each file's path, modification time (ns) and size; -1 and -1 for a file that cannot be read."""
    stamped: list[tuple[str, int, int]] = []
    for path in paths:
        try:
            status = os.stat(path)
        except OSError:
            stamped.append((str(path), -1, -1))
        else:
            stamped.append((str(path), status.st_mtime_ns, status.st_size))
    return tuple(stamped)


class Stamped(Generic[T]):
    """Values read from files, by key, each kept with the stamp of the files it came from."""

    def __init__(self, read: Callable[[str], tuple[T, list[Path]]], clock: Callable[[], float] = time.time) -> None:
        self._read = read
        """key -> (the value, the files it was read from)."""
        self._clock = clock
        self._held: dict[str, tuple[Stamp, T]] = {}

    def get(self, key: str) -> T:
        held = self._held.get(key)
        if held is not None and stamp(Path(path) for path, _, _ in held[0]) == held[0]:
            return held[1]
        value, files = self._read(key)
        stamped = stamp(files)
        if not self._racy(stamped):
            self._held[key] = (stamped, value)
        else:
            self._held.pop(key, None)
        return value

    def _racy(self, stamped: Stamp) -> bool:
        now_ns = int(self._clock() * 1e9)
        return any(now_ns - modified < RACY_SECONDS * 1e9 for _, modified, _ in stamped)
