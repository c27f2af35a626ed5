"""The binding-language lint's engine: sentences, tokens and lemmas, and rules over them.

A text is split into sentences and each sentence into tokens; every token is lemmatized (simplemma: small, offline,
English, French and German among its languages) in each language the policy has rules for, since an English
sentence can stand in a German template. A rule is a sequence of elements with gaps allowed between them:

    we|you|it ~2 will|shall|going ~3 refund|reimburse|replace

Each element is alternatives separated by ``|``; an alternative matches a token whose lemma or written form is it
(case and accents aside; ``=return`` only as written, accents included: "Return it", not "Returns are...");
``erstatt*`` and ``*kosten`` match by beginning or end (German compounds); a name in capitals matches a kind of
token: NUM (a number, in digits or words), WEEKDAY, MONTH, UNIT (hour, day, week, month, working day, year...),
DAYWORD (today, tomorrow...). ``~N`` lets up to N tokens stand before the next element (``~`` alone: 3); without it
the next element follows at once. ``&`` joins conditions one token must meet together: ``rembourser&*ons`` is the
verb in a form ending "-ons" ("nous remboursons", "nous rembourserons"), not its infinitive ("merci de nous
envoyer"). ``^`` before the first element holds it to the sentence's first word.

Rules apply to statements, not to questions ("Could you send us a photo?"), unless a rule says ``questions =
true``. A match may run over commas ("we will, of course, refund you") unless the rule says ``clause = true``:
then it stays within one clause, as a German rule over "werden ... erstatten" must not join "bearbeitet werden
kann" to the next clause's "senden Sie uns". An exemption is a pattern that clears a sentence of some classes of
its language's rules: "Please never immerse the base in water" asks something of the customer.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

from simplemma import Lemmatizer
from simplemma.strategies import DefaultStrategy
from simplemma.strategies.dictionaries import StreamDictionaryFactory

DEFAULT_GAP = 3
_SENTENCE = re.compile(r"(?<=[.!?…])\s+|\n\s*\n|\n(?=\s*[-•*])")
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|\w+(?:['’]\w+)*|%|[,;:()–—]", re.UNICODE)
_NOT_AN_END = re.compile(
    r"(?:^|\s)(?:\d{1,2}|mr|mrs|ms|dr|st|nr|no|vol|ca|bzw|z|b|d|h|u|a|m|mme|mlle|etc|vs|e\.g|i\.e)\.$", re.IGNORECASE
)
BREAK = ","
"""The token a comma, semicolon, colon, dash or bracket becomes: where a clause ends."""
_EN_CONTRACTIONS = {"won't": ("will", "not"), "shan't": ("shall", "not"), "can't": ("can", "not"),
                    "'ll": ("will",), "n't": ("not",), "'re": ("are",), "'ve": ("have",), "'d": ("would",),
                    "'m": ("am",)}  # fmt: skip
_FR_ELISIONS = {"l": "le", "d": "de", "qu": "que", "j": "je", "n": "ne", "s": "se", "c": "ce", "m": "me",
                "t": "te", "jusqu": "jusque", "lorsqu": "lorsque", "puisqu": "puisque"}  # fmt: skip

_KIND_WORDS: dict[str, dict[str, str]] = {
    "NUM": {
        "en": "one two three four five six seven eight nine ten eleven twelve fifteen twenty thirty forty fifty "
        "hundred a an couple few",
        "fr": "un une deux trois quatre cinq six sept huit neuf dix onze douze quinze vingt trente quarante "
        "cinquante cent quelques",
        "de": "ein eine einen einem einer zwei drei vier funf sechs sieben acht neun zehn elf zwolf vierzehn "
        "funfzehn zwanzig dreissig achtundvierzig vierundzwanzig paar wenigen",
    },
    "WEEKDAY": {
        "en": "monday tuesday wednesday thursday friday saturday sunday",
        "fr": "lundi mardi mercredi jeudi vendredi samedi dimanche",
        "de": "montag dienstag mittwoch donnerstag freitag samstag sonnabend sonntag",
    },
    "MONTH": {
        "en": "january february march april may june july august september october november december",
        "fr": "janvier fevrier mars avril mai juin juillet aout septembre octobre novembre decembre",
        "de": "januar februar marz april mai juni juli august september oktober november dezember",
    },
    "UNIT": {
        "en": "minute minutes hour hours day days week weeks month months year years business working",
        "fr": "minute minutes heure heures jour jours semaine semaines mois an ans annee annees ouvre ouvres "
        "ouvrable ouvrables",
        "de": "minute minuten stunde stunden tag tage tagen woche wochen monat monate monaten jahr jahre jahren "
        "jahres werktag werktage werktagen arbeitstag arbeitstage arbeitstagen",
    },
    "DAYWORD": {"en": "today tomorrow tonight", "fr": "aujourd demain", "de": "heute morgen ubermorgen"},
}
KINDS: dict[str, dict[str, frozenset[str]]] = {
    kind: {language: frozenset(text.split()) for language, text in by_language.items()}
    for kind, by_language in _KIND_WORDS.items()
}
"""The kinds of token a rule can name, by language (folded forms): "four" is a number in English, an oven in
French. A language without a list of its own is read with every language's."""
_ANY_LANGUAGE = {kind: frozenset().union(*by_language.values()) for kind, by_language in KINDS.items()}


_ALSO = {("sommes", "fr"): "etre", ("gone", "en"): "go"}
"""Lemmas simplemma misses for common forms ("nous sommes" read as the noun "somme"): added, not replaced."""
_UMLAUT_SPELLED = re.compile(r"ae|oe|ue")
_UMLAUTS = {"ae": "ä", "oe": "ö", "ue": "ü"}


def fold(text: str) -> str:
    """Lower case without accents, for matching: 'Responsabilité' and 'responsabilite' read the same."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).replace("ß", "ss")


@dataclass(frozen=True)
class Token:
    text: str
    """As written."""
    forms: frozenset[str]
    """Folded: as written, and its lemma in the language looked at."""
    kinds: frozenset[str]
    written: str = ""
    """As written, in lower case (accents kept)."""


@dataclass(frozen=True)
class Sentence:
    text: str
    words: tuple[str, ...]
    question: bool


def sentences(text: str) -> list[Sentence]:
    """The sentences of ``text`` with their words (contractions and French elisions undone). A full stop after a
    number ("am 15. März") or a usual abbreviation ("Mr.", "z. B.") does not end a sentence."""
    parts: list[str] = []
    for part in _SENTENCE.split(text):
        part = part.strip()
        if parts and _NOT_AN_END.search(parts[-1]) and part[:1].isalnum():
            parts[-1] = f"{parts[-1]} {part}"
        elif part:
            parts.append(part)
    return [Sentence(part, tuple(words(part)), part.rstrip("\"'»“” )").endswith("?")) for part in parts]


def words(text: str) -> list[str]:
    """The words of ``text`` as the rules see them: English contractions and French elisions undone ("won't" is
    "will not", "l'équipe" is "le équipe"), a comma, semicolon, colon, dash or bracket as ``BREAK``."""
    out: list[str] = []
    for raw in _TOKEN.findall(text.replace("’", "'")):
        if raw in ",;:()–—":
            out.append(BREAK)
            continue
        lower = raw.lower()
        parts = _contraction(lower)
        out.extend(parts if parts else [raw])
    return out


def _contraction(word: str) -> list[str] | None:
    if "'" not in word:
        return None
    if word in _EN_CONTRACTIONS:
        return list(_EN_CONTRACTIONS[word])
    head, _, tail = word.partition("'")
    if head in _FR_ELISIONS:
        return [_FR_ELISIONS[head], tail]
    for ending, expanded in _EN_CONTRACTIONS.items():
        if ending.startswith(("'", "n'")) and word.endswith(ending):
            stem = word[: -len(ending)]
            return [stem, *expanded] if stem else list(expanded)
    if word.endswith("'s"):
        return [word[:-2], "s"]
    return [head, tail]


# simplemma reading its dictionaries compressed, in place: 21 MiB for en/fr/de where its default decodes them
# into dicts of 157 MiB, four times slower to load; the same lemma for each of the lint fixtures' 20,000 words.
_LEMMATIZER = Lemmatizer(lemmatization_strategy=DefaultStrategy(dictionary_factory=StreamDictionaryFactory()))


@lru_cache(maxsize=65536)
def token(word: str, language: str) -> Token:
    folded = fold(word)
    spellings = [word]
    if language == "de" and _UMLAUT_SPELLED.search(folded):  # "uebernehmen" typed for "übernehmen"
        spellings.append(_UMLAUT_SPELLED.sub(lambda m: _UMLAUTS[m.group(0)], word.lower()))
    forms = {folded}
    for spelling in spellings:
        forms.add(fold(spelling))
        try:
            forms.add(fold(_LEMMATIZER.lemmatize(spelling, lang=language)))
        except ValueError:  # a language simplemma does not know: the written form alone
            pass
    if (folded, language) in _ALSO:
        forms.add(_ALSO[folded, language])
    kinds = frozenset(kind for kind in KINDS if not _kind_words(kind, language).isdisjoint(forms))
    if folded[:1].isdigit():
        kinds |= {"NUM"}
    return Token(word, frozenset(forms), kinds, word.casefold())


def _kind_words(kind: str, language: str) -> frozenset[str]:
    return KINDS[kind].get(language, _ANY_LANGUAGE[kind])


# --- rules ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Element:
    exact: frozenset[str]
    prefixes: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()
    kinds: frozenset[str] = frozenset()
    gap: int = 0
    """How many tokens may stand between the previous element and this one."""
    also: tuple[Element, ...] = ()
    """Further conditions the same token must meet (``a&b``)."""
    first: bool = False
    """Only the sentence's first word (``^`` before the element)."""
    written: frozenset[str] = frozenset()
    """Words matched only as written, not by lemma (``=return``: "Return the kettle", not "Returns are...")."""

    def matches(self, token: Token) -> bool:
        if not self._alone(token):
            return False
        return all(other._alone(token) for other in self.also) if self.also else True

    def _alone(self, token: Token) -> bool:  # the lint's innermost loop: written for speed
        forms = token.forms
        if not self.exact.isdisjoint(forms) or token.written in self.written:
            return True
        if self.kinds and not self.kinds.isdisjoint(token.kinds):
            return True
        if self.prefixes:
            for form in forms:
                if form.startswith(self.prefixes):
                    return True
        if self.suffixes:
            for form in forms:
                if form.endswith(self.suffixes):
                    return True
        return False


@dataclass(frozen=True)
class Rule:
    """A sequence of elements that, found in a statement, makes it binding."""

    name: str
    kind: str
    language: str
    pattern: str
    reason: str
    questions: bool = False
    clause: bool = False
    elements: tuple[Element, ...] = field(default=(), compare=False)

    @property
    def anchors(self) -> frozenset[str]:
        """The forms one of which a sentence must hold for this rule to match (its most specific element's), or
        empty when every element is open (a kind, a wildcard): then it is always tried."""
        exact = [e for e in self.elements if e.exact and not (e.prefixes or e.suffixes or e.kinds or e.written)]
        return min((e.exact for e in exact), key=len) if exact else frozenset()


def compile_rule(rule: Rule, pattern: str | None = None) -> Rule:
    """``rule`` with the elements of ``pattern`` (by default its own; a policy passes the pattern with its word
    lists filled in, and the rule keeps the one written). Raises ValueError saying what is wrong with it."""
    elements: list[Element] = []
    gap, first = 0, False
    for part in (rule.pattern if pattern is None else pattern).split():
        if part == "^":
            if elements:
                raise ValueError("'^' after the first element")
            first = True
            continue
        if part.startswith("~"):
            if not elements:
                raise ValueError(f"{part!r} before any element")
            gap = int(part[1:]) if part[1:] else DEFAULT_GAP
            continue
        elements.append(replace(_element(part, gap), first=first and not elements))
        gap = 0
    if not elements:
        raise ValueError("no element")
    return replace(rule, elements=tuple(elements))


def _one_word(alternative: str) -> None:
    if alternative in KINDS:
        return
    read = [w for w in words(alternative) if w != BREAK]
    if len(read) != 1:
        spaced = " ".join(read)
        raise ValueError(f"{alternative!r} is read as {len(read)} words: write them as elements one after the other "
                         f"({spaced!r})")  # fmt: skip


def _element(part: str, gap: int) -> Element:
    first, *more = part.split("&")
    also = tuple(_alternatives(condition, 0, ()) for condition in more)
    return _alternatives(first, gap, also)


def _alternatives(part: str, gap: int, also: tuple[Element, ...]) -> Element:
    exact, prefixes, suffixes, kinds, written = set(), [], [], set(), set()
    for alternative in part.split("|"):
        if alternative in KINDS:
            kinds.add(alternative)
        elif alternative.startswith("=") and len(alternative) > 1:
            written.add(alternative[1:].casefold())
        elif not alternative or alternative == "*":
            raise ValueError(f"an empty alternative in {part!r}")
        elif alternative.endswith("*"):
            prefixes.append(fold(alternative[:-1]))
        elif alternative.startswith("*"):
            suffixes.append(fold(alternative[1:]))
        else:
            exact.add(fold(alternative))
        _one_word(alternative.strip("=*"))
    return Element(frozenset(exact), tuple(prefixes), tuple(suffixes), frozenset(kinds), gap, also,
                   written=frozenset(written))  # fmt: skip


@dataclass(frozen=True)
class Exemption:
    """A pattern that, found in a sentence, clears it of some classes of its language's rules: a request to the
    customer ("Please never immerse the base in water") or a hedge ("whether the repair is covered") is not the
    company's commitment."""

    pattern: Rule
    classes: frozenset[str]
    """The classes it clears; ``*``: every class."""

    def clears(self, kind: str) -> bool:
        return kind in self.classes or "*" in self.classes


@dataclass(frozen=True)
class Match:
    rule: Rule
    sentence: Sentence
    text: str
    """The words the rule matched, from the first to the last."""
    exempted_by: Exemption | None = None


@dataclass
class _Language:
    always: list[tuple[int, Rule]] = field(default_factory=list)
    index: dict[str, list[tuple[int, Rule]]] = field(default_factory=dict)
    """Rules by anchor, each with its place in the policy."""
    exemptions: list[Exemption] = field(default_factory=list)

    def candidates(self, present: set[str]) -> list[Rule]:
        """The rules a sentence holding these forms could match: each once, in the policy's order."""
        chosen = dict(self.always)
        for anchor in present & self.index.keys():
            chosen.update(self.index[anchor])
        return [chosen[place] for place in sorted(chosen)]


KNOWN_SENTENCES = 4096


class Rulebook:
    """Rules by language, indexed by their anchors so that a sentence is tried only against rules it could
    match: a 200-word draft is checked in a few milliseconds against hundreds of rules."""

    def __init__(self, rules: Iterable[Rule], exemptions: Iterable[Exemption] = ()) -> None:
        self.by_language: dict[str, _Language] = {}
        for place, rule in enumerate(rules):
            language = self.by_language.setdefault(rule.language, _Language())
            if rule.anchors:
                for anchor in rule.anchors:
                    language.index.setdefault(anchor, []).append((place, rule))
            else:
                language.always.append((place, rule))
        for exemption in exemptions:
            self.by_language.setdefault(exemption.pattern.language, _Language()).exemptions.append(exemption)
        self._known: dict[Sentence, list[Match]] = {}
        """What sentences already seen matched: a template's own sentences recur in every draft made from it."""

    @property
    def languages(self) -> list[str]:
        return sorted(self.by_language)

    def rules(self, language: str) -> list[Rule]:
        found = self.by_language.get(language)
        return [] if found is None else found.candidates(set(found.index))

    def matches(self, sentence: Sentence) -> list[Match]:
        """Every rule of every language that matches ``sentence``, each once; those an exemption of the rule's
        language clears carry it (``exempted_by``)."""
        known = self._known.get(sentence)
        if known is None:
            if len(self._known) >= KNOWN_SENTENCES:
                self._known.clear()  # a bound on memory; the sentences that recur are back within a few drafts
            known = self._known[sentence] = self._matches(sentence)
        return list(known)

    def _matches(self, sentence: Sentence) -> list[Match]:
        found: list[Match] = []
        for name, language in self.by_language.items():
            clauses = _clauses([token(word, name) for word in sentence.words])
            tokens = [t for clause in clauses for t in clause]
            present = set().union(*(t.forms for t in tokens)) if tokens else set()
            exemptions: list[Exemption] | None = None  # looked for once a rule matches: most sentences meet none
            for rule in language.candidates(present):
                if sentence.question and not rule.questions:
                    continue
                span = _span(rule, tokens, clauses)
                if span is not None:
                    part, (start, end) = span
                    text = " ".join(t.text for t in part[start : end + 1])
                    if exemptions is None:
                        exemptions = [e for e in language.exemptions if _span(e.pattern, tokens, clauses)]
                    exempted = next((e for e in exemptions if e.clears(rule.kind)), None)
                    found.append(Match(rule, sentence, text, exempted))
        return found


def _span(rule: Rule, tokens: list[Token], clauses: list[list[Token]]) -> tuple[list[Token], tuple[int, int]] | None:
    for part in clauses if rule.clause else [tokens]:
        span = _find(rule.elements, part)
        if span is not None:
            return part, span
    return None


def _clauses(tokens: Sequence[Token]) -> list[list[Token]]:
    parts: list[list[Token]] = [[]]
    for t in tokens:
        if t.text == BREAK:
            parts.append([])
        else:
            parts[-1].append(t)
    return [part for part in parts if part]


def _find(elements: Sequence[Element], tokens: Sequence[Token]) -> tuple[int, int] | None:
    """The first (start, end) token span where the elements match in order, within their gaps."""
    first = elements[0]
    for start, candidate in enumerate(tokens[:1] if first.first else tokens):
        if first.matches(candidate):
            end = _rest(elements, 1, tokens, start + 1)
            if end is not None:
                return start, end
    return None


def _rest(elements: Sequence[Element], index: int, tokens: Sequence[Token], position: int) -> int | None:
    if index == len(elements):
        return position - 1
    element = elements[index]
    for at in range(position, min(len(tokens), position + element.gap + 1)):
        if element.matches(tokens[at]):
            end = _rest(elements, index + 1, tokens, at + 1)
            if end is not None:
                return end
    return None
