from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import pytest

from mailtriage.compliance import Approval, content_hash, write_approvals
from mailtriage.draft import (
    ANSWERS_HEADER,
    Drafter,
    build_reply,
    first_name,
    greeting_name,
    reason_given,
    recipients,
    references,
    reply_subject,
)
from mailtriage.errors import TemplateError
from mailtriage.models import Address
from mailtriage.parse import parse_message
from mailtriage.policy import Policy
from mailtriage.settings import DEFAULT_CATEGORIES, DraftSettings
from mailtriage.templates import Templates

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
PATTERNS = (r"\b[A-Z]{1,3}-\d{3,}(?:-\d+)*\b", r"#\d{4,}\b")
FRENCH = (
    "From: =?utf-8?q?Ren=C3=A9e_Lef=C3=A8vre?= <renee@example.org>\nTo: support@example.com\n"
    "Subject: =?utf-8?q?RE_:_Re:_Cafeti=C3=A8re_qui_fuit?=\nMessage-ID: <c1@example.org>\n"
    "References: <a0@shop.example.com>\nDate: Mon, 23 Nov 2026 08:15:00 +0100\n"
    "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
    "Bonjour, ma cafetière fuit, commande A-10487. Je souhaite être remboursée.\n"
).encode()


@pytest.mark.parametrize(
    "subject,expected",
    [
        ("Cafetière qui fuit", "Re: Cafetière qui fuit"),
        ("Re: Re: RE : AW: question", "Re: question"),
        ("Aw: Re: Ihre Retoure", "Re: Ihre Retoure"),
        ("SV: Ordre", "Re: Ordre"),
        ("Re[2]: order", "Re: order"),
        ("Regarding my order", "Re: Regarding my order"),
    ],
)
def test_the_reply_subject_has_one_re_prefix(subject: str, expected: str) -> None:
    assert reply_subject(subject) == expected


@pytest.mark.parametrize(
    "name,expected",
    [("Renée Lefèvre", "Renée Lefèvre"), ("Schneider, Björn", "Björn Schneider"), ("", ""),
     ("info@example.com", ""), ("'Max'", "Max"), ("1234", "")],
)  # fmt: skip
def test_the_customer_is_greeted_by_a_usable_name_or_none(name: str, expected: str) -> None:
    assert greeting_name(Address(name, "x@example.com")) == expected


def test_order_and_ticket_numbers_are_found_once_each_in_order() -> None:
    parsed = parse_message(
        b"From: a@example.com\nSubject: Order A-10234 late\n\nA-10234 and ticket #48213, INV-2026-004817.\n"
    )
    assert references(parsed, PATTERNS) == ["A-10234", "INV-2026-004817", "48213"]


def test_a_draft_is_a_threaded_reply_that_a_standard_parser_reads_back_with_its_accents() -> None:
    parsed = parse_message(FRENCH)
    raw = build_reply(parsed, "Bonjour Renée,\n\nMerci.\n", "fr", from_address="Support <support@example.com>", now=NOW)
    reply = email.message_from_bytes(raw, policy=policy.default)
    assert reply["Subject"] == "Re: Cafetière qui fuit"
    assert reply["In-Reply-To"] == "<c1@example.org>"
    assert reply["References"] == "<a0@shop.example.com> <c1@example.org>"
    assert reply[ANSWERS_HEADER] == "<c1@example.org>"
    assert reply["To"].addresses[0].display_name == "Renée Lefèvre"
    assert reply["From"].addresses[0].addr_spec == "support@example.com"
    body = reply.get_content().replace("\r\n", "\n")
    assert body.startswith("Bonjour Renée,\n\nMerci.\n")
    assert "a écrit :" in body and "> Bonjour, ma cafetière fuit, commande A-10487." in body
    assert b"\r\n" in raw and all(ord(c) < 128 for c in raw.decode("ascii"))


def test_a_draft_goes_to_the_reply_to_address_when_there_is_one() -> None:
    parsed = parse_message(b"From: a@example.com\nReply-To: B <b@example.net>\nSubject: x\n\nhello\n")
    reply = email.message_from_bytes(
        build_reply(parsed, "Hi", "en", from_address="s@example.com", now=NOW), policy=policy.default
    )
    assert [a.addr_spec for a in reply["To"].addresses] == ["b@example.net"]


def test_a_subject_carrying_a_line_break_cannot_add_headers_to_the_draft() -> None:
    parsed = parse_message(b"From: a@example.com\nSubject: =?utf-8?q?Hi=0D=0ABcc:_x@example.net?=\n\nhello\n")
    raw = build_reply(parsed, "Hi", "en", from_address="s@example.com", now=NOW)
    reply = email.message_from_bytes(raw, policy=policy.default)
    assert reply["Bcc"] is None and reply["Subject"] == "Re: Hi Bcc: x@example.net"


# --- templates -------------------------------------------------------------------------------------------------------


def write(folder: Path, relative: str, text: str) -> None:
    (folder / relative).parent.mkdir(parents=True, exist_ok=True)
    (folder / relative).write_text(text)


def test_a_template_in_the_customers_language_is_used_else_the_fallback_language(tmp_path: Path) -> None:
    write(tmp_path, "repair/en.txt.j2", "Hello {{ greeting_name }}")
    write(tmp_path, "repair/fr.txt.j2", "Bonjour {{ greeting_name }}")
    templates = Templates(tmp_path, "en")
    assert templates.render("repair", "fr", {"greeting_name": "Anne"}) == ("Bonjour Anne\n", "fr")
    assert templates.render("repair", "de", {"greeting_name": "Anne"}) == ("Hello Anne\n", "en")
    with pytest.raises(TemplateError, match="no template billing/de.txt.j2 nor billing/en.txt.j2"):
        templates.render("billing", "de", {})


def test_an_undefined_variable_fails_the_render_instead_of_leaving_a_blank(tmp_path: Path) -> None:
    write(tmp_path, "repair/en.txt.j2", "Hello {{ customer_nmae }}")
    with pytest.raises(TemplateError, match="customer_nmae"):
        Templates(tmp_path, "en").render("repair", "en", {"greeting_name": "Anne"})


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ greeting_name.__class__.__init__.__globals__ }}",
        "{% include '/etc/passwd' %}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    ],
)
def test_a_template_cannot_reach_python_internals_or_read_files(tmp_path: Path, source: str) -> None:
    write(tmp_path, "evil/en.txt.j2", source)
    with pytest.raises(TemplateError):
        Templates(tmp_path, "en").render("evil", "en", {"greeting_name": "x"})


# --- the shipped templates -------------------------------------------------------------------------------------------

SHIPPED = Path(__file__).parent.parent / "templates"
NOTHING_GIVEN = {"models": [], "photos": False, "documents": False, "reason": False}
CONTEXTS = [
    {"greeting_name": "Renée Lefèvre", "first_name": "Renée", "subject": "x", "references": ["A-10234"],
     "signature": "S", "due": "Tue", **NOTHING_GIVEN},
    {"greeting_name": "", "first_name": "", "subject": "", "references": [], "signature": "S", "due": "Tue",
     **NOTHING_GIVEN},
    {"greeting_name": "", "first_name": "", "subject": "", "references": [], "signature": "S", "due": "Tue",
     "models": ["NC-700"], "photos": True, "documents": True, "reason": True},
]  # fmt: skip


@pytest.mark.parametrize("category", [c.name for c in DEFAULT_CATEGORIES])
@pytest.mark.parametrize("language", ["en", "fr", "de"])
def test_every_default_category_has_a_short_template_in_each_language_that_renders(
    category: str, language: str
) -> None:
    templates = Templates(SHIPPED, "en")
    for context in CONTEXTS:
        text, used = templates.render(category, language, context)
        assert used == language
        assert text.endswith("S\n") and "{" not in text and "  " not in text
        assert len(text.split()) <= 90
    named, anonymous = (templates.render(category, language, c)[0] for c in CONTEXTS[:2])
    assert "Renée" in named and "A-10234" in named and "Renée" not in anonymous
    assert ("Renée Lefèvre" in named) is (language != "en")  # English greets by the first name


def test_a_templates_due_is_the_messages_recorded_due_time_in_the_calendars_zone(tmp_path: Path) -> None:
    write(tmp_path, "repair/en.txt.j2", "Hello {{ greeting_name }}, noted ({{ due }}).\n{{ signature }}")
    approval = Approval(content_hash(tmp_path / "repair/en.txt.j2"), "Compliance", "2026-11-23", "")
    write_approvals(tmp_path, {"repair/en": approval})
    wording = DraftSettings(from_address="support@example.com", signature="S", reference_patterns=PATTERNS)
    drafter = Drafter(Templates(tmp_path, "en"), wording, Policy((), (), 200, 20), zone="Europe/Paris")
    parsed = parse_message(FRENCH, internal_date=NOW)
    recorded = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # a business-hours due time, not NOW + 24 h
    text = email.message_from_bytes(drafter(parsed, "repair", "en", NOW, recorded).data, policy=policy.default)
    assert "(2026-11-24 17:00 CET)" in text.get_body().get_content()  # type: ignore[union-attr]
    without = email.message_from_bytes(drafter(parsed, "repair", "en", NOW).data, policy=policy.default)
    assert "(2026-11-24 10:30 CET)" in without.get_body().get_content()  # type: ignore[union-attr]


def test_a_message_id_longer_than_a_line_is_written_as_it_is_so_the_draft_threads() -> None:
    long_id = "<AM9PR04MB8210D3E5F7A1B2C4D6E8F0A1B2C3D4E5@AM9PR04MB8210.eurprd04.prod.outlook.example.com>"
    headers = f"From: a@example.com\r\nSubject: Rechnung\r\nMessage-ID: {long_id}\r\nReferences: {long_id}\r\n"
    parsed = parse_message(f"{headers}\r\nHallo\r\n".encode())
    data = build_reply(parsed, "Guten Tag", "de", from_address="support@example.com", now=NOW)
    reply = email.message_from_bytes(data, policy=policy.default)
    assert reply["In-Reply-To"] == long_id
    assert reply["X-Mailtriage-Answers"] == long_id
    assert long_id.encode() in data


@pytest.mark.parametrize(
    "reply_to,choice,expected,noted",
    [
        ("ann@mail.example.org", "use", "ann@mail.example.org", False),  # a subdomain of the sender's
        ("ann@elsewhere.example", "use", "ann@elsewhere.example", True),
        ("ann@elsewhere.example", "sender", "ann@example.org", True),
    ],
)
def test_a_reply_to_outside_the_senders_domain_is_noted_and_used_as_configured(
    reply_to: str, choice: str, expected: str, noted: bool
) -> None:
    parsed = parse_message(f"From: Ann <ann@example.org>\r\nReply-To: {reply_to}\r\nSubject: x\r\n\r\nHi\r\n".encode())
    to, note = recipients(parsed, choice)
    assert [a.email for a in to] == [expected]
    assert (note is not None) == noted


def test_a_drafts_signature_is_its_languages_own_then_the_one_for_all_then_the_default() -> None:
    assert DraftSettings().signature_for("fr") == "Bien cordialement,\nL'équipe du service client"
    assert DraftSettings().signature_for("de").startswith("Mit freundlichen Grüßen")
    assert DraftSettings().signature_for("it") == DraftSettings().signature_for("en")
    one = DraftSettings(signature="Support ACME", signatures={"de": "Ihr ACME-Team"})
    assert (one.signature_for("de"), one.signature_for("fr")) == ("Ihr ACME-Team", "Support ACME")


@pytest.mark.parametrize(
    "name,first",
    [("Margaret Holloway", "Margaret"), ("Dr. Holloway", "Dr. Holloway"), ("M. Holloway", "M. Holloway"),
     ("Renée", "Renée"), ("", "")],
)  # fmt: skip
def test_english_drafts_greet_by_the_first_name_unless_the_name_starts_with_a_title(name: str, first: str) -> None:
    assert first_name(name) == first


@pytest.mark.parametrize(
    "text,given",
    [("I want to return the shoes because they are too small.", True),
     ("I would like to return my order, how does it work?", False),
     ("Je renvoie la robe car elle ne me convient pas.", True),
     ("Je souhaite retourner la cafetière et être remboursée.", False),
     ("Ich schicke den Mixer zurück, weil er zu laut ist.", True),
     ("Wie funktioniert die Rücksendung?", False)],
)  # fmt: skip
def test_a_reason_the_customer_gave_is_noticed_so_that_it_is_not_asked_for_again(text: str, given: bool) -> None:
    assert reason_given(parse_message(f"From: a@example.org\nSubject: Return\n\n{text}\n".encode())) is given


@pytest.mark.parametrize(
    "message_id",
    ["<a1@example.org>", "<" + "x" * 120 + "@exchange.example>", "<tab\there@example.org>", "<=?utf-8?q?x?=@x>"],
)
def test_every_threading_header_of_a_draft_reads_back_as_written_however_it_was_built(message_id: str) -> None:
    from mailtriage.draft import build_reply

    raw = (f"From: Ann <ann@example.org>\r\nSubject: Kettle\r\nMessage-ID: {message_id}\r\n"
           "References: <r0@example.org> <r1@example.org>\r\n\r\nIt leaks.\r\n").encode()  # fmt: skip
    parsed = parse_message(raw)
    data = build_reply(parsed, "Hello Ann,\n\nThank you.", "en", from_address="Support <s@example.com>", now=NOW)
    draft = email.message_from_bytes(data, policy=policy.default)
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    for header in ("From", "To", "Subject", "Date", "Message-ID", "X-Mailtriage-Answers", "Content-Language"):
        assert len(draft.get_all(header) or []) == 1, header
    assert str(draft["X-Mailtriage-Answers"]) == parsed.message_id
    assert str(draft["In-Reply-To"]) == parsed.message_id
    assert str(draft["References"]) == f"<r0@example.org> <r1@example.org> {parsed.message_id}"
    assert draft["Date"].datetime == NOW and draft.get_content().startswith("Hello Ann,")
