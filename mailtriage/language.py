"""The language of a message (py3langid: offline, a model of a few MB shipped in the package).

The set of languages it chooses among is broad on purpose, so that a Spanish or Dutch mail is called what it is
rather than the closest of the languages we reply in; below ``MIN_CONFIDENCE`` the language is ``unknown``.

py3langid's own identifier holds about 75 MB once restricted: the weights of all 142 of its languages (28 MB)
beside the restricted copy, and the automaton that finds its features, the byte strings of 1 to 6 bytes it was
trained on: 104,583 states whose 38,346 distinct rows of 256 next states take 39 MB. ``Identifier`` keeps what the
candidates need, about 4 MB, and answers exactly as py3langid does (``tests/test_language.py`` compares them):

- the weights of the candidate columns, as py3langid restricts them, in the model's float16 (float32 would double
  them and answer the same: py3langid's arithmetic is float32 on float16 weights, and so is ours);
- the automaton as a sorted table of the strings its states stand for. It is an Aho-Corasick automaton (all 26.8
  million transitions of the shipped model checked once): after any text it is in the state of the longest suffix
  of that text that is a state's string, and emits that state's feature. So looking up the last 1 to 6 bytes at
  every position, longest match winning, finds the features its walk finds.

The price: reading the states' strings adds about 0.15 s to the build (py3langid's own load, mostly unpacking
its xz, takes about 0.4 s), and the six NumPy searches cost more than py3langid's walk on a short text: about
90 rather than 30 microseconds for a mail's subject and first lines, 0.4 rather than 0.2 ms for 2,000 characters.
"""

from __future__ import annotations

import math
import threading
import unicodedata
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray
from py3langid.langid import MODEL_FILE, LanguageIdentifier

UNKNOWN = "unknown"
MIN_CONFIDENCE = 0.8
CANDIDATES = ("en", "fr", "de", "es", "it", "nl", "pt", "pl", "sv", "da", "no", "fi", "cs", "tr", "ru")
_LOCK = threading.Lock()
_LENGTH_BITS = 3  # a state's key is its string, then its length in 3 bits...
_MAX_LENGTH = 7  # ...so that strings of up to 7 bytes fit in 64 bits


@dataclass(frozen=True, eq=False)
class Identifier:
    """py3langid's naive Bayes over byte-string features, for some of its languages, holding only their part.

    ``keys`` are the automaton's states but the root, as ``string << 3 | length``, sorted; ``features`` the feature
    each emits (-1: none). ``weights`` are features x ``languages``, ``priors`` one per language.
    """

    languages: tuple[str, ...]
    weights: NDArray[np.float16]
    priors: NDArray[np.float32]
    keys: NDArray[np.uint64]
    features: NDArray[np.int32]
    root_feature: int
    longest: int

    @classmethod
    def restricted(cls, languages: tuple[str, ...]) -> Identifier:
        """py3langid's shipped model restricted to ``languages``, rebuilt compact; the full model is not kept.

        Raises ValueError for a code py3langid does not know, or one it has two columns for (it adds their
        probabilities; ``classify`` does not).
        """
        full = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        full.set_languages(list(languages))  # py3langid's own choice and order of columns
        labels, weights, priors = tuple(full.nb_classes), full.nb_ptc, np.asarray(full.nb_pc, np.float32)
        nextmove, row = np.asarray(full.tk_nextmove).reshape(-1, 256), np.asarray(full.tk_row)
        outputs = np.asarray(full.tk_output, dtype=np.int32)
        del full  # the full weights and py3langid's lists go before the automaton is read: a lower peak
        if len(set(labels)) != len(labels):
            raise ValueError(f"py3langid has more than one column for one of {sorted(labels)}")
        strings, lengths = _state_strings(nextmove, row)
        keys = (strings[1:] << np.uint64(_LENGTH_BITS)) | lengths[1:].astype(np.uint64)
        order = np.argsort(keys)
        arrays = weights, priors, keys[order], outputs[1:][order]
        for array in arrays:
            array.flags.writeable = False  # shared by all threads, unchanged after this
        return cls(labels, *arrays, root_feature=int(outputs[0]), longest=int(lengths.max()))

    @property
    def nbytes(self) -> int:
        """The bytes of its arrays: all it holds but a few hundred."""
        return sum(array.nbytes for array in (self.weights, self.priors, self.keys, self.features))

    def classify(self, text: str) -> tuple[str, float]:
        """The most likely language and its probability, computed as py3langid's ``classify``, step for step."""
        data = _encode(text)
        found = self._features(data)
        if found.size:
            ids, first, counts = np.unique(found, return_index=True, return_counts=True)
            order = np.argsort(first)  # py3langid sums in order of first occurrence: the same float32 sums
            scores = np.log1p(counts[order].astype(np.float32)) @ self.weights[ids[order]] + self.priors
        else:
            scores = np.zeros(len(self.languages), dtype=np.float32)  # no feature at all: uniform, so unknown
        scores *= 1.0 / math.sqrt(len(data) or 1)
        np.exp(scores - scores.max(), out=scores)
        scores /= scores.sum()
        best = int(scores.argmax())
        return self.languages[best], float(scores[best])

    def _features(self, data: bytes) -> NDArray[np.int32]:
        """The feature the automaton emits at each byte of ``data``, in order, bytes where it emits none left out."""
        text = np.frombuffer(data, dtype=np.uint8).astype(np.uint64)
        found = np.full(len(text), self.root_feature, dtype=np.int32)
        gram = text
        for length in range(1, min(self.longest, len(text)) + 1):
            if length > 1:  # the ``length`` bytes ending at each position from ``length - 1`` on
                gram = (gram[:-1] << np.uint64(8)) | text[length - 1 :]
            key = (gram << np.uint64(_LENGTH_BITS)) | np.uint64(length)
            at = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
            hit = self.keys[at] == key
            found[length - 1 :][hit] = self.features[at[hit]]  # a longer match overrides a shorter one
        return found[found >= 0]


def _encode(text: str) -> bytes:
    """The bytes py3langid reads of a text: lower-cased if all upper case, NFC, UTF-8."""
    if text.isupper():
        text = text.lower()
    return unicodedata.normalize("NFC", text).encode("utf8", errors="surrogatepass")


def _state_strings(
    nextmove: NDArray[np.integer[Any]], row: NDArray[np.integer[Any]]
) -> tuple[NDArray[np.uint64], NDArray[np.int8]]:
    """Each state's string (its bytes packed big-endian) and length, read from the automaton breadth first.

    ``nextmove[row[state]]`` are a state's next states by byte; its children, the states one byte longer, are
    those not seen at a shorter length. Two states of one length sharing a row cannot have children, so each
    distinct row is read once. Raises ValueError if the states are not a trie of strings of up to 7 bytes.
    """
    strings, lengths = np.zeros(len(row), np.uint64), np.zeros(len(row), np.int8)
    seen = np.zeros(len(row), bool)
    seen[0] = True
    level, length = np.array([0]), 0
    while level.size:
        rows, first = np.unique(row[level], return_index=True)
        targets = nextmove[rows]
        parent, byte = np.nonzero(~seen[targets])
        children, length = targets[parent, byte], length + 1
        if np.unique(children).size != children.size or (children.size and length > _MAX_LENGTH):
            raise ValueError(f"py3langid's automaton is not a trie of strings of up to {_MAX_LENGTH} bytes")
        seen[children], lengths[children] = True, length
        strings[children] = (strings[level[first][parent]] << np.uint64(8)) | byte.astype(np.uint64)
        level = children
    if not seen.all():
        raise ValueError(f"py3langid's automaton has {int((~seen).sum())} states out of reach of its root")
    return strings, lengths


@cache
def _identifier() -> Identifier:
    return Identifier.restricted(CANDIDATES)


def detect(text: str) -> tuple[str, float]:
    """The language code of ``text`` and how sure the detector is; ``unknown`` when it is not sure enough."""
    if not text.strip():
        return UNKNOWN, 0.0
    with _LOCK:  # built once, by the first thread to ask; classifying only reads it
        identifier = _identifier()
    language, confidence = identifier.classify(text[:2000])
    return (language, confidence) if confidence >= MIN_CONFIDENCE else (UNKNOWN, confidence)
