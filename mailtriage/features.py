"""What the model reads of a message: hashed word and character n-grams, and optionally word embeddings.

N-grams are hashed (``HashingVectorizer``) rather than looked up in a vocabulary: a model holds no dictionary of
hundreds of thousands of strings to load (that took about 2 s) or keep in memory. Of the hashed columns, a model
keeps those seen in at least ``min_df`` training texts, renumbered densely, with their inverse document
frequencies: the same sublinear TF-IDF, L2-normalised, as ``TfidfVectorizer`` computes. Among 2^20 columns about
2 % of the seed set's n-grams share a column with another; the model's predictions on the held-out mails are
those of a vocabulary all the same (``tests/test_features.py``; figures in docs/performance.md).

Embeddings (``Embeddings``) are the mean of static token vectors from the ``wordllama`` package, whose weights ship
inside its wheel: nothing is downloaded. They help on short English queries and hurt on multilingual mail, so a
model uses them only when cross-validation says so (``classify.choose_features``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction import FeatureHasher
from sklearn.feature_extraction.text import HashingVectorizer

COLUMNS = 2**20
"""Hashed columns per n-gram kind, before those unseen in training are dropped."""


class HashedNgrams(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Sublinear TF-IDF of hashed n-grams, keeping the columns seen in ``min_df`` training texts or more."""

    def __init__(
        self,
        analyzer: str = "word",
        ngram_range: tuple[int, int] = (1, 1),
        min_df: int = 1,
        strip_accents: str | None = None,
        n_features: int = COLUMNS,
    ) -> None:
        self.analyzer = analyzer
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.strip_accents = strip_accents
        self.n_features = n_features

    def _hasher(self) -> HashingVectorizer:
        return HashingVectorizer(
            analyzer=self.analyzer, ngram_range=tuple(self.ngram_range), n_features=self.n_features,
            alternate_sign=False, norm=None, strip_accents=self.strip_accents, dtype=np.float64,
        )  # fmt: skip

    def fit(self, texts: Sequence[str], y: Any = None) -> HashedNgrams:
        counts = self._hasher().transform(texts).tocsc()
        document_frequency = np.diff(counts.indptr)
        self.columns_ = np.flatnonzero(document_frequency >= self.min_df).astype(np.int32)
        self.idf_ = np.log((1 + len(texts)) / (1 + document_frequency[self.columns_])) + 1.0
        return self

    def transform(self, texts: Sequence[str]) -> scipy.sparse.csr_matrix:
        counts = self._hasher().transform(texts).tocsr()
        columns = self._lookup()[counts.indices]
        kept = columns >= 0
        rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))[kept]
        values = (1.0 + np.log(counts.data[kept])) * self.idf_[columns[kept]]
        matrix = scipy.sparse.csr_matrix((values, (rows, columns[kept])), shape=(counts.shape[0], len(self.columns_)))
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return scipy.sparse.csr_matrix(scipy.sparse.diags(1.0 / norms) @ matrix)

    def terms(self, text: str) -> dict[int, str]:
        """The n-grams of ``text`` by the column each counts in: what a column means, for ``explain``."""
        grams = list(dict.fromkeys(self._hasher().build_analyzer()(text)))
        if not grams:
            return {}
        hasher = FeatureHasher(self.n_features, input_type="string", alternate_sign=False)
        hashed = hasher.transform([[gram] for gram in grams])
        columns = self._lookup()[hashed.indices]  # the same hash HashingVectorizer applies to each n-gram
        return {int(column): gram for column, gram in zip(columns, grams, strict=True) if column >= 0}

    def _lookup(self) -> np.ndarray:
        """Hashed column -> kept column, or -1: built once per loaded model (4 MiB), not saved with it."""
        lookup: np.ndarray | None = self.__dict__.get("_lookup_")
        if lookup is None:
            lookup = np.full(self.n_features, -1, dtype=np.int32)
            lookup[self.columns_] = np.arange(len(self.columns_), dtype=np.int32)
            self.__dict__["_lookup_"] = lookup
        return lookup

    def __getstate__(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key != "_lookup_"}


class Embeddings(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """The L2-normalised mean of a text's wordllama token vectors (256 numbers), times ``weight``: how much they
    count beside the n-grams, whose rows are normalised too."""

    def __init__(self, weight: float = 2.0) -> None:
        self.weight = weight

    def fit(self, texts: Sequence[str], y: Any = None) -> Embeddings:
        return self

    def transform(self, texts: Sequence[str]) -> scipy.sparse.csr_matrix:
        with _LOCK:
            vectors = _wordllama().embed(list(texts), norm=True)
        return scipy.sparse.csr_matrix(np.asarray(vectors, dtype=np.float64) * self.weight)


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
