"""Raw message bytes into a :class:`ParsedEmail`, best-effort: malformed mail is decoded as well as it can be and
what was wrong is listed in ``defects``, never raised.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from email import policy
from email.message import Message
from email.parser import BytesParser

import lxml.html
from lxml.etree import ParserError
from mailparser_reply import EmailReplyParser

from mailtriage import headers as hdr
from mailtriage.models import Address, Attachment, MessageKind, ParsedEmail

MAX_DEPTH = 40
"""Deeper MIME nesting than this is not walked (and recorded as a defect): real mail nests a handful of levels."""
MAX_PARTS = 500
MAX_DEFECTS = 20
"""Defects listed per message; the rest are counted (a header of 50,000 non-addresses is one defect each)."""
MAX_TEXT_CHARS = 200_000
"""The body text kept; the customer's new text is looked for in its first ``NEW_TEXT_WINDOW`` characters."""
NEW_TEXT_WINDOW = 8_000
SYNTHETIC_DOMAIN = "mailtriage.invalid"

_PARSER = BytesParser(policy=policy.compat32)
_REPLY_PARSER = EmailReplyParser(languages=["en", "fr", "de"])
_AUTOMATIC_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?reply|out of (the )?office|autoreply|abwesenheitsnotiz|abwesend|automatische antwort"
    r"|r[ée]ponse automatique|absence du bureau)",
    re.IGNORECASE,
)
_BOUNCE_SENDERS = ("mailer-daemon", "postmaster")
_AUTOMATIC_HEADERS = ("X-Autoreply", "X-Auto-Reply", "X-Autorespond", "X-Autorespond-From", "X-Autoresponse",
                      "X-Mail-Autoreply")  # fmt: skip
_NO_REPLY = re.compile(r"^(no|do[-_.]?not)[-_.]?reply([-_.+].*)?$", re.IGNORECASE)
_SUPPRESS_VALUES = {"all", "oof", "autoreply", "dr", "ndr", "rn", "nrn"}
_SPAM_ACTIONS = {"add header", "rewrite subject", "reject", "soft reject"}
"""Rspamd's actions for spam (``greylist`` and ``no action`` are not)."""


def parse_message(
    data: bytes,
    *,
    internal_date: datetime | None = None,
    own_addresses: frozenset[str] = frozenset(),
    whole_size: int | None = None,
) -> ParsedEmail:
    """Decode ``data`` (an RFC 5322 message) into a ParsedEmail; never raises for malformed input.

    ``whole_size``: the message's size when ``data`` is only its first bytes (see ``mailbox.READ_BYTES``): what
    lies beyond is not read, and a defect says so.
    """
    try:
        parsed = _parse(data, internal_date, own_addresses, hash_content(data, whole_size))
    except Exception as exc:  # a parser bug must not stop intake at this message: keep it, say why, go on
        return unparsed(data, internal_date, exc, whole_size)
    if whole_size is None:
        return parsed
    cut = f"only the first {len(data):,} of {whole_size:,} bytes were read; attachments beyond are not"
    return replace(parsed, size=whole_size, defects=(*parsed.defects, cut))


def unparsed(
    data: bytes, internal_date: datetime | None, error: Exception, whole_size: int | None = None
) -> ParsedEmail:
    """What is recorded of a message the parser failed on: its identity, its size and the error."""
    content_hash = hash_content(data, whole_size)
    return ParsedEmail(
        message_id=f"<{content_hash[:32]}@{SYNTHETIC_DOMAIN}>",
        message_id_synthetic=True,
        sender=None,
        reply_to=(),
        to=(),
        cc=(),
        subject="",
        date=None,
        internal_date=internal_date,
        in_reply_to=None,
        references=(),
        text="",
        new_text="",
        attachments=(),
        kind=MessageKind.CUSTOMER,
        kind_reason="unknown: the message could not be parsed",
        content_hash=content_hash,
        size=whole_size or len(data),
        defects=(f"the parser failed ({type(error).__name__}: {error}); left for a human",),
    )


def _parse(
    data: bytes, internal_date: datetime | None, own_addresses: frozenset[str], content_hash: str
) -> ParsedEmail:
    defects: list[str] = []
    msg = _structure(data, defects)
    headers = hdr.header_map(msg)
    message_id = hdr.first_msgid(hdr.header(headers, "Message-ID", defects))
    synthetic = message_id is None
    if message_id is None:
        message_id = f"<{content_hash[:32]}@{SYNTHETIC_DOMAIN}>"
        defects.append("no Message-ID: a synthetic one was made from the content")
    text, attachments, content_types = _body(msg, defects)
    sender = hdr.first(hdr.addresses(headers, "From", defects))
    subject = hdr.header(headers, "Subject", defects)
    kind, reason = _kind(headers, sender, subject, content_types, own_addresses, defects)
    customer = kind is MessageKind.CUSTOMER
    return ParsedEmail(
        message_id=message_id,
        message_id_synthetic=synthetic,
        sender=sender,
        reply_to=hdr.addresses(headers, "Reply-To", defects) if customer else (),
        to=hdr.addresses(headers, "To", defects) if customer else (),
        cc=hdr.addresses(headers, "Cc", defects) if customer else (),
        subject=subject,
        date=hdr.date(headers, defects),
        internal_date=internal_date,
        in_reply_to=hdr.first_msgid(hdr.header(headers, "In-Reply-To", defects)),
        references=tuple(hdr.MSGID.findall(hdr.header(headers, "References", defects))),
        text=text,
        new_text=_new_text(text, defects) if customer else "",
        attachments=attachments,
        kind=kind,
        kind_reason=reason,
        content_hash=content_hash,
        size=len(data),
        defects=_listed(defects),
    )


def _structure(data: bytes, defects: list[str]) -> Message:
    try:
        msg = _PARSER.parsebytes(data)
    except RecursionError:
        # The stdlib parser recurses once per nesting level; thousands of levels exhaust the stack.
        msg = _PARSER.parsebytes(data, headersonly=True)
        defects.append("MIME structure nested too deeply to parse: body read as text")
    defects.extend(_describe(d) for d in msg.defects)
    return msg


def _listed(defects: list[str]) -> tuple[str, ...]:
    """Each defect once, at most MAX_DEFECTS of them and a count of the rest."""
    distinct = tuple(dict.fromkeys(defects))
    if len(distinct) <= MAX_DEFECTS:
        return distinct
    return (*distinct[:MAX_DEFECTS], f"{len(distinct) - MAX_DEFECTS} more defects not listed")


def hash_content(data: bytes, whole_size: int | None = None) -> str:
    """The identity of a message's content: SHA-256 of its bytes, in hex. Of a message read only in part
    (``whole_size``), of the part read and the whole size, which is what every reading of it gives again."""
    digest = hashlib.sha256(data)
    if whole_size is not None:
        digest.update(f"\0first {len(data)} of {whole_size} bytes".encode())
    return digest.hexdigest()


def _describe(defect: Exception) -> str:
    name = re.sub(r"(?<!^)(?=[A-Z])", " ", type(defect).__name__).lower()
    return f"{name}: {defect}" if str(defect) else name


def _leaves(msg: Message, defects: list[str]) -> Iterator[Message]:
    """Walk the MIME tree without recursion, depth-first, within MAX_DEPTH and MAX_PARTS."""
    stack: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    while stack:
        part, depth = stack.pop()
        seen += 1
        if seen > MAX_PARTS:
            defects.append(f"more than {MAX_PARTS} MIME parts: the rest were not read")
            return
        if part.get_content_type() == "message/rfc822" or not part.is_multipart():
            yield part
            continue
        if depth >= MAX_DEPTH:
            defects.append(f"MIME nesting deeper than {MAX_DEPTH} levels: the inner parts were not read")
            continue
        children = part.get_payload()
        if isinstance(children, list):
            stack.extend((child, depth + 1) for child in reversed(children) if isinstance(child, Message))


def _body(msg: Message, defects: list[str]) -> tuple[str, tuple[Attachment, ...], frozenset[str]]:
    plain: str | None = None
    html: str | None = None
    attachments: list[Attachment] = []
    content_types = {msg.get_content_type()}
    for part in _leaves(msg, defects):
        content_type = part.get_content_type()
        content_types.add(content_type)
        if part.get_content_maintype() == "multipart":
            content_type = "text/plain"  # a multipart whose parts could not be found: its body is all we have
        filename = _filename(part, defects)
        is_attachment = part.get_content_disposition() == "attachment" or filename is not None
        if content_type in ("text/plain", "text/html") and not is_attachment:
            if content_type == "text/plain" and plain is None:
                plain = _part_text(part, defects)
            elif content_type == "text/html" and html is None:
                html = _part_text(part, defects)
            continue
        if content_type == "multipart/report" or content_type.startswith("message/delivery"):
            continue
        attachments.append(Attachment(filename or "", content_type, _payload_size(part)))
    if plain is None and html is not None:
        text = _html_to_text(html, defects)
    else:
        text = plain or ""
    text = text.replace("\x00", "")
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS]
        defects.append(f"body text longer than {MAX_TEXT_CHARS} characters: truncated")
    return text, tuple(attachments), frozenset(content_types)


def _filename(part: Message, defects: list[str]) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        defects.append("an attachment's filename could not be decoded")
        return None
    return None if name is None else hdr.clean_header("filename", str(name), defects)


def _payload(part: Message, defects: list[str]) -> bytes:
    raw = part.get_payload()
    if not isinstance(raw, str):
        return b""
    if part.get("Content-Transfer-Encoding", "").strip().lower() == "base64":
        return _lenient_base64(raw, defects)
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    return data if isinstance(data, bytes) else raw.encode("utf-8", "surrogateescape")


def _lenient_base64(raw: str, defects: list[str]) -> bytes:
    """Decode base64 skipping characters outside its alphabet and a dangling last character, as mail clients do."""
    encoded = re.sub(r"\s+", "", raw).split("=", 1)[0]
    cleaned = re.sub(r"[^A-Za-z0-9+/]+", "", encoded)
    if cleaned != encoded:
        defects.append("base64 body has characters outside the base64 alphabet; skipped")
    if len(cleaned) % 4 == 1:
        cleaned = cleaned[:-1]
    return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4))


def _payload_size(part: Message) -> int:
    if part.get_content_type() == "message/rfc822":
        return sum(len(bytes(p)) for p in part.get_payload() if isinstance(p, Message)) if part.is_multipart() else 0
    return len(_payload(part, []))


def _part_text(part: Message, defects: list[str]) -> str:
    charset = part.get_param("charset")
    return hdr.decode_bytes(_payload(part, defects), charset if isinstance(charset, str) else None, "body", defects)


_BLOCKS = ("p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote", "pre", "hr")


def _html_to_text(html: str, defects: list[str]) -> str:
    """Text of an HTML body, one line per block, without scripts and styles.

    lxml directly rather than an HTML-to-text library: those walk the tree in Python and cost 10x more per mail,
    and the classifier needs words and line breaks, not layout.
    """
    try:
        root = lxml.html.document_fromstring(html)
    except (ParserError, ValueError) as exc:
        defects.append(f"HTML could not be parsed ({exc}); tags stripped")
        return re.sub(r"<[^>]*>", " ", html)
    for bad in root.xpath("//script|//style|//head"):
        bad.drop_tree()
    for block in root.iter(*_BLOCKS):
        block.tail = "\n" + (block.tail or "")
    lines = (" ".join(line.split()) for line in root.text_content().splitlines())
    return "\n".join(line for line in lines if line)


def customer_text(text: str) -> str:
    """The customer's own new words in a mail body: quoted earlier messages and the signature removed."""
    return _new_text(text, [])


def _new_text(text: str, defects: list[str]) -> str:
    """The customer's own new words: quoted earlier messages and the signature removed.

    Only customer mail is classified, so only customer mail needs them: separating quotes is a third of the parse.
    """
    window = text[:NEW_TEXT_WINDOW]
    try:
        reply = _REPLY_PARSER.parse_reply(window)
    except Exception as exc:
        defects.append(f"quoted text could not be separated ({type(exc).__name__})")
        reply = None
    return (reply or window).strip()


# --- who wrote it ----------------------------------------------------------------------------------------------------


def _kind(
    headers: hdr.Headers,
    sender: Address | None,
    subject: str,
    content_types: frozenset[str],
    own: frozenset[str],
    defects: list[str],
) -> tuple[MessageKind, str]:
    """Tell customer mail from our own, bounces, spam the server marked, auto-replies and bulk mail (RFC 3834 and
    common practice)."""
    address = sender.email.lower() if sender else ""
    if address and address in own:
        return MessageKind.OWN, f"sent from our own address {address}"
    if "multipart/report" in content_types or "message/delivery-status" in content_types:
        return MessageKind.BOUNCE, "a delivery report (multipart/report)"
    if address.split("@")[0] in _BOUNCE_SENDERS:
        return MessageKind.BOUNCE, f"sent by {address}"
    spam = marked_spam(headers, defects)
    if spam is not None:
        return MessageKind.SPAM, spam
    said = _said_automatic(headers, defects)
    if said is not None:
        return said
    if _AUTOMATIC_SUBJECT.search(subject):
        return MessageKind.AUTO_REPLY, "subject of an automatic reply"
    if _NO_REPLY.match(address.split("@")[0]) and not hdr.header(headers, "Reply-To", defects):
        # A web form sends as no-reply with the customer in Reply-To; without one, there is no one to answer.
        return MessageKind.AUTO_REPLY, f"sent from the no-reply address {address}, without a Reply-To"
    return MessageKind.CUSTOMER, "written by a person"


def marked_spam(headers: hdr.Headers, defects: list[str]) -> str | None:
    """The header by which the mail server's filter marked the message as spam, if any: ``X-Spam-Flag: YES`` and
    ``X-Spam-Status: Yes`` (SpamAssassin), ``X-Spam: Yes``, ``X-Rspamd-Action`` of a spam action and
    ``X-Spamd-Result: default: True`` (Rspamd), ``X-MS-Exchange-Organization-SCL`` of 5 or more and
    ``X-Forefront-Antispam-Report`` with ``SFV:SPM`` (Exchange Online Protection)."""
    for name in ("X-Spam-Flag", "X-Spam-Status", "X-Spam"):
        value = hdr.header(headers, name, defects).strip()
        if value.lower().startswith("yes"):
            return f"{name}: {value[:3]}"
    action = hdr.header(headers, "X-Rspamd-Action", defects).strip().lower()
    if action in _SPAM_ACTIONS:
        return f"X-Rspamd-Action: {action}"
    if hdr.header(headers, "X-Spamd-Result", defects).strip().lower().startswith("default: true"):
        return "X-Spamd-Result: default: True"
    level = hdr.header(headers, "X-MS-Exchange-Organization-SCL", defects).strip()
    if level.isdigit() and 5 <= int(level) <= 9:
        return f"X-MS-Exchange-Organization-SCL: {level}"
    if "sfv:spm" in hdr.header(headers, "X-Forefront-Antispam-Report", defects).lower().replace(" ", ""):
        return "X-Forefront-Antispam-Report: SFV:SPM"
    return None


def _said_automatic(headers: hdr.Headers, defects: list[str]) -> tuple[MessageKind, str] | None:
    """What the headers say of automatic mail (RFC 3834 and the usual others), if anything."""
    auto_submitted = hdr.header(headers, "Auto-Submitted", defects).lower()
    if auto_submitted and auto_submitted != "no":
        return MessageKind.AUTO_REPLY, f"Auto-Submitted: {auto_submitted}"
    for name in _AUTOMATIC_HEADERS:
        if hdr.header(headers, name, defects):
            return MessageKind.AUTO_REPLY, f"{name} header"
    if hdr.header(headers, "X-Autogenerated", defects).lower() == "reply":
        return MessageKind.AUTO_REPLY, "X-Autogenerated: Reply"
    suppress = {v.strip().lower() for v in hdr.header(headers, "X-Auto-Response-Suppress", defects).split(",")}
    if suppress & _SUPPRESS_VALUES:
        return MessageKind.AUTO_REPLY, "X-Auto-Response-Suppress header"
    precedence = hdr.header(headers, "Precedence", defects).lower()
    if precedence == "auto_reply":
        return MessageKind.AUTO_REPLY, "Precedence: auto_reply"
    if precedence in ("bulk", "list", "junk"):
        return MessageKind.BULK, f"Precedence: {precedence}"
    for name in ("List-Id", "List-Unsubscribe"):
        if hdr.header(headers, name, defects):
            return MessageKind.BULK, f"{name} header"
    if hdr.header(headers, "Return-Path", defects).strip() == "<>":
        return MessageKind.AUTO_REPLY, "empty Return-Path"
    return None
