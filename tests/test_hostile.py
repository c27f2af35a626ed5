"""Hostile and odd mail, end to end against a real Dovecot: each arrives beside a normal customer's mail, real
cycles classify, record and draft, and neither the daemon nor a draft goes wrong. Also: secrets stay out of logs,
errors and ``config check`` output.

Parser-level robustness is in test_parse.py; these tests show what the whole daemon does with the same mail.
"""

from __future__ import annotations

import base64
import email
import logging
import os
from collections import Counter
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailtriage import classify
from mailtriage.cli import main
from mailtriage.deadlines import policy_from_settings
from mailtriage.draft import ANSWERS_HASH_HEADER, ANSWERS_HEADER, answers_hash, greeting_name
from mailtriage.mailbox import Mailbox
from mailtriage.mailbox.imap import ImapMailbox
from mailtriage.mailbox.maildir import MaildirMailbox
from mailtriage.models import Address, MessageKind
from mailtriage.parse import MAX_DEFECTS, parse_message
from mailtriage.pipeline import CycleOptions, CycleReport, run_cycle
from mailtriage.scheduler import Daemon, Duties
from mailtriage.settings import (
    DEFAULT_CATEGORIES,
    ClassifierSettings,
    DraftSettings,
    MailboxSettings,
    Secret,
    Settings,
)
from mailtriage.store import MessageRecord, Status, Store
from mailtriage.wiring import deadline_sweep, triage_from_settings
from tests.dovecot import Account, DovecotServer, write_config
from tests.helpers import TEMPLATES, now, settings_for

DRAFT_HEADERS = Counter(
    ["From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References", ANSWERS_HEADER, ANSWERS_HASH_HEADER,
     "Content-Type", "Content-Transfer-Encoding", "MIME-Version", "Content-Language"]
)  # fmt: skip
"""Every header a draft has, each exactly once: nothing a customer writes can add one."""
MAX_DRAFT_BYTES = 16_384


def letter(
    message_id: str,
    *,
    sender: bytes = b"Tom Whitaker <tom@example.com>",
    subject: bytes = b"Refund for order A-20001",
    headers: bytes = b"",
    body: bytes = b"Hello, I would like to return the toaster from order A-20001 and get my money back. "
    b"How do I send it back?\r\n",
) -> bytes:
    """A customer's return request, raw, with ``headers`` (CRLF-terminated lines) among its headers."""
    return (
        b"From: " + sender + b"\r\nTo: support@example.com\r\nSubject: " + subject + b"\r\n"
        b"Message-ID: " + message_id.encode() + b"\r\nDate: Mon, 23 Nov 2026 08:15:00 +0100\r\n" + headers +
        (b"" if b"Content-Type:" in headers else b"Content-Type: text/plain; charset=utf-8\r\n") + b"\r\n" + body
    )  # fmt: skip


NORMAL = letter(
    "<normal-1@example.org>",
    sender=b"Jane Doe <jane@example.org>",
    subject=b"Return of my kettle, order A-40001",
    body=b"Hi, I want to send back the kettle from order A-40001 and be refunded. Where do I get a return label?\r\n",
)
"""The ordinary customer who writes at the same time as each hostile mail, and must be served as usual."""


@pytest.fixture(scope="module")
def predictor(seed_model: Path) -> classify.Predictor:
    """The seed model with the default threshold, loaded once: loading takes seconds, a cycle milliseconds."""
    defaults = ClassifierSettings()
    classifier = classify.load(seed_model, [c.name for c in DEFAULT_CATEGORIES])
    return classify.Predictor(classifier, defaults.threshold, defaults.fallback)


def cycle(mailbox: Mailbox, store: Store, predictor: classify.Predictor, settings: Settings) -> CycleReport:
    """One real cycle with classification, routing and drafts, as the daemon runs it."""
    return run_cycle(mailbox, store, now=now, stages=triage_from_settings(settings, predictor))


def triage(account: Account, store: Store, predictor: classify.Predictor, *hostile: bytes) -> CycleReport:
    """The hostile mail and the normal customer's, appended to the INBOX, then one cycle."""
    account.append_many([*hostile, NORMAL])
    report = cycle(ImapMailbox(account.settings()), store, predictor, settings_for(account))
    assert report.ok, report.error
    records = store.messages.all()  # every message recorded, each exactly once
    assert len(records) == len({(r.uidvalidity, r.uid) for r in records}) == len(hostile) + 1
    return report


def drafts(account: Account) -> dict[str, tuple[EmailMessage, bytes]]:
    """The drafts in Drafts by the Message-ID they answer: parsed, and raw."""
    client = account.client()
    try:
        client.select_folder("Drafts", readonly=True)
        found = client.fetch(client.search(["ALL"]), ["BODY.PEEK[]"])
    finally:
        client.logout()
    parsed = [(email.message_from_bytes(v[b"BODY[]"], policy=policy.default), v[b"BODY[]"]) for v in found.values()]
    return {str(message[ANSWERS_HEADER]): (message, raw) for message, raw in parsed}


def by_message_id(store: Store) -> dict[str, MessageRecord]:
    return {r.message_id: r for r in store.messages.all()}


def assert_a_clean_draft(draft: EmailMessage, raw: bytes, to: str, headers: Counter[str] = DRAFT_HEADERS) -> str:
    """The draft has exactly its own headers, each once and on one line, goes to ``to`` alone, is small, and is
    plain 7-bit text a server and a mail client take as it is. Returns its text."""
    assert Counter(draft.keys()) == headers
    assert len(raw) < MAX_DRAFT_BYTES
    raw.decode("ascii")  # no raw 8-bit bytes, so no NUL and no lone surrogate can be in it
    assert b"\x00" not in raw
    for name, value in draft.items():
        assert "\r" not in value and "\n" not in value and "\x00" not in value, name
        value.encode("utf-8")  # decoded, still encodable: no lone surrogates
    assert [a.addr_spec for a in draft["To"].addresses] == [to]
    assert draft["Subject"].startswith("Re: ")
    assert not draft.is_multipart() and draft.get_content_type() == "text/plain"
    assert not draft.defects
    return str(draft.get_content())


def assert_the_normal_customer_is_served(account: Account, store: Store) -> None:
    record = by_message_id(store)["<normal-1@example.org>"]
    assert (record.kind, record.category, record.status) == ("customer", "return-refund", Status.ROUTED)
    draft, raw = drafts(account)["<normal-1@example.org>"]
    assert assert_a_clean_draft(draft, raw, "jane@example.org").startswith("Hello Jane,")  # by the first name


# --- a subject carrying CR/LF and headers ----------------------------------------------------------------------------

INJECTIONS = [
    # how the line breaks travel, the hostile mail's From and Subject
    ("encoded-word, quoted-printable", b"Ann <ann@example.com>",
     b"=?utf-8?q?Kettle_refund=0D=0ABcc:_evil@example.net=0D=0AX-Evil:_1?="),
    ("encoded-word, base64, with a blank line to start a body",
     b"Ann <ann@example.com>",
     b"=?utf-8?b?" + base64.b64encode(b"Kettle refund\r\nBcc: evil@example.net\r\nX-Evil: 1\r\n\r\nInjected body")
     + b"?="),
    ("folded onto continuation lines", b"Ann <ann@example.com>",
     b"Kettle refund\r\n Bcc: evil@example.net\r\n\tX-Evil: 1"),
    ("a bare CR, which the server turns into a real line break", b"Ann <ann@example.com>",
     b"Kettle refund\rBcc: evil@example.net\rX-Evil: 1"),
    ("in the sender's encoded display name", b"=?utf-8?q?Ann=0D=0ABcc=3A_evil=40example.net=0D=0AX-Evil=3A_1?= "
     b"<ann@example.com>", b"Kettle refund"),
]  # fmt: skip


@pytest.mark.dovecot
@pytest.mark.parametrize("sender,subject", [row[1:] for row in INJECTIONS], ids=[row[0] for row in INJECTIONS])
def test_a_subject_carrying_crlf_and_headers_cannot_add_headers_to_its_draft(
    account: Account, store: Store, predictor: classify.Predictor, sender: bytes, subject: bytes
) -> None:
    triage(account, store, predictor, letter("<inject-1@example.com>", sender=sender, subject=subject))
    record = by_message_id(store)["<inject-1@example.com>"]
    assert record.status == Status.ROUTED and "\n" not in record.subject + record.sender and "\r" not in record.subject
    draft, raw = drafts(account)["<inject-1@example.com>"]
    text = assert_a_clean_draft(draft, raw, "ann@example.com")
    assert b"\nBcc:" not in raw and b"\nX-Evil:" not in raw  # whatever the Subject says, it is one header
    assert draft["Subject"].startswith("Re: Kettle refund")
    assert not text.startswith("Injected") and "> Hello, I would like to return the toaster" in text
    assert_the_normal_customer_is_served(account, store)


# --- addresses hidden in encoded words, and a Reply-To elsewhere -------------------------------------------------

CRAFTED = b"=?utf-8?q?Anna=0D=0ABcc:_attacker@evil.example?= <p2c@shop-customer.example>"


@pytest.mark.dovecot
@pytest.mark.parametrize("header", ["From", "Reply-To"])
def test_an_address_inside_an_encoded_word_never_becomes_a_recipient(
    account: Account, store: Store, predictor: classify.Predictor, header: str
) -> None:
    """An encoded-word stands for display text: the ':' and '@' inside it are not address syntax."""
    if header == "From":
        mail = letter("<crafted-1@example.com>", sender=CRAFTED)
    else:
        mail = letter("<crafted-1@example.com>", sender=b"Anna <p2c@shop-customer.example>",
                      headers=b"Reply-To: " + CRAFTED + b"\r\n")  # fmt: skip
    triage(account, store, predictor, mail)
    assert by_message_id(store)["<crafted-1@example.com>"].sender == "p2c@shop-customer.example"
    draft, raw = drafts(account)["<crafted-1@example.com>"]
    assert_a_clean_draft(draft, raw, "p2c@shop-customer.example")  # the decoded name is a quoted name, no more
    assert_the_normal_customer_is_served(account, store)


@pytest.mark.dovecot
@pytest.mark.parametrize("choice,to", [("use", "someone@elsewhere.example"), ("sender", "tom@example.com")])
def test_a_reply_to_outside_the_senders_domain_is_used_or_not_as_configured_and_said_in_review(
    account: Account, store: Store, predictor: classify.Predictor, tmp_path: Path, choice: str, to: str
) -> None:
    account.append_many([letter("<foreign-1@example.com>", headers=b"Reply-To: someone@elsewhere.example\r\n")])
    settings = settings_for(account)
    settings = settings.model_copy(
        update={"drafts": settings.drafts.model_copy(update={"foreign_reply_to": choice}),
                "store": settings.store.model_copy(update={"url": store.url})}
    )  # fmt: skip
    assert cycle(ImapMailbox(account.settings()), store, predictor, settings).ok
    draft, raw = drafts(account)["<foreign-1@example.com>"]
    assert_a_clean_draft(draft, raw, to)
    [appended] = store.audit.events(by_message_id(store)["<foreign-1@example.com>"].id, "draft-appended")
    assert "outside the sender's domain (example.com)" in appended.detail["note"]
    config = write_config(tmp_path / "c.toml", [account], store.url, tmp_path / "m")
    result = CliRunner().invoke(main, ["--config", str(config), "review"], env={"COLUMNS": "400"})
    assert "Reply-To someone@elsewhere.example is outside the sender's domain" in result.output


# --- 50,000 recipients -----------------------------------------------------------------------------------------------


def crowd(count: int) -> bytes:
    return b", ".join(b"Person %d <p%d@example.net>" % (i, i) for i in range(count))


@pytest.mark.dovecot
def test_a_mail_to_50000_recipients_gets_a_small_draft_to_its_sender_alone(
    account: Account, store: Store, predictor: classify.Predictor
) -> None:
    many = crowd(50_000)
    to_all = letter("<crowd-1@example.com>", headers=b"Cc: " + many + b"\r\n").replace(
        b"To: support@example.com", b"To: support@example.com, " + many
    )
    reply_to_all = letter(
        "<crowd-2@example.com>", sender=b"Ann <ann@example.com>", headers=b"Reply-To: " + many + b"\r\n"
    )
    assert len(to_all) > 3_000_000
    report = triage(account, store, predictor, to_all, reply_to_all)
    assert (report.new, report.skipped, report.failed) == (3, 0, 0)
    records = by_message_id(store)
    assert records["<crowd-1@example.com>"].status == records["<crowd-2@example.com>"].status == Status.ROUTED
    found = drafts(account)
    assert_a_clean_draft(*found["<crowd-1@example.com>"], to="tom@example.com")
    assert_a_clean_draft(*found["<crowd-2@example.com>"], to="ann@example.com")  # not a reply to 50,000 people
    assert_the_normal_customer_is_served(account, store)


@pytest.mark.dovecot
def test_a_header_of_50000_non_addresses_records_a_bounded_list_of_defects(
    account: Account, store: Store, predictor: classify.Predictor
) -> None:
    junk = b", ".join(b"junk%d" % i for i in range(50_000))
    triage(account, store, predictor, letter("<junk-1@example.com>", headers=b"Cc: " + junk + b"\r\n"))
    record = by_message_id(store)["<junk-1@example.com>"]
    assert record.status == Status.ROUTED
    assert any("'junk0' is not an address" in d for d in record.defects)
    assert len(record.defects) == MAX_DEFECTS + 1 and record.defects[-1].endswith("more defects not listed")
    assert_a_clean_draft(*drafts(account)["<junk-1@example.com>"], to="tom@example.com")
    assert_the_normal_customer_is_served(account, store)


# --- a 25 MB attachment ----------------------------------------------------------------------------------------------


@pytest.mark.dovecot
def test_a_25_megabyte_attachment_is_processed_and_its_draft_neither_quotes_nor_attaches_it(
    account: Account, store: Store, predictor: classify.Predictor
) -> None:
    payload = base64.encodebytes(os.urandom(25 * 1024 * 1024)).replace(b"\n", b"\r\n")
    big = letter(
        "<big-1@example.com>",
        headers=b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n',
        body=b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello, I would like to return the toaster from "
        b"order A-20001 and get my money back. Photos of the box attached.\r\n--b\r\nContent-Type: application/zip\r\n"
        b'Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="photos.zip"\r\n\r\n'
        + payload + b"--b--\r\n",
    )  # fmt: skip
    triage(account, store, predictor, big)
    record = by_message_id(store)["<big-1@example.com>"]
    assert (record.kind, record.status) == ("customer", Status.ROUTED)
    [cut] = [d for d in record.defects if d.startswith("only the first")]  # the zip was not read to its end
    assert f"of {len(big):,} bytes were read" in cut
    draft, raw = drafts(account)["<big-1@example.com>"]
    text = assert_a_clean_draft(draft, raw, "tom@example.com")  # small, one text part: nothing of the zip
    assert "> Hello, I would like to return the toaster" in text and payload[:40].decode() not in text
    assert_the_normal_customer_is_served(account, store)
    again = cycle(ImapMailbox(account.settings()), store, predictor, settings_for(account))
    assert (again.new, again.failed) == (0, 0)  # read in part, it is still known as itself


def memory_mib(pid: int, field: str) -> float:
    """VmRSS (now) or VmHWM (the peak since it was last reset) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.mark.dovecot
def test_processing_a_40_megabyte_message_stays_under_twice_the_idle_memory_plus_100_mib(
    account: Account, seed_model: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys
    import time

    config = write_config(tmp_path / "c.toml", [account], tmp_path / "store.db", seed_model)
    account.append_many([NORMAL])  # the first message loads what triage needs (language model, templates)
    daemon = subprocess.Popen([sys.executable, "-m", "mailtriage", "--config", str(config), "run"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        deadline = time.monotonic() + 60
        while len(store.messages.all()) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
        idle = memory_mib(daemon.pid, "VmRSS")
        Path(f"/proc/{daemon.pid}/clear_refs").write_text("5")  # the peak from here on
        video = base64.encodebytes(os.urandom(30 * 1024 * 1024)).replace(b"\n", b"\r\n")
        big = letter(
            "<video-1@example.com>",
            headers=b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n',
            body=b"--b\r\nContent-Type: text/plain\r\n\r\nMy kettle leaks, the video shows it.\r\n--b\r\n"
            b"Content-Type: video/mp4\r\nContent-Transfer-Encoding: base64\r\n\r\n" + video + b"--b--\r\n",
        )  # fmt: skip
        assert len(big) > 40 * 1024 * 1024
        account.append_many([big])
        while len(store.messages.all()) < 2 and time.monotonic() < deadline + 60:
            time.sleep(0.1)
        assert len(store.messages.all()) == 2
        busy = memory_mib(daemon.pid, "VmHWM")
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    print(f"RSS: idle {idle:.0f} MiB, peak while processing a {len(big) / 2**20:.0f} MiB message {busy:.0f} MiB")
    assert busy < 2 * idle + 100
    # Bounded by what is read of it (READ_BYTES), whatever its size: read whole, it took 343 MiB more here.
    assert busy - idle < 150


# --- a 200-level nested multipart ------------------------------------------------------------------------------------


def nest(depth: int, inner: bytes) -> bytes:
    """``depth`` levels of multipart/mixed around a text part, as a hostile sender writes it (no closing lines)."""
    levels = b"".join(b'Content-Type: multipart/mixed; boundary="n%d"\r\n\r\n--n%d\r\n' % (i, i) for i in range(depth))
    return levels + b"Content-Type: text/plain\r\n\r\n" + inner + b"\r\n"


@pytest.mark.dovecot
def test_a_200_level_nested_multipart_is_recorded_with_its_defect_and_drafted_from_what_can_be_read(
    account: Account, store: Store, predictor: classify.Predictor
) -> None:
    readable = letter(
        "<nest-1@example.com>",
        headers=b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="top"\r\n',
        body=b"--top\r\nContent-Type: text/plain\r\n\r\nHello, I would like to return the toaster from order A-20001 "
        b"and get my money back. How do I send it back?\r\n--top\r\n" + nest(200, b"DEEP-INSIDE") + b"--top--\r\n",
    )
    buried = letter("<nest-2@example.com>", headers=b"MIME-Version: 1.0\r\n", body=b"")
    buried = buried.replace(b"Content-Type: text/plain; charset=utf-8\r\n\r\n", nest(200, b"I want a refund."))
    triage(account, store, predictor, readable, buried)
    records = by_message_id(store)
    for message_id in ("<nest-1@example.com>", "<nest-2@example.com>"):
        assert any("MIME nesting deeper than" in d for d in records[message_id].defects)
    assert records["<nest-1@example.com>"].status == Status.ROUTED
    found = drafts(account)
    text = assert_a_clean_draft(*found["<nest-1@example.com>"], to="tom@example.com")
    assert "> Hello, I would like to return the toaster" in text and "DEEP-INSIDE" not in text
    # Its only text is out of reach: decided on its subject alone, and drafted without quoting what was not read.
    assert (records["<nest-2@example.com>"].kind, records["<nest-2@example.com>"].status) == ("customer", Status.ROUTED)
    assert "I want a refund" not in assert_a_clean_draft(*found["<nest-2@example.com>"], to="tom@example.com")
    assert_the_normal_customer_is_served(account, store)


# --- NUL bytes and invalid UTF-8 in headers --------------------------------------------------------------------------

NUL_MAIL = letter(
    "<nul-1@example.com>",
    sender=b"Ann\x00a Smith <ann@example.com>",
    subject=b"Refund\x00 for order A-20001",
    body=b"Hello, I would like to return\x00 the toaster from order A-20001 and get my money back.\r\n",
)


@pytest.mark.dovecot
def test_nul_bytes_in_headers_and_body_leave_no_trace_in_the_record_or_the_draft(
    account: Account, store: Store, predictor: classify.Predictor
) -> None:
    # Dovecot serves a stored NUL as 0x80 to a client that did not ask for binary: what reaches the parser is a raw
    # 8-bit byte in an ASCII header, decoded best-effort; the next test hands real NULs to the daemon.
    triage(account, store, predictor, NUL_MAIL)
    record = by_message_id(store)["<nul-1@example.com>"]
    assert record.status == Status.ROUTED and any("8-bit" in d for d in record.defects)
    assert "\x00" not in record.subject + record.sender + record.new_text
    draft, raw = drafts(account)["<nul-1@example.com>"]
    text = assert_a_clean_draft(draft, raw, "ann@example.com")
    assert text.splitlines()[0] == "Hello,"  # "Ann€a Smith" is not a name to greet anyone by
    assert_the_normal_customer_is_served(account, store)


def test_nul_bytes_delivered_as_they_are_are_removed_from_the_record_and_the_draft(
    tmp_path: Path, store: Store, predictor: classify.Predictor
) -> None:
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp", ".Drafts/cur", ".Drafts/new", ".Drafts/tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "new" / "1.host").write_bytes(NUL_MAIL)
    (maildir / "new" / "2.host").write_bytes(NORMAL)
    settings = Settings(
        mailboxes=(MailboxSettings(name="local", maildir=maildir),),
        categories=DEFAULT_CATEGORIES,
        drafts=DraftSettings(from_address="Support <support@example.com>", templates=TEMPLATES),
    )
    report = cycle(MaildirMailbox("local", maildir), store, predictor, settings)
    assert (report.new, report.failed) == (2, 0)
    record = by_message_id(store)["<nul-1@example.com>"]
    assert any("control characters" in d for d in record.defects) and record.status == Status.ROUTED
    assert (record.subject, record.sender) == ("Refund for order A-20001", "ann@example.com")
    raws = [path.read_bytes() for path in (maildir / ".Drafts" / "cur").iterdir()]
    found = {str(m[ANSWERS_HEADER]): (m, r) for r in raws for m in [email.message_from_bytes(r, policy=policy.default)]}
    text = assert_a_clean_draft(*found["<nul-1@example.com>"], to="ann@example.com")
    assert text.startswith("Hello Anna,") and "> Hello, I would like to return the toaster" in text


INVALID_UTF8 = [
    # the From header's display name and the Subject as raw bytes, the greeting the draft must open with
    ("latin-1 name", b"J\xfcrgen M\xfcller", b"R\xfcckgabe order A-20001", "Hello Jürgen,"),
    ("utf-8 cut short", b"J\xc3\xbcrgen M\xc3", b"Refund for order A-20001 \xe2\x82", "Hello,"),
    ("bytes no charset decodes", b"\x81\x8d\x8f\x90\x9d", b"Refund \x81\x8d for order A-20001", "Hello,"),
    ("surrogate-like bytes", b"\xed\xa0\x80\xed\xbf\xbf", b"Refund for order A-20001", "Hello,"),
]


@pytest.mark.dovecot
@pytest.mark.parametrize("name,subject,greeting", [r[1:] for r in INVALID_UTF8], ids=[r[0] for r in INVALID_UTF8])
def test_invalid_utf8_in_headers_is_recorded_with_its_defect_and_its_draft_is_valid_and_greets_sensibly(
    account: Account, store: Store, predictor: classify.Predictor, name: bytes, subject: bytes, greeting: str
) -> None:
    hostile = letter("<utf8-1@example.com>", sender=name + b" <ann@example.com>", subject=subject)
    triage(account, store, predictor, hostile)
    record = by_message_id(store)["<utf8-1@example.com>"]
    assert record.status == Status.ROUTED and any("raw 8-bit bytes" in d for d in record.defects)
    (record.subject + record.sender).encode("utf-8")  # storable: no lone surrogates
    draft, raw = drafts(account)["<utf8-1@example.com>"]
    assert assert_a_clean_draft(draft, raw, "ann@example.com").splitlines()[0] == greeting
    assert "order A-20001" in draft["Subject"]
    assert_the_normal_customer_is_served(account, store)


EIGHT_BIT_ID = letter("<cafe-1@example.com>").replace(b"<cafe-1@", b"<caf\xe9-1@")  # Latin-1, not UTF-8


@pytest.mark.dovecot
def test_a_message_id_with_raw_8bit_bytes_neither_stops_the_cycle_nor_spoils_its_draft(
    account: Account, store: Store, predictor: classify.Predictor
) -> None:
    report = triage(account, store, predictor, EIGHT_BIT_ID)
    assert (report.new, report.failed) == (2, 0)
    [record] = [r for r in store.messages.all() if r.message_id != "<normal-1@example.org>"]
    assert record.status == Status.ROUTED and record.message_id == "<café-1@example.com>"
    [(draft, raw)] = [d for key, d in drafts(account).items() if key != "<normal-1@example.org>"]
    # Not threaded by an id no one could match once encoded; still known by the hash of its content.
    assert_a_clean_draft(draft, raw, "tom@example.com", DRAFT_HEADERS - Counter(["In-Reply-To", "References"]))
    assert draft[ANSWERS_HASH_HEADER] == answers_hash(record.content_hash)
    assert_the_normal_customer_is_served(account, store)


@pytest.mark.dovecot
def test_a_message_id_with_raw_8bit_bytes_does_not_stop_the_daemons_deadline_sweep_after_its_move(
    account: Account, store: Store, predictor: classify.Predictor
) -> None:
    base = settings_for(account)
    categories = tuple(
        c.model_copy(update={"folder": "Support/Returns"}) if c.name == "return-refund" else c for c in base.categories
    )
    settings = base.model_copy(update={"categories": categories})
    policy = policy_from_settings(settings)
    assert policy is not None  # deadlines are on by default
    duties = Duties(CycleOptions(deadlines=policy), triage_from_settings(settings, predictor),
                    sweeps=[deadline_sweep(settings, store, policy, now)])  # fmt: skip
    daemon = Daemon([ImapMailbox(account.settings())], store, settings.schedule, duties, now)
    account.append_many([EIGHT_BIT_ID, NORMAL])
    [report] = daemon.run_once()  # the sweep after the cycle looks for the moved messages by Message-ID
    assert (report.new, report.failed, report.ok) == (2, 0, True)


# --- one Message-ID, two different mails ------------------------------------------------------------------------------


@pytest.mark.dovecot
def test_two_different_mails_sharing_a_message_id_are_both_recorded_and_each_gets_its_own_draft(
    account: Account, store: Store, predictor: classify.Predictor
) -> None:
    first = letter("<shared-1@example.com>", sender=b"Ann <ann@example.com>")
    second = letter(
        "<shared-1@example.com>",
        sender=b"Bob <bob@example.net>",
        subject=b"Refund for order B-77777",
        body=b"Hello, I want to return the blender from order B-77777 and get a refund. How do I send it back?\r\n",
    )
    triage(account, store, predictor, first, second)
    shared = [r for r in store.messages.all() if r.message_id == "<shared-1@example.com>"]
    assert len(shared) == 2 and len({r.content_hash for r in shared}) == 2
    assert [r.status for r in shared] == [Status.ROUTED, Status.ROUTED]
    found = drafts_by_hash(account)
    assert len(found) == 3  # Ann's, Bob's and the normal customer's
    for record, greeting in zip(shared, ("Hello Ann,", "Hello Bob,"), strict=True):
        draft, raw = found[answers_hash(record.content_hash)]
        assert assert_a_clean_draft(draft, raw, record.sender).startswith(greeting)
        assert draft[ANSWERS_HEADER] == draft["In-Reply-To"] == "<shared-1@example.com>"
    assert "B-77777" in found[answers_hash(shared[1].content_hash)][0]["Subject"]
    # A crash after both APPENDs, before the store knew: each draft is found again by its own mail's content.
    for record in shared:
        store.messages.set_status(record, Status.PENDING, now=now())
    cycle(ImapMailbox(account.settings()), store, predictor, settings_for(account))
    assert len(drafts_by_hash(account)) == 3
    assert [e.action for e in store.audit.all() if e.action.startswith("draft")].count("draft-exists") == 2


@pytest.mark.dovecot
def test_two_mails_sharing_a_message_id_moved_into_one_folder_are_each_found_at_their_own_uid_by_the_sweep(
    account: Account, store: Store, predictor: classify.Predictor, caplog: pytest.LogCaptureFixture
) -> None:
    """The deadline sweep finds moved messages where their route filed them; by Message-ID alone both would be
    given the same UID, and the store refused the second (UNIQUE), stopping the sweep for the mailbox."""
    base = settings_for(account)
    categories = tuple(
        c.model_copy(update={"folder": "Support/Returns"}) if c.name == "return-refund" else c for c in base.categories
    )
    settings = base.model_copy(update={"categories": categories})
    policy = policy_from_settings(settings)
    assert policy is not None
    duties = Duties(CycleOptions(deadlines=policy), triage_from_settings(settings, predictor),
                    sweeps=[deadline_sweep(settings, store, policy, now)])  # fmt: skip
    daemon = Daemon([ImapMailbox(account.settings())], store, settings.schedule, duties, now)
    first = letter("<shared-2@example.com>", sender=b"Ann <ann@example.com>")
    second = letter("<shared-2@example.com>", sender=b"Bob <bob@example.net>", subject=b"Refund for order B-77777")
    account.append_many([first, second])
    with caplog.at_level(logging.WARNING):
        [report] = daemon.run_once()  # the sweep after the cycle looks for both in Support/Returns
    assert report.ok and not [r for r in caplog.records if "sweep" in r.getMessage()]
    shared = [r for r in store.messages.all() if r.message_id == "<shared-2@example.com>"]
    assert [r.folder for r in shared] == ["Support/Returns", "Support/Returns"]
    assert len({r.uid for r in shared}) == 2
    for record in shared:
        assert [e.action for e in store.audit.events(record.id, "found-moved")] == ["found-moved"]


def drafts_by_hash(account: Account) -> dict[str, tuple[EmailMessage, bytes]]:
    """The drafts in Drafts by the content hash of the mail they answer."""
    client = account.client()
    try:
        client.select_folder("Drafts", readonly=True)
        found = client.fetch(client.search(["ALL"]), ["BODY.PEEK[]"])
    finally:
        client.logout()
    parsed = [(email.message_from_bytes(v[b"BODY[]"], policy=policy.default), v[b"BODY[]"]) for v in found.values()]
    return {str(message[ANSWERS_HASH_HEADER]): (message, raw) for message, raw in parsed}


# --- a reply loop with another auto-responder -------------------------------------------------------------------------

AUTO_REPLIES = [
    # how the auto-responder marks its reply: extra header lines, sender, subject prefix; what parse.py says
    ("rfc-3834", b"Auto-Submitted: auto-replied\r\n", b"Ann <ann@example.com>", b"Re: ", "Auto-Submitted"),
    ("x-autoreply", b"X-Autoreply: yes\r\n", b"Ann <ann@example.com>", b"Re: ", "X-Autoreply"),
    ("precedence", b"Precedence: auto_reply\r\n", b"Ann <ann@example.com>", b"Re: ", "Precedence"),
    ("microsoft", b"X-Auto-Response-Suppress: All\r\nX-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent\r\n",
     b"Ann <ann@example.com>", b"Re: ", "X-Auto-Response-Suppress"),
    ("x-autogenerated", b"X-Autogenerated: Reply\r\n", b"Ann <ann@example.com>", b"Re: ", "X-Autogenerated"),
    ("outlook subject", b"", b"Ann <ann@example.com>", b"Automatic reply: Re: ", "subject"),
    ("out of office subject", b"", b"Ann <ann@example.com>", b"Out of Office: Re: ", "subject"),
    ("german outlook subject", b"", b"Ann <ann@example.com>", b"Automatische Antwort: AW: ", "subject"),
    ("no-reply sender", b"", b"Shop Helpdesk <no-reply@helpdesk.example.com>", b"Re: ", "no-reply"),
]  # fmt: skip


@pytest.mark.dovecot
@pytest.mark.parametrize(
    "headers,sender,prefix,reason", [r[1:] for r in AUTO_REPLIES], ids=[r[0] for r in AUTO_REPLIES]
)
def test_a_reply_loop_with_another_auto_responder_is_never_answered(
    account: Account,
    store: Store,
    predictor: classify.Predictor,
    headers: bytes,
    sender: bytes,
    prefix: bytes,
    reason: str,
) -> None:
    triage(account, store, predictor)  # the normal customer, drafted
    [(ours, _)] = drafts(account).values()
    mailbox, settings = ImapMailbox(account.settings()), settings_for(account)
    for n in range(5):  # each time an agent sends our reply, the auto-responder answers it
        auto = letter(
            f"<auto-{n}@example.com>",
            sender=sender,
            subject=prefix + b"Return of my kettle, order A-40001",
            headers=b"In-Reply-To: " + str(ours["Message-ID"]).encode() + b"\r\n" + headers,
            body=b"Thank you for your message. I am out of the office and will reply when I am back.\r\n",
        )
        account.append_many([auto])
        report = cycle(mailbox, store, predictor, settings)
        assert (report.new, report.skipped, report.failed) == (0, 1, 0)
    assert list(drafts(account)) == ["<normal-1@example.org>"]
    autos = [r for r in store.messages.all() if r.message_id.startswith("<auto-")]
    assert len(autos) == 5
    assert {(r.kind, r.status, r.category) for r in autos} == {("auto-reply", Status.SKIPPED, None)}
    assert reason.lower() in parse_message(auto).kind_reason.lower()


AUTOMATIC_SIGNALS = [
    ("X-Autogenerated: Reply", MessageKind.AUTO_REPLY),
    ("X-Auto-Reply: yes", MessageKind.AUTO_REPLY),
    ("X-Autoresponse: yes", MessageKind.AUTO_REPLY),
    ("From: No Reply <noreply@shop.example.net>", MessageKind.AUTO_REPLY),
    ("From: do-not-reply@shop.example.net", MessageKind.AUTO_REPLY),
    ("From: DoNotReply+orders@shop.example.net", MessageKind.AUTO_REPLY),
    ("From: no_reply@shop.example.net", MessageKind.AUTO_REPLY),
    # A contact form sends as no-reply with the customer in Reply-To: that is a customer to answer.
    ("From: noreply@shop.example.com\nReply-To: Ann <ann@example.com>", MessageKind.CUSTOMER),
    ("From: Noreen Ply <noreen.ply@example.com>", MessageKind.CUSTOMER),
    ("From: replyall@example.com", MessageKind.CUSTOMER),
]


@pytest.mark.parametrize("header,kind", AUTOMATIC_SIGNALS)
def test_more_auto_responder_signals_are_told_from_customer_mail(header: str, kind: MessageKind) -> None:
    sender = "" if header.startswith("From:") else "From: Ann <ann@example.com>\n"
    parsed = parse_message(f"{sender}{header}\nSubject: Re: your order\n\nThanks, I am away.\n".encode())
    assert parsed.kind is kind, parsed.kind_reason


@pytest.mark.parametrize(
    "name,expected",
    [("Jürgen Müller", "Jürgen Müller"), ("Jürgen M\ufffd", ""), ("Ann€a Smith", ""), ("ÿþ\ufffd", ""),
     ("O'Brien-Smith", "O'Brien-Smith"), ("Dr. Anna Weiß", "Dr. Anna Weiß"), ("李小龙", "李小龙"), ("Ann (Sales)", "")],
)  # fmt: skip
def test_only_a_name_made_of_letters_is_used_to_greet(name: str, expected: str) -> None:
    assert greeting_name(Address(name, "x@example.com")) == expected


# --- secrets never in logs, errors or config check output ------------------------------------------------------------

PASSWORD = "Pa55word-7f3e9c-SECRET"
TOKEN = "T0ken-b41d07-SECRET"


def everything(result: Result, caplog: pytest.LogCaptureFixture) -> str:
    """What a run shows anywhere: stdout, stderr, the exception it ended with, and every log record at DEBUG."""
    return "\n".join([result.stdout, result.stderr, repr(result.exception), caplog.text])


def run_once_at_debug(config: Path, caplog: pytest.LogCaptureFixture) -> tuple[int, str]:
    with caplog.at_level(logging.DEBUG):
        result = CliRunner().invoke(main, ["--config", str(config), "--log-level", "DEBUG", "run", "--once"])
        check = CliRunner().invoke(main, ["config", "check", str(config)])
    assert check.exit_code == 0, check.output
    return result.exit_code, everything(result, caplog) + everything(check, caplog)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model of the default categories from three seed mails each: built and loaded in a blink, for the CLI."""
    examples = classify.seed_examples()
    few = [e for label in sorted({e.label for e in examples}) for e in [x for x in examples if x.label == label][:3]]
    path = tmp_path_factory.mktemp("tiny") / "tiny.npz"
    classify.save(classify.train(few, folds=1, sources=["seed"]), path)
    return path


@pytest.mark.dovecot
@pytest.mark.parametrize("right", [False, True], ids=["refused", "accepted"])
def test_a_mailbox_password_never_appears_in_the_output_or_the_debug_log(
    dovecot: DovecotServer, tmp_path: Path, tiny_model: Path, caplog: pytest.LogCaptureFixture, right: bool
) -> None:
    account = dovecot.new_account()
    if right:  # a user whose password, distinctive enough to grep for, the server accepts
        account = Account(dovecot, f"{account.username}p", PASSWORD, account.secret_file)
        (dovecot.directory / "users" / account.username).write_text(f"{account.username}:{{PLAIN}}{PASSWORD}\n")
    account.append_many([NORMAL])
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    mailbox = account.settings(secret=Secret(file=secret))
    config = write_config(tmp_path / "c.toml", [mailbox], tmp_path / "store.db", tiny_model)
    code, shown = run_once_at_debug(config, caplog)
    assert code == (0 if right else 3)
    assert ("1 new, 0 skipped" if right else "login refused") in shown
    assert "LOGIN **REDACTED**" in shown  # the IMAP conversation itself was logged, and searched
    assert PASSWORD not in shown
    assert base64.b64encode(f"\0{account.username}\0{PASSWORD}".encode()).decode() not in shown  # AUTH=PLAIN


@pytest.mark.dovecot
def test_an_xoauth2_token_the_server_refuses_never_appears_in_the_output_or_the_debug_log(
    account: Account, tmp_path: Path, tiny_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[[mailboxes]]\nname = "oauth"\nhost = "127.0.0.1"\nport = {account.server.port}\nsecurity = "none"\n'
        f'username = "{account.username}"\nauth = "xoauth2"\nsecret = {{ command = "echo {TOKEN}" }}\n'
        f'[store]\nurl = "sqlite:///{tmp_path / "store.db"}"\n[classifier]\nmodel = "{tiny_model}"\n'
    )
    code, shown = run_once_at_debug(config, caplog)
    assert code == 3 and "login refused" in shown and '"secret": "command (hidden)"' in shown
    assert "AUTHENTICATE **REDACTED**" in shown
    assert TOKEN not in shown
    assert base64.b64encode(f"user={account.username}\1auth=Bearer {TOKEN}\1\1".encode()).decode() not in shown


CONFIG_SECRETS = [
    # a configuration holding a secret, the secret
    pytest.param('[deadlines]\nwebhook_url = "https://hooks.example.com/services/T0KEN-SECRET"\n', "T0KEN-SECRET",
                 id="webhook-token"),
    pytest.param('[deadlines]\nwebhook_url = "https://user:Hook-Pa55@hooks.example.com/x?token=Q-SECRET"\n',
                 "Hook-Pa55", id="webhook-userinfo"),
    pytest.param('[smtp]\nhost = "smtp.example.com"\nusername = "n@example.com"\nsecret = { command = '
                 '"smtp-token --client-secret Smtp-S3CRET" }\n', "Smtp-S3CRET", id="smtp-secret-command"),
    pytest.param('[smtp]\nhost = "smtp.example.com"\nusername = "n@example.com"\nsecret = { env = "SMTP_PW" }\n',
                 "Smtp-Env-S3CRET", id="smtp-secret-env"),
]  # fmt: skip


@pytest.mark.parametrize("extra,secret", CONFIG_SECRETS)
def test_config_check_masks_the_smtp_secret_and_the_webhook_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str, secret: str
) -> None:
    monkeypatch.setenv("SMTP_PW", "Smtp-Env-S3CRET")
    (tmp_path / "pw").write_text("Pw-S3CRET\n")
    config = tmp_path / "c.toml"
    config.write_text(f'[[mailboxes]]\nname = "o"\nhost = "imap.example.com"\nusername = "u@example.com"\n'
                      f'secret = {{ file = "pw" }}\n{extra}')  # fmt: skip
    result = CliRunner().invoke(main, ["config", "check", str(config)])
    assert result.exit_code == 0, result.output
    assert secret not in result.stdout + result.stderr and "Pw-S3CRET" not in result.stdout + result.stderr


MISPLACED_SECRETS = [
    # a secret written where mailtriage does not expect it: the error must name the key, not show the value
    ('secret = "Inline-S3CRET"', "secret written inline instead of {env, file, command}"),
    ('password = "Inline-S3CRET"', "an unknown key named password"),
    ('secret = { file = "pw" }\n[deadlines]\nwebhook_url = "https://hooks.example.com/T0KEN S3CRET"',
     "a webhook URL that fails validation"),
]  # fmt: skip


@pytest.mark.parametrize("line,what", MISPLACED_SECRETS, ids=[m[1] for m in MISPLACED_SECRETS])
def test_a_config_error_about_a_secret_does_not_show_the_secret(tmp_path: Path, line: str, what: str) -> None:
    (tmp_path / "pw").write_text("Pw-S3CRET\n")
    config = tmp_path / "c.toml"
    config.write_text(f'[[mailboxes]]\nname = "o"\nhost = "imap.example.com"\nusername = "u@example.com"\n{line}\n')
    result = CliRunner().invoke(main, ["config", "check", str(config)])
    assert result.exit_code == 2
    assert "S3CRET" not in result.stdout + result.stderr


# --- very long Message-IDs ------------------------------------------------------------------------------------------


@pytest.mark.dovecot
def test_a_200_character_message_id_threads_its_draft_by_dovecots_own_thread_command(
    account: Account, store: Store, predictor: classify.Predictor
) -> None:
    long_id = f"<{'a1b2c3d4' * 24}@{'mail.' * 4}example.com>"
    assert len(long_id) >= 200
    earlier = [f"<{n}{'x' * 150}@example.com>" for n in range(12)]  # a long thread, each id longer than a line
    mail = letter(long_id, headers=b"References: " + " ".join(earlier).encode() + b"\r\n")
    triage(account, store, predictor, mail)
    draft, raw = drafts(account)[long_id]
    assert draft["In-Reply-To"] == long_id and draft["References"].split() == [*earlier, long_id]
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert "=?" not in head  # no id encoded into an encoded-word
    for line in head.split("\r\n"):
        assert len(line) <= 998 and all(
            word.count("<") == word.count(">") for word in line.split()
        )  # folded between ids
    client = account.client()
    try:  # the draft beside its original in one folder: the server's own threading puts them together
        client.append("INBOX", raw)
        client.select_folder("INBOX", readonly=True)
        found = client.search(["OR", "HEADER", "Message-ID", long_id, "HEADER", "In-Reply-To", long_id])
        threads = client.thread("REFERENCES", "ALL", "UTF-8")
    finally:
        client.logout()
    assert len(found) == 2
    assert any(set(found) <= set(_flatten(thread)) for thread in threads)


def _flatten(thread: object) -> list[int]:
    return [thread] if isinstance(thread, int) else [n for part in thread for n in _flatten(part)]  # type: ignore[attr-defined]
