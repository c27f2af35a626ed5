"""The binding-language lint policy: what a reply must not say because it could commit the company, from a file
that compliance edits (``templates/policy.toml``).

Its ``[[rules]]`` are read by the sentence lint (``lint.py``): each a sequence of lemmas with gaps, a class and a
reason, checked in every sentence against the rules of every language the policy has, whatever the template's
language. Older ``[[phrases]]`` (regular expressions over the whole text) are still honoured. Only text our
templates add is linted: what comes from the customer (their name, subject, quoted mail) is not our commitment,
and is masked before the lint runs.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailtriage.errors import ConfigError
from mailtriage.lint import Exemption, Match, Rule, Rulebook, compile_rule, fold, sentences

CLASSES = ("guarantee", "promise", "liability", "deadline", "legal", "absolute")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_MASK = "\u2026"  # where customer text stood: matches no rule
_WORD_LIST = re.compile(r"\$(\w+)")

__all__ = [
    "CLASSES",
    "Allowance",
    "Finding",
    "Phrase",
    "Policy",
    "SentenceLint",
    "fold",
    "load_policy",
    "phrase_classes",
]


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
    """A rule (by name) or a phrase (as matched) compliance allowed in one template, and why."""

    template: str
    pattern: str
    justification: str


@dataclass(frozen=True)
class Finding:
    """Something in a text the policy does not allow: its class, the words, why, the sentence and the rule."""

    kind: str
    text: str
    reason: str
    sentence: str = ""
    rule: str = ""

    def __str__(self) -> str:
        where = f" in {self.sentence!r}" if self.sentence and self.sentence != self.text else ""
        rule = f", rule {self.rule}" if self.rule else ""
        return f"{self.kind}: {self.text!r}{where} ({self.reason}{rule})"


@dataclass(frozen=True)
class SentenceLint:
    """One sentence as the lint reads it: the rules it meets, each with the exemption that clears it, if any."""

    sentence: str
    question: bool
    matches: tuple[Match, ...]

    @property
    def binding(self) -> tuple[Match, ...]:
        """The matches no exemption clears: what ``templates approve`` refuses."""
        return tuple(m for m in self.matches if m.exempted_by is None)


@dataclass(frozen=True)
class Policy:
    phrases: tuple[Phrase, ...]
    allowances: tuple[Allowance, ...]
    max_words: int
    max_sentences: int
    rules: Rulebook = Rulebook(())

    def lint(
        self, text: str, language: str, *, template: str | None = None, customer: Iterable[str] = ()
    ) -> list[Finding]:
        """What in ``text`` the policy does not allow, once the ``customer``'s own words (their name, subject,
        order numbers) are masked; rules and phrases allowed for ``template`` are let through. ``language`` is the
        template's, for the older phrases; the rules of every language are tried on every sentence."""
        for value in sorted((v for v in customer if v), key=len, reverse=True):
            text = text.replace(value, _MASK)
        allowed = {fold(a.pattern) for a in self.allowances if a.template == template}
        findings = [*self._rule_findings(text, allowed), *self._phrase_findings(text, language, allowed)]
        words, ends = len(text.split()), len(_SENTENCE_END.findall(text))
        if words > self.max_words:
            findings.append(Finding("length", f"{words} words", f"at most {self.max_words} words"))
        if ends > self.max_sentences:
            findings.append(Finding("length", f"{ends} sentences", f"at most {self.max_sentences} sentences"))
        return findings

    def explain(self, text: str, languages: Sequence[str] = ()) -> list[SentenceLint]:
        """Each sentence of ``text`` with every rule it meets (of ``languages``; none given: of every language),
        those an exemption clears included: what ``templates lint`` shows compliance."""
        return [
            SentenceLint(s.text, s.question, tuple(m for m in self.rules.matches(s)
                                                   if not languages or m.rule.language in languages))
            for s in sentences(text)
        ]  # fmt: skip

    def _rule_findings(self, text: str, allowed: set[str]) -> list[Finding]:
        found: dict[tuple[str, str], Finding] = {}
        for sentence in sentences(text):
            for match in self.rules.matches(sentence):
                if match.exempted_by is not None or fold(match.rule.name) in allowed or fold(match.text) in allowed:
                    continue
                finding = Finding(match.rule.kind, match.text, match.rule.reason, sentence.text, match.rule.name)
                found.setdefault((sentence.text, match.rule.kind), finding)  # a class once per sentence
        return list(found.values())

    def _phrase_findings(self, text: str, language: str, allowed: set[str]) -> list[Finding]:
        plain, findings = fold(text), []
        for phrase in self.phrases:
            if phrase.language not in ("*", language):
                continue
            for match in phrase.compiled.finditer(plain):
                if not any(re.fullmatch(_whole(a), match.group(0)) for a in allowed):
                    findings.append(Finding(phrase.kind, match.group(0), phrase.reason))
        return findings


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
    words, reasons = data.get("words", {}), data.get("reasons", {})
    rules = [r for i, entry in enumerate(data.get("rules", [])) for r in _rules(source, i, entry, words, reasons)]
    exemptions = [e for i, entry in enumerate(data.get("exemptions", [])) for e in _exemptions(source, i, entry, words)]
    allowances = tuple(
        Allowance(str(a["template"]), str(a.get("rule") or a["phrase"]), str(a["justification"]))
        for a in data.get("allow", [])
    )
    limits = data.get("limits", {})
    return Policy(phrases, allowances, int(limits.get("max_words", 120)), int(limits.get("max_sentences", 8)),
                  Rulebook(rules, exemptions))  # fmt: skip


def _phrase(source: str, index: int, entry: dict[str, object]) -> Phrase:
    kind, pattern = str(entry.get("class", "")), str(entry.get("pattern", ""))
    if kind not in CLASSES:
        raise ConfigError(source, f"phrases[{index}].class", kind, f"one of {', '.join(CLASSES)}")
    try:
        compiled = re.compile(_whole(fold(pattern)))
    except re.error as exc:
        raise ConfigError(source, f"phrases[{index}].pattern", pattern, f"a regular expression ({exc})") from None
    return Phrase(kind, str(entry.get("language", "*")), pattern, str(entry.get("reason", "")), compiled)


def _rules(
    source: str, index: int, entry: dict[str, Any], words: dict[str, Any], reasons: dict[str, Any]
) -> list[Rule]:
    """The rules of one ``[[rules]]`` entry, one per pattern in its ``match``; its reason, when it gives none, is
    its class's in its language (``[reasons.en] promise = "..."``)."""
    kind, language = str(entry.get("class", "")), _language(source, f"rules[{index}]", entry)
    if kind not in CLASSES:
        raise ConfigError(source, f"rules[{index}].class", kind, f"one of {', '.join(CLASSES)}")
    name = str(entry.get("name") or f"{kind}-{language}-{index + 1}")
    reason = str(entry.get("reason") or reasons.get(language, {}).get(kind, ""))
    questions, clause = bool(entry.get("questions")), bool(entry.get("clause"))
    return [
        _compile(source, f"rules[{index}]", Rule(name, kind, language, written, reason, questions, clause), expanded)
        for written, expanded in _patterns(source, f"rules[{index}]", entry, words.get(language, {}))
    ]


def _exemptions(source: str, index: int, entry: dict[str, Any], words: dict[str, Any]) -> list[Exemption]:
    """The exemptions of one ``[[exemptions]]`` entry: patterns that clear a sentence of the listed classes."""
    where, language = f"exemptions[{index}]", _language(source, f"exemptions[{index}]", entry)
    classes = entry.get("classes", "*")
    classes = [classes] if isinstance(classes, str) else classes
    if not classes or not all(c in (*CLASSES, "*") for c in classes):
        raise ConfigError(source, f"{where}.classes", str(classes), f"a list of {', '.join(CLASSES)} or '*'")
    name, reason = str(entry.get("name") or f"exemption-{language}-{index + 1}"), str(entry.get("reason", ""))
    return [
        Exemption(_compile(source, where, Rule(name, "exemption", language, written, reason), expanded),
                  frozenset(classes))
        for written, expanded in _patterns(source, where, entry, words.get(language, {}))
    ]  # fmt: skip


def _language(source: str, where: str, entry: dict[str, Any]) -> str:
    language = str(entry.get("language", ""))
    if not language:
        raise ConfigError(source, f"{where}.language", language, "a language code (en, fr, de...)")
    return language


def _patterns(source: str, where: str, entry: dict[str, Any], words: dict[str, Any]) -> list[tuple[str, str]]:
    """The entry's ``match`` (a pattern or a list), each as written and with ``$name`` replaced by the word list
    ``name`` of its language (``[words.en] outcome = "refund|replace|..."``)."""
    patterns = entry.get("match", "")
    patterns = [patterns] if isinstance(patterns, str) else patterns
    if not patterns or not all(isinstance(p, str) and p.strip() for p in patterns):
        raise ConfigError(source, f"{where}.match", str(patterns), "a pattern, or a list of patterns")
    try:
        return [(pattern, _WORD_LIST.sub(lambda m: str(words[m.group(1)]), pattern)) for pattern in patterns]
    except KeyError as exc:
        raise ConfigError(source, f"{where}.match", str(patterns), "word lists defined in [words.<language>] "
                          f"(there is no {exc.args[0]!r})") from None  # fmt: skip


def _compile(source: str, where: str, rule: Rule, expanded: str) -> Rule:
    """``rule`` (its pattern as written, to be shown) matching ``expanded``, the pattern with its word lists."""
    try:
        return compile_rule(rule, expanded)
    except ValueError as exc:
        raise ConfigError(source, f"{where}.match", rule.pattern, f"lemmas with gaps ({exc})") from None


def phrase_classes(policy: Policy, languages: Sequence[str]) -> dict[str, set[str]]:
    """Which classes the policy covers per language, by rules and phrases (for a check that none is missing)."""
    covered: dict[str, set[str]] = {}
    for language in languages:
        kinds = {p.kind for p in policy.phrases if p.language in ("*", language)}
        covered[language] = kinds | {rule.kind for rule in policy.rules.rules(language)}
    return covered
