from __future__ import annotations

import mailbox
from datetime import UTC, datetime
from pathlib import Path

from mailtriage.mailbox.maildir import UID_FILE, MaildirMailbox
from mailtriage.pipeline import run_cycle
from mailtriage.store import Store


def now() -> datetime:
    return datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def letter(n: int) -> bytes:
    return (
        f"From: c{n}@example.com\nSubject: Order {n}\nMessage-ID: <o{n}@example.com>\n\nWhere is order {n}?\n".encode()
    )


def make_maildir(path: Path, count: int) -> mailbox.Maildir:
    box = mailbox.Maildir(path, create=True)
    for n in range(count):
        box.add(letter(n))
    return box


def test_maildir_messages_keep_their_uids_across_restarts_and_new_ones_get_higher_uids(tmp_path: Path) -> None:
    box = make_maildir(tmp_path / "Maildir", 3)
    first = MaildirMailbox("local", tmp_path / "Maildir")
    before = {m.uid: m.data for m in first.fetch("INBOX", first.uids_above("INBOX", 0))}
    box.add(letter(3))
    again = MaildirMailbox("local", tmp_path / "Maildir")
    after = {m.uid: m.data for m in again.fetch("INBOX", again.uids_above("INBOX", 0))}
    assert {uid: after[uid] for uid in before} == before
    assert sorted(after) == [1, 2, 3, 4] and after[4] == letter(3)


def test_reading_a_maildir_changes_no_message(tmp_path: Path) -> None:
    make_maildir(tmp_path / "Maildir", 3)
    files_before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "Maildir").rglob("*") if p.is_file())
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    assert run_cycle(MaildirMailbox("local", tmp_path / "Maildir"), store, now=now).new == 3
    files_after = sorted(p.relative_to(tmp_path) for p in (tmp_path / "Maildir").rglob("*") if p.is_file())
    assert [f for f in files_after if f.name != UID_FILE] == files_before


def test_a_lost_uid_file_reprocesses_nothing(tmp_path: Path) -> None:
    box = make_maildir(tmp_path / "Maildir", 5)
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    run_cycle(MaildirMailbox("local", tmp_path / "Maildir"), store, now=now)
    (tmp_path / "Maildir" / UID_FILE).unlink()
    box.add(letter(5))
    report = run_cycle(MaildirMailbox("local", tmp_path / "Maildir"), store, now=now)
    assert (report.new, report.skipped, store.messages.count()) == (1, 5, 6)


def test_keywords_a_folder_cannot_keep_are_left_out_and_its_flags_still_set() -> None:
    from mailtriage.mailbox.imap_wire import storable

    exchange = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"})  # no \* : no new keywords
    assert storable(["\\Flagged", "$Returns", "$DeadlineSoon"], exchange) == (
        ["\\Flagged"],
        ["$Returns", "$DeadlineSoon"],
    )
    assert storable(["\\Flagged", "$Returns"], exchange | {"$returns"}) == (["\\Flagged", "$Returns"], [])
    assert storable(["\\Flagged", "$Returns"], frozenset({"\\*"})) == (["\\Flagged", "$Returns"], [])
