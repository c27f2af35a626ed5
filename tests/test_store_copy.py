"""``store copy``: a store moved to another database whole and checked, refused while daemons work on it or when
the target holds rows, and the daemon carrying on from the copy without reading anything twice."""

from __future__ import annotations

import email
import hashlib
import random
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailtriage import classify, demo
from mailtriage.cli import main
from mailtriage.deadlines import State
from mailtriage.draft import ANSWERS_HEADER
from mailtriage.errors import StoreError
from mailtriage.mailbox.maildir import MaildirMailbox
from mailtriage.models import Attachment, Classification, ParsedEmail, RawMessage, RouteDecision
from mailtriage.parse import parse_message
from mailtriage.pipeline import run_cycle
from mailtriage.store import Account, Outcome, Status, Store
from mailtriage.store import copy as store_copy
from mailtriage.store.copy import COPIED, copy_store, digests
from mailtriage.wiring import cycle_options, triage_from_settings
from tests.postgres import PostgresServer

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
MAILBOXES = ("support", "Zeta", "ventes-été")
"""Text keys that PostgreSQL's usual collation orders otherwise than SQLite ('Zeta' after 'support')."""
LETTER = (
    "From: Renée Lefèvre <renee@example.fr>\r\nTo: support@example.com\r\nSubject: Commande {n} en retard\r\n"
    "Message-ID: <c{n}@example.fr>\r\nDate: Mon, 23 Nov 2026 08:00:00 +0100\r\n\r\n"
    "Bonjour, où est ma commande {n} ?\r\n"
)
PARSED = parse_message(LETTER.format(n=0).encode(), internal_date=NOW)


def message(n: int) -> tuple[RawMessage, ParsedEmail, Outcome]:
    """Synthetic message ``n``: parsed once and varied, so that 10,000 of them are recorded in seconds; a mix of
    statuses, routes, deadlines, synthetic Message-IDs and attachments."""
    data = LETTER.format(n=n).encode()
    received = NOW - timedelta(minutes=n)
    parsed = replace(
        PARSED, message_id=f"<c{n}@example.fr>", message_id_synthetic=n % 7 == 0, subject=f"Commande {n} en retard",
        content_hash=hashlib.sha256(data).hexdigest(), internal_date=received, size=len(data),
        attachments=(Attachment(f"photo-{n}.jpg", "image/jpeg", n),) if n % 5 == 0 else (),
        defects=("missing boundary",) if n % 11 == 0 else (),
    )  # fmt: skip
    raw = RawMessage("Archive" if n % 2 else "INBOX", 7, n + 1, data, internal_date=received)
    if n % 4 == 0:
        return raw, parsed, Outcome(Status.SKIPPED)
    classification = Classification("order-delivery", "order-delivery", 0.5 + (n % 50) / 100, "fr", "v1")
    decision = RouteDecision("order-delivery", "model", "confident", folder="Orders", keywords=("$Order",),
                             template="order-delivery", notify="team@example.com" if n % 2 else None)  # fmt: skip
    status = Status.PENDING if n % 3 else Status.ROUTED
    return raw, parsed, Outcome(status, classification, decision, due_at=received + timedelta(hours=24))


ARGON2 = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"


def populate(store: Store, count: int) -> None:
    """``count`` messages in three mailboxes, deadline transitions with their signals (some given), answers,
    each mailbox's health and a console account: a row in every copied table."""
    with store.batch():
        for n in range(count):
            raw, parsed, outcome = message(n)
            store.messages.record(MAILBOXES[n % len(MAILBOXES)], raw, parsed, outcome, NOW)
        waiting = store.deadlines.waiting()
        for record in waiting[: len(waiting) // 10]:
            store.deadlines.transition(record, State.WARNING, ["flags", "digest"], now=NOW)
        for mailbox in MAILBOXES:
            for signal in store.deadlines.owed(mailbox)[:20]:
                store.deadlines.given(signal, now=NOW)
        for record in waiting[-50:]:
            store.deadlines.answer(record, NOW, "reply in Sent", now=NOW)
        for mailbox in MAILBOXES:
            store.health.cycle_done(mailbox, error=None, backlog=3, now=NOW)
        store.health.cycle_done("Zeta", error="server said: BYE Ünavailable", backlog=0, now=NOW)
        store.accounts.add(Account("amartin", "A. Martin", "compliance", ARGON2, NOW, NOW, None), by="test")


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A SQLite store of 10,000 messages, built once per module (the copies only read it)."""
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('big') / 'store.db'}")
    populate(store, 10_000)
    yield store
    store.close()


@pytest.fixture
def small_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'source.db'}")
    populate(store, 60)
    yield store
    store.close()


def rows(report: store_copy.CopyReport) -> dict[str, int]:
    return {table.name: table.rows for table in report.tables}


def assert_carries_on(target: Store, source: Store) -> None:
    """A message recorded on the copy takes a new id, its audit event and its deadline signal too."""
    last = max(record.id for record in source.messages.all())
    raw, parsed, outcome = message(20_001)
    new = target.messages.record("support", raw, parsed, outcome, NOW)
    assert new > last
    [record] = [r for r in target.deadlines.waiting("support") if r.id == new]
    assert target.deadlines.transition(record, State.BREACHED, ["webhook"], now=NOW)
    assert [e.action for e in target.audit.all("support") if e.message == new] == ["recorded", "deadline:breached"]
    assert target.messages.count() == source.messages.count() + 1


def test_a_store_of_10000_messages_is_copied_to_postgresql_whole_checked_and_the_daemon_records_on(
    big_store: Store, postgres_url: str
) -> None:
    heard: list[tuple[str, int]] = []
    report = copy_store(big_store, postgres_url, now=NOW, progress=lambda table, n: heard.append((table, n)))
    assert [table.name for table in report.tables] == list(COPIED)
    assert rows(report)["messages"] == 10_000 and rows(report)["audit_log"] > 10_000
    assert all(table.rows > 0 for table in report.tables)
    copied = Store(postgres_url).accounts.get("amartin")
    assert copied is not None and copied.password_hash == ARGON2, "accounts keep their password hashes"
    assert ("messages", 5_000) in heard and ("messages", 10_000) in heard
    target = Store(postgres_url)
    try:
        assert digests(target) == digests(big_store) == report.tables
        assert target.leases.all() == [] and target.leases.daemons() == []
        assert_carries_on(target, big_store)
    finally:
        target.close()


def test_a_store_is_copied_to_another_sqlite_file(big_store: Store, tmp_path: Path) -> None:
    report = copy_store(big_store, f"sqlite:///{tmp_path / 'copy.db'}", now=NOW)
    assert report.target == f"sqlite:///{tmp_path / 'copy.db'}"
    target = Store(report.target)
    try:
        assert digests(target) == digests(big_store) == report.tables
        assert_carries_on(target, big_store)
    finally:
        target.close()


def test_a_postgresql_store_is_copied_back_to_sqlite_the_same(
    small_store: Store, postgres_url: str, tmp_path: Path
) -> None:
    copy_store(small_store, postgres_url, now=NOW)
    on_postgres = Store(postgres_url)
    try:
        report = copy_store(on_postgres, f"sqlite:///{tmp_path / 'back.db'}", now=NOW)
    finally:
        on_postgres.close()
    assert report.tables == digests(small_store)


def test_a_target_whose_collation_orders_text_otherwise_is_checked_all_the_same(
    small_store: Store, postgres: PostgresServer
) -> None:
    name = f"t_icu_{secrets.token_hex(4)}"  # 'Zeta' after 'support' here, before it on SQLite
    postgres.admin(f"CREATE DATABASE {name} OWNER mailtriage TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en'")
    report = copy_store(small_store, postgres.url(name), now=NOW)
    assert report.tables == digests(small_store)


def test_the_target_url_is_reported_with_its_password_hidden(small_store: Store, postgres_url: str) -> None:
    with_password = postgres_url.replace("mailtriage@", "mailtriage:s3cret@")  # trust: the password is not asked
    report = copy_store(small_store, with_password, now=NOW)
    assert "s3cret" not in report.target and "***" in report.target


@pytest.mark.parametrize("written,named", [("a message", "sync_state"), ("a cycle's health", "mailbox_health")])
def test_a_target_that_holds_rows_is_refused_and_left_as_it_was(
    small_store: Store, tmp_path: Path, written: str, named: str
) -> None:
    url = f"sqlite:///{tmp_path / 'target.db'}"
    target = Store(url)
    if written == "a message":  # with the sync state of its folder, the first table copied
        target.messages.record("support", *message(1), NOW)
    else:
        target.health.cycle_done("support", error=None, backlog=0, now=NOW)
    before = digests(target)
    with pytest.raises(StoreError, match=rf"target store {url} is not empty \({named} holds 1 row\): copy into a new"):
        copy_store(small_store, url, now=NOW)
    assert digests(target) == before
    target.close()


def test_a_source_whose_mailbox_a_daemon_holds_is_refused_until_the_lease_is_given_back(
    small_store: Store, tmp_path: Path
) -> None:
    small_store.leases.offer(["support", "Zeta"])
    lease = small_store.leases.acquire("support", "other-daemon", NOW, 30)
    assert lease is not None
    url = f"sqlite:///{tmp_path / 'target.db'}"
    refusal = r"daemon other-daemon holds mailbox support's lease \(until 2026-11-23 09:00:30 UTC\): stop the daemons"
    with pytest.raises(StoreError, match=refusal):
        copy_store(small_store, url, now=NOW + timedelta(seconds=29))
    target = Store(url)
    assert all(table.rows == 0 for table in digests(target))
    target.close()
    small_store.leases.release(lease)
    report = copy_store(small_store, url, now=NOW + timedelta(seconds=29))
    assert report.tables == digests(small_store)


def test_a_lease_its_daemon_let_run_out_does_not_refuse_the_copy(small_store: Store, tmp_path: Path) -> None:
    small_store.leases.offer(["support"])
    small_store.leases.acquire("support", "killed-daemon", NOW, 30)
    report = copy_store(small_store, f"sqlite:///{tmp_path / 'target.db'}", now=NOW + timedelta(seconds=31))
    assert rows(report)["messages"] == 60


def test_a_copy_that_reads_back_differently_is_refused_naming_the_table(
    small_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = store_copy._copy

    def altering(reading, writing, source, target, progress):  # type: ignore[no-untyped-def]
        original(reading, writing, source, target, progress)
        if target.name == "messages":  # as a database that changed a value on the way in would
            writing.execute(target.update().where(target.c.id == 2).values(subject="Commande 1 en retar"))

    monkeypatch.setattr(store_copy, "_copy", altering)
    with pytest.raises(StoreError, match=r"the copy of messages in .* reads back differently from the source"):
        copy_store(small_store, f"sqlite:///{tmp_path / 'target.db'}", now=NOW)


# --- the daemon on the copy ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predictor(seed_model: Path) -> classify.Predictor:
    settings = demo.demo_settings(Path("."))
    classifier = classify.load(seed_model, settings.category_names())
    return classify.Predictor(classifier, settings.classifier.threshold, settings.classifier.fallback)


def drafted(maildir: Path) -> Counter[str]:
    """How many drafts in Drafts answer each Message-ID."""
    found: Counter[str] = Counter()
    for path in [*(maildir / ".Drafts" / "cur").iterdir(), *(maildir / ".Drafts" / "new").iterdir()]:
        found[str(email.message_from_bytes(path.read_bytes(), policy=policy.default)[ANSWERS_HEADER])] += 1
    return found


def test_the_daemon_carries_on_from_a_copy_on_postgresql_without_reading_anything_twice(
    tmp_path: Path, postgres_url: str, predictor: classify.Predictor
) -> None:
    settings = demo.demo_settings(tmp_path)
    maildir = tmp_path / demo.MAILDIR
    first = demo.build_maildir(maildir)
    options, stages = cycle_options(settings), triage_from_settings(settings, predictor)

    def cycle(store: Store) -> tuple[int, int, int]:
        """What a cycle recorded: new messages (customer mail), skipped ones (automatic mail, or seen again), failed."""
        report = run_cycle(MaildirMailbox("demo", maildir), store, now=lambda: datetime.now(UTC), options=options,
                           stages=stages)  # fmt: skip
        return report.new, report.skipped, report.failed

    source = Store(settings.store.url)
    new, skipped, _ = cycle(source)
    assert new + skipped == first and new > 20
    drafts_before = drafted(maildir)
    assert drafts_before and set(drafts_before.values()) == {1}
    copy_store(source, postgres_url, now=datetime.now(UTC))
    source.close()
    random.seed(1)
    added = 5
    for _ in range(added):
        demo.add_mail(tmp_path)
    target = Store(postgres_url)
    try:
        assert cycle(target) == (added, 0, 0)  # the sample mail already recorded is neither new nor seen again
        assert cycle(target) == (0, 0, 0)
        records = target.messages.all()
        assert len(records) == first + added
        assert Counter(record.message_id for record in records).most_common(1)[0][1] == 1
        drafts = drafted(maildir)
        assert set(drafts.values()) == {1} and len(drafts) == len(drafts_before) + added
        appended = {r.message_id for r in records if target.audit.has(r.id, "draft-appended")}
        assert appended == set(drafts)
    finally:
        target.close()


# --- the command ---------------------------------------------------------------------------------------------------

CONFIG = """
[[mailboxes]]
name = "support"
maildir = "mail"

[store]
url = "sqlite:///{store}"
"""


def configured(tmp_path: Path) -> Path:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    populate(store, 30)
    store.close()
    path = tmp_path / "mailtriage.toml"
    path.write_text(CONFIG.format(store=tmp_path / "store.db"))
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_store_copy_prints_each_tables_rows_and_hash_then_the_next_step(tmp_path: Path) -> None:
    config = configured(tmp_path)
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    code, out, err = invoke("--config", str(config), "store", "copy", "--to", target)
    assert (code, err) == (0, "")
    *tables, next_step = out.splitlines()
    copied = Store(target)
    expected = [f"{t.name}: {t.rows:,} rows, sha256 {t.sha256[:12]}" for t in digests(copied)]
    copied.close()
    assert tables == expected and tables[1] == f"messages: 30 rows, sha256 {tables[1][-12:]}"
    assert next_step == f'copied and checked; next: set url = "{target}" under [store] in {config}, then start the ' \
                        "daemons"  # fmt: skip


def test_a_refused_store_copy_is_one_line_and_exit_4(tmp_path: Path) -> None:
    config = configured(tmp_path)
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    assert invoke("--config", str(config), "store", "copy", "--to", target)[0] == 0
    code, out, err = invoke("--config", str(config), "store", "copy", "--to", target)
    assert (code, out) == (4, "")
    assert err == f"mailtriage: the target store {target} is not empty (sync_state holds 6 rows): copy into a new, " \
                  "empty database\n"  # fmt: skip


def test_store_copy_help_shows_the_example_and_what_is_not_copied() -> None:
    code, out, _ = invoke("store", "copy", "--help")
    assert code == 0
    assert "mailtriage --config /etc/mailtriage/mailtriage.toml store copy --to postgresql://" in out
    assert "leases" in out and "not copied" in out and "Stop the daemons first" in out
