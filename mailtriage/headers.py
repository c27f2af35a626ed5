"""Header values as text, best-effort: encoded-words in their own charsets, raw 8-bit bytes, folding, control
characters and line breaks that would add a header; address lists where an encoded name can never become an
address; message-ids and dates.

Headers are decoded here rather than by ``policy.default``: its header objects cost most of the parse time and
raise on access for malformed values, where we want the text whatever its state.
"""

from __future__ import annotations

import codecs
import re
from datetime import UTC, datetime
from email.header import decode_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

import charset_normalizer

from mailtriage.models import Address

MSGID = re.compile(r"<[^<>\s]+>")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]+")
_FOLDING = re.compile(r"\r?\n(?=[ \t])")
_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")
_SURROGATES = re.compile(r"[\udc80-\udcff]")


Headers = dict[str, str]


def header_map(msg: Message) -> Headers:
    """Raw header values by lower-case name, the first of each (one pass; Message.get scans them all each time)."""
    found: Headers = {}
    for key, value in msg.raw_items():
        found.setdefault(key.lower(), str(value))
    return found


def header(headers: Headers, name: str, defects: list[str]) -> str:
    """The decoded value of header ``name`` on one line ('' when absent), however broken its encoding."""
    raw = _FOLDING.sub("", raw_header(headers, name))
    return clean_header(name, decode_words(raw, name, defects), defects)


def raw_header(headers: Headers, name: str) -> str:
    # compat32 keeps raw 8-bit bytes in a header value as surrogates, which _decode_words turns back into text.
    return headers.get(name.lower(), "")


def decode_words(raw: str, name: str, defects: list[str]) -> str:
    """Decode RFC 2047 encoded-words, each in its own charset, with a detected one where that is unknown."""
    if _SURROGATES.search(raw):
        raw = _decode_8bit(raw.encode("utf-8", "surrogateescape"))
        defects.append(f"{name} header has raw 8-bit bytes")
    if "=?" not in raw:
        return raw
    try:
        chunks = decode_header(raw)
    except Exception:
        defects.append(f"{name} header has malformed encoded-words")
        return raw
    words = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            words.append(chunk)
            continue
        words.append(decode_bytes(chunk, charset, f"{name} header", defects))
    return "".join(words)


def decode_bytes(data: bytes, charset: str | None, what: str, defects: list[str]) -> str:
    """Decode with ``charset`` when it is known and fits, else with a detected one, else UTF-8 with U+FFFD."""
    declared = charset.strip().lower() if charset else None
    if declared in ("unknown-8bit", "x-unknown"):
        declared = None
    if declared:
        try:
            codecs.lookup(declared)
        except LookupError:
            defects.append(f"{what}: unknown charset {declared!r}")
            declared = None
    try:
        return data.decode(declared or "utf-8")
    except UnicodeDecodeError:
        pass
    encoding = "cp1252" if _looks_western(data) else _detect(data)
    defects.append(f"{what}: not valid {declared or 'utf-8'}, decoded as {encoding}")
    return data.decode(encoding, errors="replace")


_WESTERN_MARKS = set("€‚„…‘’“”–—•«»°§©®™·")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]{4,}")


def _looks_western(data: bytes) -> bool:
    """Whether ``data`` reads as Windows-1252 text (the usual mislabel in English, French and German mail).

    Charset detectors guess poorly on a few hundred bytes of accented Latin text; CJK and Cyrillic bytes read as
    1252 give long runs of symbols, which this rules out.
    """
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return False
    high = set(_NON_ASCII.findall(text))
    return all(ch.isalpha() or ch in _WESTERN_MARKS for ch in high) and not _NON_ASCII_RUN.search(text)


def _detect(data: bytes) -> str:
    best = charset_normalizer.from_bytes(data[:65536]).best()
    return best.encoding if best is not None else "utf-8"


def clean_header(name: str, text: str, defects: list[str]) -> str:
    if "\r" in text or "\n" in text:
        if _LINE_BREAKS.search(text.strip()):
            defects.append(f"{name} header decodes to several lines; joined into one")
        text = _LINE_BREAKS.sub(" ", text)
    if _CONTROL.search(text):
        defects.append(f"{name} header has control characters; removed")
        text = _CONTROL.sub("", text)
    return text.strip()


def _decode_8bit(data: bytes) -> str:
    """Raw header bytes as text: UTF-8, else Windows-1252; UTF-8 that is only damaged (cut short, a stray byte)
    stays UTF-8 with U+FFFD for the damage, rather than turning every accent into two symbols."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", errors="replace")
    if _NON_ASCII.search(text.replace("\ufffd", "")):
        return text
    return data.decode("cp1252", errors="replace")


def addresses(headers: Headers, name: str, defects: list[str]) -> tuple[Address, ...]:
    """The addresses of header ``name``, parsed from its raw value. An encoded-word stands for display text
    only (RFC 2047 section 5): it is set aside before the address list is parsed, so a ':' or '@' encoded in a
    name ('=?utf-8?q?Anna=0D=0ABcc:_attacker@evil.example?=') can never become, or add, an address."""
    raw = _FOLDING.sub("", raw_header(headers, name))
    if not raw:
        return ()
    if _SURROGATES.search(raw):
        raw = _decode_8bit(raw.encode("utf-8", "surrogateescape"))
        defects.append(f"{name} header has raw 8-bit bytes")
    words: list[str] = []

    def set_aside(found: re.Match[str]) -> str:
        words.append(found.group(0))
        return f"{_WORD_MARK}{len(words) - 1}{_WORD_MARK}"

    masked = _ENCODED_WORD.sub(set_aside, raw)
    result = []
    for display, email in getaddresses([masked]):
        email = clean_header(name, email, defects).strip("<> ")
        if _WORD_MARK in email:
            defects.append(f"{name} header: an encoded-word where an address should be; ignored")
            continue
        if "@" not in email:
            if email:
                defects.append(f"{name} header: {email[:60]!r} is not an address")
            continue
        display = _WORD_BACK.sub(lambda m: words[int(m.group(1))], display)
        display = clean_header(name, decode_words(display, name, defects), defects)
        result.append(Address(display.strip('" '), email))
    return tuple(result)


_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_WORD_MARK = "QMTEWQ"
"""Stands in for an encoded-word while an address list is parsed: letters only, so it is read as a word."""
_WORD_BACK = re.compile(f"{_WORD_MARK}(\\d+){_WORD_MARK}")


def first(addresses: tuple[Address, ...]) -> Address | None:
    return addresses[0] if addresses else None


def first_msgid(value: str) -> str | None:
    found = MSGID.search(value)
    if found:
        return found.group(0)
    value = value.strip()
    return f"<{value}>" if value and " " not in value else None


def date(headers: Headers, defects: list[str]) -> datetime | None:
    raw = raw_header(headers, "Date")
    if not raw:
        return None
    try:
        parsed = parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        defects.append(f"Date header is not a date: {raw.strip()[:80]!r}")
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- body ------------------------------------------------------------------------------------------------------------
