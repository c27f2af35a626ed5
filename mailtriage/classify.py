"""Train and evaluate the model that sorts customer mail into categories (scikit-learn: only here).

The model reads the subject and the customer's new text (quotes and signature removed) through hashed word and
character n-gram TF-IDF (``features.py``), which copes with several languages and with typos, optionally beside
word embeddings where cross-validation says they help, into a linear SVM whose scores are calibrated to
probabilities with one temperature. What training produces is a ``model.Model``: plain arrays, saved and loaded,
and used by the daemon, without scikit-learn (``model.py``).
"""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import scipy.sparse
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.svm import LinearSVC

from mailtriage import __version__
from mailtriage.errors import TrainingError
from mailtriage.evaluation import THRESHOLDS, Metrics, measure
from mailtriage.examples import (
    Example,
    example_from_mail,
    feature_text,
    read_eml_folder,
    read_table,
    seed_examples,
)
from mailtriage.features import Embeddings, NgramColumns
from mailtriage.model import (
    DEFAULT_CATEGORY_NAMES,
    FORMAT,
    Classifier,
    Model,
    Predictor,
    TrainedModel,
    check_categories,
    default_model_path,
    embeddings_available,
    load,
    load_or_build_default,
    metadata_path,
    model_path,
    model_state,
    save,
    save_atomically,
    writable,
)

MIN_EXAMPLES = 3
SEED = 0
FEATURES = ("ngrams", "ngrams+embeddings")
"""What a model can read: n-grams alone, or n-grams and word embeddings (``features.py``)."""
MIN_LANGUAGE_EXAMPLES = 20
"""A language with fewer examples than this does not weigh in the choice of features: its figure is noise."""

__all__ = [
    "DEFAULT_CATEGORY_NAMES", "FEATURES", "THRESHOLDS", "Classifier", "Example", "Metrics", "Predictor",
    "TrainedModel", "build_model", "check_categories", "choose_features", "cross_validate", "default_model_path",
    "example_from_mail", "feature_text", "load", "load_or_build_default", "measure", "metadata_path",
    "model_path", "model_state", "read_eml_folder", "read_table", "save", "save_atomically", "seed_examples",
    "train", "writable",
]  # fmt: skip


class SoftmaxLinearSVC(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A linear SVM whose scores become probabilities through a softmax with one temperature.

    The temperature is fitted on cross-validated scores. One number is cheap to apply, where scikit-learn's
    per-class calibrators cost several milliseconds a message with many categories.
    """

    def __init__(self, C: float = 0.5, folds: int = 3, random_state: int = SEED) -> None:  # noqa: N803
        self.C = C
        self.folds = folds
        self.random_state = random_state

    def fit(self, X: Any, y: Sequence[str]) -> SoftmaxLinearSVC:  # noqa: N803
        self.svm_ = LinearSVC(C=self.C, random_state=self.random_state).fit(X, y)
        self.classes_ = self.svm_.classes_
        folds = max(2, min(self.folds, min(Counter(y).values())))
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.random_state)
        held_out = cross_val_predict(
            LinearSVC(C=self.C, random_state=self.random_state), X, y, cv=splitter, method="decision_function"
        )
        truth = np.searchsorted(self.classes_, np.asarray(y))
        scores = _two_columns(held_out)
        candidates = np.geomspace(0.01, 10.0, 80)
        self.temperature_ = float(min(candidates, key=lambda t: _log_loss(scores / t, truth)))
        return self

    def decision_function(self, X: Any) -> np.ndarray:  # noqa: N803
        return np.asarray(self.svm_.decision_function(X))

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        return _softmax(_two_columns(self.decision_function(X)) / self.temperature_)

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        return np.asarray(self.classes_[self.predict_proba(X).argmax(axis=1)])

    def linear(self) -> tuple[np.ndarray, np.ndarray]:
        """Weights (feature x class) and intercepts, one column per class even for two classes."""
        coef, intercept = self.svm_.coef_, self.svm_.intercept_
        if coef.shape[0] == 1:  # two classes: one signed score, split as _two_columns splits it
            return np.column_stack([-coef[0] / 2, coef[0] / 2]), np.asarray([-intercept[0] / 2, intercept[0] / 2])
        return np.asarray(coef.T), np.asarray(intercept)


def _two_columns(scores: np.ndarray) -> np.ndarray:
    """Scores as one column per class: with two classes an SVM gives one signed score."""
    return np.column_stack([-scores / 2, scores / 2]) if scores.ndim == 1 else scores


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))


def _log_loss(scores: np.ndarray, truth: np.ndarray) -> float:
    probabilities = _softmax(scores)
    return float(-np.mean(np.log(probabilities[np.arange(len(truth)), truth] + 1e-12)))


class TextModel(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """The whole model as a scikit-learn estimator over texts, for fitting and cross-validation: it fits the
    features and the SVM, and predicts through the ``model.Model`` it makes of them, as the daemon will."""

    def __init__(self, features: str = "ngrams", C: float = 0.5) -> None:  # noqa: N803
        self.features = features
        self.C = C

    def fit(self, texts: Sequence[str], y: Sequence[str]) -> TextModel:
        texts = list(texts)
        parts = (
            ("words", NgramColumns.fit(texts, "word", 1, 2)),
            ("chars", NgramColumns.fit(texts, "char_wb", 2, 5, min_df=2, accents=True)),
        )
        embeddings = Embeddings() if self.features == "ngrams+embeddings" else None
        svm = SoftmaxLinearSVC(C=self.C).fit(_matrix(parts, embeddings, texts), list(y))
        weights, intercept = svm.linear()
        classes = tuple(str(c) for c in svm.classes_)
        self.model_ = Model(parts, embeddings, weights.astype(np.float32), intercept, svm.temperature_, classes)
        self.classes_ = svm.classes_
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.model_.predict_proba(list(texts))

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.classes_[self.predict_proba(texts).argmax(axis=1)])


def _matrix(parts: Sequence[tuple[str, NgramColumns]], embeddings: Embeddings | None, texts: Sequence[str]) -> Any:
    """The texts' features as one sparse matrix, the parts' columns side by side, then the embeddings'."""
    blocks = []
    for _, part in parts:
        rows = [part.row(text) for text in texts]
        indptr = np.cumsum([0] + [len(columns) for columns, _ in rows])
        columns = np.concatenate([columns for columns, _ in rows]) if rows else np.zeros(0, np.int64)
        values = np.concatenate([values for _, values in rows]) if rows else np.zeros(0)
        blocks.append(scipy.sparse.csr_matrix((values, columns, indptr), shape=(len(texts), part.width)))
    if embeddings is not None:
        blocks.append(scipy.sparse.csr_matrix(embeddings.vectors(texts)))
    return scipy.sparse.hstack(blocks).tocsr()


def available_features() -> tuple[str, ...]:
    """FEATURES this installation can compute: embeddings need the ``embeddings`` extra (the wordllama wheel)."""
    return FEATURES if embeddings_available() else FEATURES[:1]


def build_model(features: str = "ngrams") -> TextModel:
    """A fresh, untrained model reading ``features`` (one of FEATURES).

    Raises:
        TrainingError: features unknown, or embeddings without the wordllama package.
    """
    if features not in FEATURES:
        raise TrainingError(f"features {features!r}: expected one of {', '.join(FEATURES)}")
    if features not in available_features():
        raise TrainingError("embeddings need the wordllama package: pip install 'mailtriage[embeddings]'")
    return TextModel(features)


def check_trainable(examples: Sequence[Example]) -> Counter[str]:
    counts = Counter(e.label for e in examples)
    if len(counts) < 2:
        raise TrainingError(f"training needs at least two categories; the data has {len(counts)}")
    thin = sorted(label for label, count in counts.items() if count < MIN_EXAMPLES)
    if thin:
        raise TrainingError(f"categories with fewer than {MIN_EXAMPLES} examples: {', '.join(thin)}")
    return counts


def cross_validate(examples: Sequence[Example], folds: int = 5, features: str = "ngrams") -> Metrics:
    """Metrics from ``folds``-fold stratified cross-validation: every example predicted by a model not trained on it."""
    counts = check_trainable(examples)
    folds = max(2, min(folds, min(counts.values())))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED)
    texts, labels = [e.text for e in examples], [e.label for e in examples]
    model = build_model(features)
    probabilities = cross_val_predict(model, texts, labels, cv=splitter, method="predict_proba", n_jobs=2)
    classes = sorted(counts)
    best = probabilities.argmax(axis=1)
    return measure(examples, [classes[i] for i in best], probabilities.max(axis=1).tolist())


def choose_features(candidates: Mapping[str, Metrics]) -> str:
    """The features whose cross-validated macro-F1 is highest without any language's being lower than with
    n-grams alone: embeddings that help English queries but cost French mail are not taken."""
    plain = candidates["ngrams"]
    best = "ngrams"
    for name, metrics in candidates.items():
        languages_kept = all(
            metrics.per_language[language]["macro_f1"] >= figures["macro_f1"]
            for language, figures in plain.per_language.items()
            if figures["examples"] >= MIN_LANGUAGE_EXAMPLES and language in metrics.per_language
        )
        if languages_kept and metrics.macro_f1 > candidates[best].macro_f1:
            best = name
    return best


def train(
    examples: Sequence[Example], *, folds: int = 5, sources: Iterable[str] = (), features: str = "ngrams"
) -> TrainedModel:
    """Fit a model on every example, with cross-validated metrics from ``folds`` folds in its metadata.

    ``features`` is one of FEATURES, or ``auto``: each available one is cross-validated and ``choose_features``
    picks (with no folds, ``auto`` is n-grams alone).
    """
    counts = check_trainable(examples)
    started = datetime.now(UTC)
    names = available_features() if features == "auto" else (features,)
    measured = {name: cross_validate(examples, folds, name) for name in names} if folds > 1 else {}
    chosen = choose_features(measured) if features == "auto" and measured else names[0]
    metrics = measured.get(chosen)
    fitted = build_model(chosen).fit([e.text for e in examples], [e.label for e in examples])
    languages: dict[str, Counter[str]] = {}
    for example in examples:
        languages.setdefault(example.label, Counter())[example.language] += 1
    metadata = {
        "format": FORMAT,
        "categories": sorted(counts),
        "examples": {label: {"total": counts[label], **languages[label]} for label in sorted(counts)},
        "features": chosen,
        "feature_choice": {
            name: {"macro_f1": m.macro_f1, "per_language": {k: v["macro_f1"] for k, v in m.per_language.items()}}
            for name, m in measured.items()
        } if len(measured) > 1 else None,
        "trained_at": started.isoformat(timespec="seconds"),
        "training_seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "sources": list(sources),
        "cross_validation": None if metrics is None else {"folds": folds, **metrics.as_dict()},
        "versions": {"mailtriage": __version__, "scikit-learn": sklearn.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
    }  # fmt: skip
    return TrainedModel(fitted.model_, metadata)
