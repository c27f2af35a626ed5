"""The binding-language lint: phrases that could commit the company, per language, from a policy file that
compliance edits (``templates/policy.toml``), matched whole-word and regardless of case and accents.

Only text our templates add is linted: what comes from the customer (their name, subject, quoted mail) is not
our commitment, and is masked before the lint runs.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mailtriage.errors import ConfigError

CLASSES = ("guarantee", "promise", "liability", "deadline", "legal", "absolute")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_MASK = "\u2026"  # where customer text stood: matches no phrase


@dataclass(frozen=True)
class Phrase:
    """A pattern that commits the company: ``kind`` (one of CLASSES), in ``language`` ('*': every language)."""

    kind: str
    language: str
    pattern: str
    reason: str
    compiled: re.Pattern[str]


@dataclass(frozen=True)
class Allowance:
    """A phrase compliance allowed in one template, and why."""

    template: str
    pattern: str
    justification: str


@dataclass(frozen=True)
class Finding:
    """Something in a text the policy does not allow."""

    kind: str
    text: str
    reason: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.text!r} ({self.reason})"


@dataclass(frozen=True)
class Policy:
    phrases: tuple[Phrase, ...]
    allowances: tuple[Allowance, ...]
    max_words: int
    max_sentences: int

    def lint(
        self, text: str, language: str, *, template: str | None = None, customer: Iterable[str] = ()
    ) -> list[Finding]:
        """What in ``text`` (in ``language``) the policy does not allow, once the ``customer``'s own words (their
        name, subject, order numbers) are masked; phrases allowed for ``template`` are let through."""
        for value in sorted((v for v in customer if v), key=len, reverse=True):
            text = text.replace(value, _MASK)
        plain = fold(text)
        allowed = {fold(a.pattern) for a in self.allowances if a.template == template}
        findings = []
        for phrase in self.phrases:
            if phrase.language not in ("*", language):
                continue
            for match in phrase.compiled.finditer(plain):
                if not any(re.fullmatch(_whole(a), match.group(0)) for a in allowed):
                    findings.append(Finding(phrase.kind, match.group(0), phrase.reason))
        words, sentences = len(text.split()), len(_SENTENCE_END.findall(text))
        if words > self.max_words:
            findings.append(Finding("length", f"{words} words", f"at most {self.max_words} words"))
        if sentences > self.max_sentences:
            findings.append(Finding("length", f"{sentences} sentences", f"at most {self.max_sentences} sentences"))
        return findings


def fold(text: str) -> str:
    """Lower case without accents, for matching: 'Responsabilité' and 'responsabilite' read the same."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).replace("ß", "ss")


def _whole(pattern: str) -> str:
    return rf"(?<!\w)(?:{pattern})(?!\w)"


def load_policy(path: Path) -> Policy:
    """Read the policy file.

    Raises:
        ConfigError: naming the file, the entry and what is wrong with it.
    """
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(source, "(file)", str(path), "the lint policy file (templates/policy.toml)") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(source, "(file)", str(path), f"a readable TOML file ({exc})") from None
    phrases = tuple(_phrase(source, index, entry) for index, entry in enumerate(data.get("phrases", [])))
    allowances = tuple(
        Allowance(str(a["template"]), str(a["phrase"]), str(a["justification"])) for a in data.get("allow", [])
    )
    limits = data.get("limits", {})
    return Policy(phrases, allowances, int(limits.get("max_words", 120)), int(limits.get("max_sentences", 8)))


def _phrase(source: str, index: int, entry: dict[str, object]) -> Phrase:
    kind, pattern = str(entry.get("class", "")), str(entry.get("pattern", ""))
    if kind not in CLASSES:
        raise ConfigError(source, f"phrases[{index}].class", kind, f"one of {', '.join(CLASSES)}")
    try:
        compiled = re.compile(_whole(fold(pattern)))
    except re.error as exc:
        raise ConfigError(source, f"phrases[{index}].pattern", pattern, f"a regular expression ({exc})") from None
    return Phrase(kind, str(entry.get("language", "*")), pattern, str(entry.get("reason", "")), compiled)


def phrase_classes(policy: Policy, languages: Sequence[str]) -> dict[str, set[str]]:
    """Which classes of phrases the policy covers per language (for a check that none is missing)."""
    return {language: {p.kind for p in policy.phrases if p.language in ("*", language)} for language in languages}
