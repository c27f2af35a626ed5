"""Files mailtriage writes hold customers' names, addresses and words: they are private to its user (0600, folders
0700) whatever the umask, and ``config check`` warns about secrets and stores others can read."""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailtriage.settings import Settings

PRIVATE_UMASK = 0o077


def tighten_umask() -> None:
    """Let nothing this process creates be readable by group or others (store, WAL, heartbeat, models, reports)."""
    os.umask(os.umask(0) | PRIVATE_UMASK)


def private_folder(path: Path) -> None:
    """Create ``path`` (and its missing parents) as 0700; an existing folder is left as it is."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask


def create_private(path: Path) -> None:
    """Create an empty ``path`` as 0600 if it does not exist (before SQLite opens it: its -wal and -shm files then
    take the same mode)."""
    private_folder(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return
    os.chmod(path, 0o600)


def write_private(path: Path, data: str | bytes) -> None:
    """Replace ``path`` in one step with ``data``, as 0600 (a new file), or with the mode the file already has."""
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o600
    descriptor, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600, a name of its own
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(partial, mode)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold ``path``'s lock (a file beside it) for a read-modify-write: other processes and threads taking the
    same lock wait for it, as the console's workers and the command line approving at once do."""
    descriptor = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def readable_by_others(path: Path) -> str | None:
    """'its group', 'others' or both when they may read ``path`` needlessly; None when it is private or absent.

    The group counts only for a file of our own: a file another user owns (root, say) is often shared with the
    daemon through its group, and that group must read it."""
    try:
        found = path.stat()
    except OSError:
        return None
    group = bool(found.st_mode & stat.S_IRGRP) and found.st_uid == os.geteuid()
    who = [name for name, shown in (("its group", group), ("others", bool(found.st_mode & stat.S_IROTH))) if shown]
    return " and ".join(who) or None


def permission_warnings(secret_files: list[tuple[str, Path]], store_files: list[Path]) -> list[str]:
    """What ``config check`` says about files others can read: (where, path) of each secret file, and the store's
    database file (its folder is looked at too)."""
    warnings = []
    for where, path in secret_files:
        who = readable_by_others(path)
        if who:
            warnings.append(f"{where}: the secret file {path} is readable by {who}: chmod 600 {path}")
    for path in store_files:
        for target, fix in ((path.parent, "chmod 700"), (path, "chmod 600")):
            who = readable_by_others(target)
            if who:
                warnings.append(f"store: {target} holds customers' mail and is readable by {who}: {fix} {target}")
    return warnings


def file_warnings(settings: Settings) -> list[str]:
    """``permission_warnings`` for a configuration's secret files and SQLite store."""
    from sqlalchemy.engine import make_url

    secrets = [(f"mailboxes.{m.name}.secret", m.secret.file) for m in settings.mailboxes if m.secret and m.secret.file]
    if settings.smtp.secret is not None and settings.smtp.secret.file is not None:
        secrets.append(("smtp.secret", settings.smtp.secret.file))
    url = make_url(settings.store.url)
    sqlite = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    return permission_warnings(secrets, [Path(str(url.database))] if sqlite else [])
