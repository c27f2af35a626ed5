"""What the model reads of a message: hashed word and character n-grams, and optionally word embeddings.

N-grams are hashed (CRC-32 of their UTF-8 bytes, into 2^20 columns) rather than looked up in a vocabulary: a
model holds no dictionary of hundreds of thousands of strings to load (that took about 2 s) or keep in memory.
Of the hashed columns, a model keeps those seen in at least ``min_df`` training texts, sorted, with their inverse
document frequencies, and a text's features are their sublinear TF-IDF, L2-normalised, as scikit-learn's
``TfidfVectorizer`` computes them over the same n-grams (its tokenizer and its ``char_wb`` n-grams, rewritten here
so that predicting needs NumPy alone: importing scikit-learn costs a daemon some 85 MiB). Among 2^20 columns
about 2 % of the seed set's n-grams share a column with another; the held-out mails are classified as with a
vocabulary all the same (``tests/test_features.py``).

Embeddings (``Embeddings``) are the mean of static token vectors from the ``wordllama`` package, whose weights ship
inside its wheel: nothing is downloaded. They help on short English queries and hurt on multilingual mail, so a
model uses them only when cross-validation says so (``classify.choose_features``).
"""

from __future__ import annotations

import re
import threading
import unicodedata
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

COLUMNS = 2**20
"""Hashed columns per n-gram kind, before those unseen in training are dropped."""
_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_SPACES = re.compile(r"\s\s+")

Row = tuple[NDArray[np.int64], NDArray[np.float64]]
"""A text's features: the kept columns it has, ascending, and their values."""


def strip_accents(text: str) -> str:
    """``text`` with its combining marks removed after NFKD ("café" -> "cafe"), as scikit-learn's ``unicode``."""
    if text.isascii():
        return text
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def word_grams(text: str, low: int, high: int, accents: bool) -> list[str]:
    """Words of two or more letters or digits, lower case (accents stripped unless ``accents``), and their
    n-grams from ``low`` to ``high`` words joined by a space."""
    text = text.lower()
    words = _TOKEN.findall(text if accents else strip_accents(text))
    grams = list(words) if low == 1 else []
    for n in range(max(low, 2), min(high, len(words)) + 1):
        grams += [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
    return grams


def char_grams(text: str, low: int, high: int) -> list[str]:
    """Character n-grams from ``low`` to ``high`` inside each word, the word padded with a space each side; a
    word shorter than ``low`` counts once, whole."""
    grams: list[str] = []
    for word in _SPACES.sub(" ", text.lower()).split():
        padded = f" {word} "
        for n in range(low, high + 1):
            grams += [padded[i : i + n] for i in range(max(1, len(padded) - n + 1))]
            if len(padded) <= n:
                break
    return grams


@dataclass(frozen=True, eq=False)
class NgramColumns:
    """One kind of n-gram, hashed, and the columns a model kept of it with their inverse document frequencies."""

    analyzer: str
    """"word" or "char_wb"."""
    low: int
    high: int
    accents: bool
    """Whether word n-grams keep their accents (character n-grams always do)."""
    columns: NDArray[np.int64]
    """The hashed columns kept, ascending."""
    idf: NDArray[np.float64]

    @classmethod
    def fit(
        cls, texts: Sequence[str], analyzer: str, low: int, high: int, *, min_df: int = 1, accents: bool = False
    ) -> NgramColumns:
        """The columns seen in at least ``min_df`` of ``texts``, with idf ln((1 + n) / (1 + df)) + 1."""
        unfitted = cls(analyzer, low, high, accents, np.zeros(0, np.int64), np.zeros(0))
        present = [unfitted.hashed(text)[0] for text in texts]
        seen, df = np.unique(np.concatenate(present) if present else np.zeros(0, np.int64), return_counts=True)
        kept = df >= min_df
        idf = np.log((1 + len(texts)) / (1 + df[kept].astype(np.float64))) + 1.0
        return cls(analyzer, low, high, accents, seen[kept].astype(np.int64), idf)

    @property
    def width(self) -> int:
        return len(self.columns)

    def grams(self, text: str) -> list[str]:
        if self.analyzer == "word":
            return word_grams(text, self.low, self.high, self.accents)
        return char_grams(text, self.low, self.high)

    def hashed(self, text: str) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """The hashed columns occurring in ``text``, ascending, and how often each occurs."""
        grams = self.grams(text)
        hashes = np.fromiter(map(zlib.crc32, map(_utf8, grams)), dtype=np.int64, count=len(grams))
        columns, counts = np.unique(hashes & (COLUMNS - 1), return_counts=True)
        return columns, counts

    def row(self, text: str) -> Row:
        """The text's sublinear TF-IDF over the kept columns (by their index among them), L2-normalised."""
        hashed, counts = self.hashed(text)
        at = np.searchsorted(self.columns, hashed)
        hit = at < len(self.columns)
        hit[hit] = self.columns[at[hit]] == hashed[hit]
        index = at[hit]  # ascending, as the hashed columns are
        values = (1.0 + np.log(counts[hit])) * self.idf[index]
        norm = float(np.sqrt(values @ values))
        return index, values / (norm or 1.0)

    def terms(self, text: str) -> dict[int, str]:
        """The n-grams of ``text`` by the kept column each counts in: what a column means, for ``explain``."""
        found: dict[int, str] = {}
        for gram in dict.fromkeys(self.grams(text)):
            hashed = zlib.crc32(_utf8(gram)) & (COLUMNS - 1)
            at = int(np.searchsorted(self.columns, hashed))
            if at < len(self.columns) and self.columns[at] == hashed:
                found.setdefault(at, gram)
        return found

    def arrays(self, prefix: str) -> dict[str, NDArray[Any]]:
        """What a model file keeps of it (``from_arrays`` reads it back)."""
        spec = np.asarray([self.low, self.high, int(self.accents), int(self.analyzer == "word")], dtype=np.int64)
        return {f"{prefix}.spec": spec, f"{prefix}.columns": self.columns, f"{prefix}.idf": self.idf}

    @classmethod
    def from_arrays(cls, arrays: Any, prefix: str) -> NgramColumns:
        low, high, accents, word = (int(v) for v in arrays[f"{prefix}.spec"])
        return cls("word" if word else "char_wb", low, high, bool(accents), np.asarray(arrays[f"{prefix}.columns"]),
                   np.asarray(arrays[f"{prefix}.idf"]))  # fmt: skip


def _utf8(gram: str) -> bytes:
    return gram.encode("utf-8", "surrogatepass")


class Embeddings:
    """The L2-normalised mean of a text's wordllama token vectors (``WIDTH`` numbers), times ``weight``: how much
    they count beside the n-grams, whose rows are normalised too."""

    WIDTH = 256

    def __init__(self, weight: float = 2.0) -> None:
        self.weight = weight

    def vectors(self, texts: Sequence[str]) -> NDArray[np.float64]:
        with _LOCK:
            vectors = _wordllama().embed(list(texts), norm=True)
        return np.asarray(vectors, dtype=np.float64) * self.weight


_LOCK = threading.Lock()


@cache
def _wordllama() -> Any:
    """The wordllama model from the weights inside its wheel, loaded once, offline."""
    import logging
    from pathlib import Path

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import wordllama

    root.handlers[:], root.level = handlers, level  # importing it calls logging.basicConfig(level=INFO)
    return wordllama.WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
