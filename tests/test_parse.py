from __future__ import annotations

import base64
from pathlib import Path

import pytest

from mailtriage.models import MessageKind
from mailtriage.parse import MAX_DEPTH, parse_message, unparsed

MALFORMED = Path(__file__).parent / "fixtures" / "malformed"
DEMO = Path(__file__).parent.parent / "mailtriage" / "demo_mail"
OWN = frozenset({"support@shop.example.com"})


def parse_file(name: str) -> object:
    return parse_message((MALFORMED / name).read_bytes())


def mail(headers: str, body: str = "Hello, my kettle is broken.\n") -> bytes:
    return (headers.strip() + "\n\n" + body).encode()


# --- malformed mail: each case decoded best-effort, its defect named -------------------------------------------------

RECOVERED = [
    # file, what must be in the subject, what must be in the text, a word of the defect recorded ('' for none)
    ("no-message-id.eml", "Kettle stopped working", "58213", "Message-ID"),
    ("missing-closing-boundary.eml", "Late delivery", "77104", "close boundary"),
    ("missing-boundary-parameter.eml", "cracked lid", "3391", "no boundary"),
    ("boundary-never-appears.eml", "Ersatzteil", "5520", "start boundary"),
    ("unknown-charset.eml", "60418", "être livrée", "unknown charset"),
    ("bogus-charset-name.eml", "cafetiere", "cafetière", "unknown charset"),
    ("mislabelled-charset.eml", "Rechnung", "49 € statt 39 €", "not valid utf-8"),
    ("eight-bit-headers.eml", "Réclamation : bouilloire cassée", "bouilloire", "8-bit"),
    ("latin1-eight-bit-headers.eml", "Problème de livraison, colis abîmé", "mixeur", "8-bit"),
    ("encoded-word-unknown-charset.eml", "Caf", "coffee grinder", "unknown charset 'x-bogus'"),
    ("bad-base64-body.eml", "Blender", "arrived without its lid", "base64"),
    ("unknown-transfer-encoding.eml", "Lieferung", "Umtausch", ""),
    ("no-content-type.eml", "refund", "microwave", ""),
    ("html-only.eml", "Grille-pain", "ne chauffe plus", ""),
    ("html-charset-in-meta-only.eml", "Aspirateur", "reçu", "decoded as"),
    ("nul-bytes.eml", "Broken fridge shelf", "glass shelf", "control characters"),
    ("header-injection-subject.eml", "Hello Bcc: attacker@example.net", "heater", "several lines"),
    ("garbage-date.eml", "Wrong colour", "red kettle", "not a date"),
    ("malformed-addresses.eml", "Paket", "6161", "not an address"),
    ("long-header-lines.eml", "Kettle still broken", "9999", ""),
    ("mixed-line-endings.eml", "Mixed up order", "iron", ""),
    ("attachment-without-filename.eml", "Rechnung fehlerhaft", "März", ""),
    ("empty-body.eml", "washing machine", "", ""),
    ("message-rfc822-attached.eml", "Fwd:", "dishwasher", ""),
]


@pytest.mark.parametrize("name,subject,text,defect", RECOVERED)
def test_malformed_mail_is_decoded_best_effort_with_its_defect_recorded(
    name: str, subject: str, text: str, defect: str
) -> None:
    parsed = parse_message((MALFORMED / name).read_bytes())
    assert subject in parsed.subject
    assert text in parsed.text
    if defect:
        assert any(defect.lower() in d.lower() for d in parsed.defects), parsed.defects
    assert "\x00" not in parsed.text + parsed.subject
    assert "\r" not in parsed.subject and "\n" not in parsed.subject


def test_every_malformed_fixture_is_covered_by_the_table() -> None:
    covered = {row[0] for row in RECOVERED} | {"duplicate-message-id-a.eml", "duplicate-message-id-b.eml"}
    assert covered == {path.name for path in MALFORMED.glob("*.eml")}


def test_a_missing_message_id_is_replaced_by_a_stable_synthetic_one() -> None:
    data = (MALFORMED / "no-message-id.eml").read_bytes()
    first, again = parse_message(data), parse_message(data)
    assert first.message_id_synthetic and first.message_id == again.message_id
    assert first.message_id.endswith("@mailtriage.invalid>")
    assert parse_message(data + b"\nP.S. one more line\n").message_id != first.message_id


def test_two_different_mails_sharing_a_message_id_differ_by_content_hash() -> None:
    a = parse_message((MALFORMED / "duplicate-message-id-a.eml").read_bytes())
    b = parse_message((MALFORMED / "duplicate-message-id-b.eml").read_bytes())
    assert a.message_id == b.message_id
    assert a.content_hash != b.content_hash


def test_html_only_mail_becomes_text_without_styles_or_scripts() -> None:
    parsed = parse_message((MALFORMED / "html-only.eml").read_bytes())
    assert "Le grille-pain commandé le 2 mars ne chauffe plus" in parsed.text
    assert "29,90 €" in parsed.text and "Merci & bonne journée" in parsed.text
    for hidden in ("STYLE_MARKER_SHOULD_NOT_APPEAR", "SCRIPT_MARKER_SHOULD_NOT_APPEAR", "font-family", "<"):
        assert hidden not in parsed.text


def test_eight_bit_display_names_are_decoded_and_encodable() -> None:
    parsed = parse_message((MALFORMED / "eight-bit-headers.eml").read_bytes())
    assert parsed.sender is not None
    assert parsed.sender.name == "Jürgen Müller"
    assert parsed.sender.email == "juergen.mueller@example.com"
    str(parsed.sender).encode("utf-8")  # no lone surrogates left to break a database write


def test_attachments_are_listed_with_name_type_and_size_but_not_kept() -> None:
    parsed = parse_message((MALFORMED / "attachment-without-filename.eml").read_bytes())
    names = sorted(a.filename for a in parsed.attachments)
    assert names == ["", "Rechnung März.pdf"]
    assert all(a.size > 0 for a in parsed.attachments)


def test_a_25_megabyte_attachment_is_measured_not_read_into_the_text() -> None:
    payload = base64.encodebytes(bytes(range(256)) * (25 * 4096))
    data = (
        b"From: a@example.com\nSubject: photos\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nSee attached.\n'
        b"--b\nContent-Type: application/zip\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; "
        b'filename="photos.zip"\n\n' + payload + b"--b--\n"
    )
    parsed = parse_message(data)
    assert parsed.text.strip() == "See attached."
    assert [(a.filename, a.size) for a in parsed.attachments] == [("photos.zip", 25 * 1024 * 1024)]


def nested(depth: int) -> bytes:
    head = b"".join(b'Content-Type: multipart/mixed; boundary="n%d"\n\n--n%d\n' % (i, i) for i in range(depth))
    return b"From: a@example.com\nSubject: nested\nMIME-Version: 1.0\n" + head + b"Content-Type: text/plain\n\ndeep\n"


def test_a_200_level_nested_multipart_is_walked_only_to_a_depth_limit() -> None:
    parsed = parse_message(nested(200))
    assert any(f"deeper than {MAX_DEPTH}" in d for d in parsed.defects)
    assert parsed.subject == "nested" and parsed.sender is not None


def test_endlessly_nested_multipart_keeps_its_headers_and_records_the_defect() -> None:
    parsed = parse_message(nested(5000))
    assert any("nested too deeply" in d for d in parsed.defects)
    assert parsed.subject == "nested" and parsed.sender is not None
    assert "From:" not in parsed.text


def test_a_message_the_parser_fails_on_is_still_recorded_with_the_error() -> None:
    data = b"From: a@example.com\nSubject: x\n\nbody\n"
    parsed = unparsed(data, None, ValueError("boom"))
    assert parsed.message_id == parse_message(data).message_id  # the same synthetic identity as a parsed one
    assert parsed.defects == ("the parser failed (ValueError: boom); left for a human",)


def test_a_subject_with_an_encoded_line_break_cannot_carry_a_header() -> None:
    parsed = parse_message(mail("From: a@example.com\nSubject: =?utf-8?q?Hi=0D=0ABcc:_x@example.net?="))
    assert parsed.subject == "Hi Bcc: x@example.net"


# --- who wrote it --------------------------------------------------------------------------------------------------

KINDS = [
    ("Auto-Submitted: auto-replied", MessageKind.AUTO_REPLY),
    ("Auto-Submitted: auto-generated", MessageKind.AUTO_REPLY),
    ("Auto-Submitted: no", MessageKind.CUSTOMER),
    ("X-Autoreply: yes", MessageKind.AUTO_REPLY),
    ("X-Auto-Response-Suppress: All", MessageKind.AUTO_REPLY),
    ("Precedence: bulk", MessageKind.BULK),
    ("Precedence: list", MessageKind.BULK),
    ("Precedence: auto_reply", MessageKind.AUTO_REPLY),
    ("List-Id: <news.example.com>", MessageKind.BULK),
    ("List-Unsubscribe: <mailto:unsub@example.com>", MessageKind.BULK),
    ("Return-Path: <>", MessageKind.AUTO_REPLY),
    ("Return-Path: <a@example.com>", MessageKind.CUSTOMER),
    ("Subject: Out of Office: your order", MessageKind.AUTO_REPLY),
    ("Subject: Réponse automatique : absent", MessageKind.AUTO_REPLY),
    ("Subject: Automatic reply not working on my kettle?", MessageKind.AUTO_REPLY),
    ("Subject: Why is there no automatic reply?", MessageKind.CUSTOMER),
    ("X-Spam-Flag: YES", MessageKind.SPAM),
    ("X-Spam-Flag: NO", MessageKind.CUSTOMER),
    ("X-Spam-Status: Yes, score=9.1 required=5.0 tests=BAYES_99", MessageKind.SPAM),
    ("X-Spam-Status: No, score=0.3 required=5.0", MessageKind.CUSTOMER),
    ("X-Spam: Yes", MessageKind.SPAM),
    ("X-Rspamd-Action: add header", MessageKind.SPAM),
    ("X-Rspamd-Action: no action", MessageKind.CUSTOMER),
    ("X-Spamd-Result: default: True [16.20 / 15.00]", MessageKind.SPAM),
    ("X-Spamd-Result: default: False [1.20 / 15.00]", MessageKind.CUSTOMER),
    ("X-MS-Exchange-Organization-SCL: 6", MessageKind.SPAM),
    ("X-MS-Exchange-Organization-SCL: 1", MessageKind.CUSTOMER),
    ("X-MS-Exchange-Organization-SCL: -1", MessageKind.CUSTOMER),
    ("X-Forefront-Antispam-Report: CIP:192.0.2.1;CTRY:;LANG:en;SCL:5;SRV:;IPV:NLI;SFV:SPM;", MessageKind.SPAM),
    ("X-Forefront-Antispam-Report: CIP:192.0.2.1;SCL:1;SFV:NSPM;", MessageKind.CUSTOMER),
]


@pytest.mark.parametrize("header,kind", KINDS)
def test_automatic_mail_is_told_from_customer_mail_by_its_headers(header: str, kind: MessageKind) -> None:
    subject = "" if header.startswith("Subject:") else "Subject: help\n"
    parsed = parse_message(mail(f"From: Ann <ann@example.com>\n{subject}{header}"))
    assert parsed.kind is kind, parsed.kind_reason


def test_bounces_are_recognised_by_sender_and_by_delivery_report() -> None:
    by_sender = parse_message(mail("From: MAILER-DAEMON@mx.example.net\nSubject: Undelivered"))
    headers = 'From: x@example.net\nContent-Type: multipart/report; report-type=delivery-status; boundary="r"'
    parts = (
        "--r\nContent-Type: text/plain\n\nfailed\n--r\nContent-Type: message/delivery-status\n\nStatus: 5.1.1\n--r--\n"
    )
    report = parse_message(mail(headers, parts))
    assert by_sender.kind is MessageKind.BOUNCE and report.kind is MessageKind.BOUNCE


def test_mail_from_our_own_address_is_marked_own() -> None:
    parsed = parse_message(mail("From: Support <Support@Shop.example.com>\nSubject: Re: x"), own_addresses=OWN)
    assert parsed.kind is MessageKind.OWN


# --- the customer's new words ----------------------------------------------------------------------------------------

QUOTED = [
    ("en", "The blender still leaks.\n\nOn Mon, 2 Nov 2026 at 10:00, Support <s@example.com> wrote:\n> Dear customer"),
    ("fr", "Le mixeur fuit toujours.\n\nLe lun. 2 nov. 2026 à 10:00, Support <s@example.com> a écrit :\n> Bonjour"),
    ("de", "Der Mixer tropft immer noch.\n\nAm 02.11.2026 um 10:00 schrieb Support <s@example.com>:\n> Guten Tag"),
]


@pytest.mark.parametrize("language,body", QUOTED)
def test_quoted_replies_are_cut_from_the_customers_new_text(language: str, body: str) -> None:
    parsed = parse_message(mail("From: a@example.com\nSubject: Re: leak", body))
    assert parsed.new_text.splitlines()[0] == body.splitlines()[0]
    assert ">" not in parsed.new_text and "Support" not in parsed.new_text
    assert "Support" in parsed.text


# --- the shipped demo mail -------------------------------------------------------------------------------------------


def test_the_demo_mail_parses_cleanly_and_holds_exactly_three_automatic_messages() -> None:
    parsed = [parse_message(path.read_bytes(), own_addresses=OWN) for path in sorted(DEMO.glob("*.eml"))]
    assert len(parsed) == 30
    assert [p.defects for p in parsed if p.defects] == []
    kinds = sorted(p.kind.value for p in parsed if p.kind is not MessageKind.CUSTOMER)
    assert kinds == ["auto-reply", "bounce", "bulk"]
    assert len({p.message_id for p in parsed}) == 30
