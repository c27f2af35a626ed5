from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from mailtriage.errors import StoreError
from mailtriage.models import RawMessage
from mailtriage.parse import parse_message
from mailtriage.store import Outcome, Status, Store, SyncState

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
DATA = b"From: Ann <ann@example.com>\nSubject: Broken kettle\nMessage-ID: <k1@example.com>\n\nIt leaks.\n"


def test_a_new_store_is_migrated_to_the_latest_schema_and_reopening_keeps_its_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(url)
    raw = RawMessage("INBOX", 7, 3, DATA, internal_date=NOW)
    store.messages.record("support", raw, parse_message(DATA, internal_date=NOW), Outcome(Status.UNCLASSIFIED), NOW)
    store.close()
    reopened = Store(url)
    [record] = reopened.messages.all()
    assert (record.subject, record.uid, record.received_at) == ("Broken kettle", 3, NOW)
    assert reopened.sync.get("support", "INBOX") == SyncState(uidvalidity=7, last_uid=3)
    with reopened.engine.connect() as db:
        assert db.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "0008"
    reopened.close()


def test_recording_the_same_location_twice_is_refused(store: Store) -> None:
    raw = RawMessage("INBOX", 7, 3, DATA)
    store.messages.record("support", raw, parse_message(DATA), Outcome(Status.UNCLASSIFIED), NOW)
    with pytest.raises(StoreError):
        store.messages.record("support", raw, parse_message(DATA), Outcome(Status.UNCLASSIFIED), NOW)
    assert store.messages.count() == 1


def test_the_audit_log_is_append_only(store: Store) -> None:
    store.audit.add("support", "test", {"n": 1}, now=NOW)
    for statement in ("UPDATE audit_log SET action = 'changed'", "DELETE FROM audit_log"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), store.engine.begin() as db:
            db.execute(sa.text(statement))
    assert [e.action for e in store.audit.all()] == ["test"]


def test_a_store_that_cannot_be_opened_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot open the store"):
        Store(f"sqlite:///{blocker / 'sub' / 'store.db'}")


def test_a_store_written_by_a_newer_version_is_refused_with_one_clear_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    Store(url).close()
    with sa.create_engine(url).begin() as db:
        db.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    with pytest.raises(StoreError, match="its schema is newer than this version of mailtriage knows"):
        Store(url)


def test_a_database_whose_driver_is_missing_says_what_to_install() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("psycopg is installed here: no missing driver to show")
    with pytest.raises(StoreError, match=r"driver is not installed .*pip install 'psycopg\[binary\]'"):
        Store("postgresql://support@db.example.com/mailtriage")


def test_the_audit_log_says_in_one_query_which_messages_have_an_event(store: Store) -> None:
    ids = [
        store.messages.record("support", RawMessage("INBOX", 7, uid, DATA), parse_message(DATA),
                              Outcome(Status.UNCLASSIFIED), NOW)
        for uid in range(1, 5)
    ]  # fmt: skip
    for message in ids[:3]:
        store.audit.add("support", "draft-appending" if message != ids[1] else "moved", {}, now=NOW, message=message)
    store.audit.add("support", "draft-appending", {}, now=NOW, message=ids[0])  # twice: still one message
    assert store.audit.having(ids, "draft-appending") == {ids[0], ids[2]}
    assert store.audit.having(ids, "moved") == {ids[1]} and store.audit.having([], "moved") == set()
    assert store.audit.having(ids, "draft-appending") == {m for m in ids if store.audit.has(m, "draft-appending")}
