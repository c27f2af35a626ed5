"""A reply draft for a customer message: threaded to it, in the customer's language, the customer's text quoted
below. Pure: the message is built, not sent or stored."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from zoneinfo import ZoneInfo

from mailtriage.compliance import MANIFEST, approval_problem, read_approvals
from mailtriage.errors import TemplateError
from mailtriage.models import Address, ParsedEmail
from mailtriage.policy import Policy
from mailtriage.settings import DraftSettings
from mailtriage.stamps import Stamped
from mailtriage.templates import Sources, Templates, read_sources, render_sources

ANSWERS_HEADER = "X-Mailtriage-Answers"
"""Names the message a draft answers by its Message-ID, for people and mail clients to read."""
ANSWERS_HASH_HEADER = "X-Mailtriage-Answers-Hash"
"""Names it by its content (see ``answers_hash``): a draft is looked for by this before one is written again, since
two different mails can share a Message-ID."""
MAX_REFERENCES = 20
MAX_REPLY_TO = 5
"""A Reply-To naming more addresses than this is not a customer's: the draft goes to the sender instead."""
MAX_QUOTED_LINES = 200
_REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|antw|wg|r|ré|réf)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_QUOTE_INTRO = {
    "en": "On {date}, {name} wrote:",
    "fr": "Le {date}, {name} a écrit :",
    "de": "Am {date} schrieb {name}:",
}


def answers_hash(content_hash: str) -> str:
    """What ANSWERS_HASH_HEADER holds for a message: the first 128 bits of its content's SHA-256, which fit on one
    header line (the whole hash would be folded onto a second)."""
    return content_hash[:32]


def reply_subject(subject: str) -> str:
    """``Re: `` and the original subject, without piling up prefixes (Re:, RE :, AW:, SV:...)."""
    return "Re: " + _REPLY_PREFIX.sub("", subject).strip()


def greeting_name(sender: Address | None) -> str:
    """The name to greet the customer by, or '' when the From header gives no usable one: only letters, with
    spaces, dots, hyphens and apostrophes between them, so that what a broken header decodes to (U+FFFD, stray
    symbols) never opens a reply."""
    if sender is None or not sender.name or "@" in sender.name:
        return ""
    name = sender.name.strip().strip("\"'")
    if "," in name:  # "Schneider, Björn"
        last, _, first = name.partition(",")
        name = f"{first.strip()} {last.strip()}".strip()
    return name if any(ch.isalpha() for ch in name) and all(map(_in_a_name, name)) else ""


_TITLES = {"mr", "mrs", "ms", "miss", "dr", "prof", "sir", "m", "mme", "mlle", "herr", "frau"}


def first_name(greeting: str) -> str:
    """The first name in a greeting name ("Margaret Holloway": "Margaret"), for languages that greet by it; the
    whole name when it starts with a title or an initial ("Dr. Holloway", "M. Holloway"); '' for ''."""
    words = greeting.split()
    if len(words) < 2:
        return greeting
    first = words[0].rstrip(".").casefold()
    return greeting if first in _TITLES or len(first) == 1 else words[0]


def _in_a_name(ch: str) -> bool:
    return ch.isalpha() or ch in " .-'’" or unicodedata.category(ch).startswith("M")


def references(parsed: ParsedEmail, patterns: Sequence[str], models: Sequence[str] = ()) -> list[str]:
    """Order, invoice or ticket numbers in the subject and the customer's text, in order of appearance, once each;
    what is a product's model (``models``) is not one."""
    return [found for found in _found(parsed, patterns) if found not in models]


def models(parsed: ParsedEmail, patterns: Sequence[str]) -> list[str]:
    """Product model numbers the customer gave (NC-700, KT-170), in order of appearance, once each."""
    return _found(parsed, patterns)


def _found(parsed: ParsedEmail, patterns: Sequence[str]) -> list[str]:
    found: dict[str, None] = {}
    for text in (parsed.subject, parsed.new_text or parsed.text):
        for pattern in patterns:
            for match in re.finditer(pattern, text):
                found.setdefault(match.group(0).lstrip("#"), None)
    return list(found)


def has_photos(parsed: ParsedEmail) -> bool:
    """Whether the customer attached a picture (a photo of the product, of the damage)."""
    return any(a.content_type.lower().startswith("image/") for a in parsed.attachments)


def has_documents(parsed: ParsedEmail) -> bool:
    """Whether the customer attached a document (a receipt, an invoice: PDF, a scan, an office file)."""
    return any(a.content_type.lower().startswith(_DOCUMENTS) for a in parsed.attachments)


_REASON = re.compile(
    r"\b(because|since (it|the)|as (it|the) (is|was|does)|due to|the reason|(is|was|are|were) (broken|faulty|defective|"
    r"damaged|too (small|big|large|loud|short|long))|(doesn't|does not|didn't|did not|won't|will not) (fit|work)|"
    r"wrong (size|colou?r|item|model)|not as described|changed my mind|no longer need|"
    r"parce que?|car |puisqu|en raison|la raison|ne (fonctionne|marche|convient|correspond) (pas|plus)|"
    r"trop (petite?s?|grande?s?|bruyante?s?|courte?s?|longue?s?)|mauvaise? (taille|couleur|article|modèle)|"
    r"pas conforme|"
    r"changé d'avis|plus besoin|weil|wegen|der grund|funktioniert nicht|passt nicht|zu (klein|groß|laut|kurz|lang)|"
    r"falsche[nrs]? (größe|farbe|artikel|modell)|nicht wie beschrieben|entspricht nicht|anders überlegt|"
    r"nicht mehr (brauche|benötige))",
    re.IGNORECASE,
)


def reason_given(parsed: ParsedEmail) -> bool:
    """Whether the customer says why they write (a return's reason: "because it is too small", "parce qu'elle
    fuit", "weil es nicht passt"), so that a template does not ask for it again. A heuristic over their new text."""
    return bool(_REASON.search(parsed.new_text or parsed.text))


_DOCUMENTS = ("application/pdf", "image/", "application/msword", "application/vnd.openxmlformats",
              "application/vnd.oasis.opendocument")  # fmt: skip


def due_text(due: datetime, zone: str) -> str:
    """A due time as a template shows it, in the calendar's time zone."""
    return due.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


def quote(parsed: ParsedEmail, language: str) -> str:
    """The customer's message quoted below the reply, introduced in the reply's language."""
    when = parsed.date or parsed.internal_date
    intro = _QUOTE_INTRO.get(language, _QUOTE_INTRO["en"]).format(
        date=when.strftime("%d.%m.%Y %H:%M") if when else "?", name=str(parsed.sender) if parsed.sender else "?"
    )
    lines = parsed.text.splitlines()[:MAX_QUOTED_LINES]
    return intro + "\n" + "\n".join(f"> {line}" if line else ">" for line in lines)


MAX_LINE = 998
_POLICY = policy.SMTP.clone(max_line_length=MAX_LINE)
"""Lines up to RFC 5322's hard limit: under the default 78, a Message-ID longer than a line (Exchange writes them
near 100 characters) is RFC 2047-encoded into In-Reply-To and References, which no mail client matches, and the
draft is not threaded to the customer's message."""
_PLAIN_VALUE = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")
"""Printable ASCII words, one space apart: a header value that the policy would write exactly as it is. Such
headers (Date, the msg-ids, our own) skip EmailMessage's parsing and refolding, most of a draft's building time;
anything else (a CR, a tab, 8-bit text) goes through it."""


def recipients(parsed: ParsedEmail, foreign_reply_to: str = "use") -> tuple[tuple[Address, ...], str | None]:
    """Who the draft goes to, and a note for the agent when a Reply-To points outside the sender's domain.

    The Reply-To when it names at most MAX_REPLY_TO addresses, else the sender. A Reply-To elsewhere than the
    sender's domain is what a contact form sets, and also what an impostor sets: it is used (``"use"``) or
    passed over for the sender (``"sender"``), and said either way.
    """
    sender = (parsed.sender,) if parsed.sender else ()
    reply_to = parsed.reply_to if len(parsed.reply_to) <= MAX_REPLY_TO else ()
    if not reply_to:
        return sender, None
    home = _domain(parsed.sender.email) if parsed.sender else ""
    foreign = sorted({a.email for a in reply_to if not _same_domain(_domain(a.email), home)})
    if not foreign:
        return reply_to, None
    where = f"Reply-To {', '.join(foreign)} is outside the sender's domain ({home or 'no sender'})"
    if foreign_reply_to == "sender" and sender:
        return sender, f"{where}: the draft is addressed to the sender instead"
    return reply_to, f"{where}: the draft is addressed to it"


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def _same_domain(one: str, other: str) -> bool:
    """The same domain, or one a subdomain of the other (mail.example.org and example.org)."""
    return bool(one and other) and (one == other or one.endswith(f".{other}") or other.endswith(f".{one}"))


def build_reply(
    parsed: ParsedEmail,
    body: str,
    language: str,
    *,
    from_address: str,
    now: datetime,
    to: tuple[Address, ...] | None = None,
) -> bytes:
    """The draft as raw message bytes (CRLF line ends), ready to be appended to the Drafts folder; ``to``: its
    recipients (else as ``recipients`` chooses them)."""
    message = EmailMessage(policy=_POLICY)
    name, address = parseaddr(from_address)
    message["From"] = HeaderAddress(display_name=name, addr_spec=address)
    message["To"] = [HeaderAddress(display_name=a.name, addr_spec=a.email) for a in (to or recipients(parsed)[0])]
    message["Subject"] = reply_subject(parsed.subject)
    plain: list[str] = []  # headers with nothing to encode or fold, written as they are (_PLAIN_VALUE)

    def add(header: str, value: str) -> None:
        if _PLAIN_VALUE.fullmatch(value) and len(header) + 2 + len(value) <= MAX_LINE:
            plain.append(f"{header}: {value}")
        else:
            message[header] = value

    add("Date", format_datetime(now))
    add("Message-ID", make_msgid(domain=address.partition("@")[2] or None))
    # A msg-id is ASCII (RFC 5322): one decoded from raw 8-bit bytes would be encoded into a word no one matches.
    thread = [m for m in (*parsed.references[-(MAX_REFERENCES - 1) :], parsed.message_id) if m.isascii()]
    if parsed.message_id.isascii():
        add("In-Reply-To", parsed.message_id)
    if thread:
        add("References", " ".join(thread))
    add(ANSWERS_HEADER, parsed.message_id)
    add(ANSWERS_HASH_HEADER, answers_hash(parsed.content_hash))
    message.set_content(
        body.rstrip() + "\n\n" + quote(parsed, language) + "\n", charset="utf-8", cte="quoted-printable"
    )
    message["Content-Language"] = language  # after set_content, which replaces the Content-* headers
    head, end, rest = message.as_bytes().partition(b"\r\n\r\n")
    return head + "".join(f"\r\n{line}" for line in plain).encode("ascii") + end + rest


@dataclass(frozen=True)
class Draft:
    """A reply draft and the approved template text that produced it (for the audit log)."""

    data: bytes
    template: str
    sha256: str
    approved_by: str
    approved_at: str
    to: tuple[str, ...] = ()
    note: str | None = None
    """Something about the draft the agent should know before sending it (a Reply-To elsewhere)."""
    text: str = ""
    """The reply's own words, above the quoted message: compared later with what the agent sent."""


class Drafter:
    """Renders a message's reply template in its language and builds the threaded draft; drafts only from
    templates approved as they are now, and only text that passes the binding-language lint."""

    def __init__(
        self,
        templates: Templates,
        wording: DraftSettings,
        policy: Policy,
        *,
        target: timedelta = timedelta(hours=24),
        zone: str = "UTC",
    ) -> None:
        self.templates = templates
        self.policy = policy
        self.from_address = wording.from_address
        self.wording = wording
        self.reference_patterns = wording.reference_patterns
        self.foreign_reply_to = wording.foreign_reply_to
        self.target = target
        """When the message has no recorded due time (deadlines off), ``due`` is this after it arrived."""
        self.zone = zone
        folder = templates.folder
        self._sources = Stamped(lambda name: _with_files(folder, read_sources(folder, name)))
        """Each template as last read and checked, read again when one of its files changed."""
        self._approvals = Stamped(lambda manifest: (read_approvals(folder), [folder / manifest]))

    def __call__(
        self, parsed: ParsedEmail, template: str, language: str, now: datetime, due: datetime | None = None
    ) -> Draft:
        """The draft. Raises TemplateError when the template is missing, unapproved, changed since its approval,
        fails to render, or renders text the lint refuses."""
        relative, used = self.templates.path(template, language)
        name = relative.removesuffix(".txt.j2")
        approvals = self._approvals.get(MANIFEST)
        sources = self._sources.get(name)
        problem = approval_problem(self.templates.folder, name, approvals, sources)
        if problem is not None:
            raise TemplateError(name, problem)
        given = models(parsed, self.wording.model_patterns)
        found = references(parsed, self.reference_patterns, given)
        context = {
            "greeting_name": greeting_name(parsed.sender),
            "first_name": first_name(greeting_name(parsed.sender)),
            "subject": parsed.subject,
            "references": found,
            "models": given,
            "photos": has_photos(parsed),
            "documents": has_documents(parsed),
            "reason": reason_given(parsed),
            "signature": self.wording.signature_for(used),
            "due": due_text(due or (parsed.internal_date or now) + self.target, self.zone),
        }
        body = render_sources(sources, context)
        customer = [str(context["greeting_name"]), parsed.subject, *found, *given]
        findings = self.policy.lint(body, used, template=name, customer=[str(c) for c in customer])
        if findings:
            raise TemplateError(name, "the draft fails the lint: " + "; ".join(str(f) for f in findings))
        approval = approvals[name]
        to, note = recipients(parsed, self.foreign_reply_to)
        data = build_reply(parsed, body, used, from_address=self.from_address, now=now, to=to)
        shown = tuple(a.email for a in to)
        return Draft(data, name, approval.sha256, approval.approved_by, approval.approved_at, shown, note, body)


def _with_files(folder: Path, sources: Sources) -> tuple[Sources, list[Path]]:
    return sources, [folder / path for path in sources.files]
