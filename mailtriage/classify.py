"""Train, evaluate and use the model that sorts customer mail into categories.

The model reads the subject and the customer's new text (quotes and signature removed) through word and character
n-gram TF-IDF (hashed: ``features.py``), which copes with several languages and with typos, optionally beside word
embeddings where cross-validation says they help, into a linear SVM whose scores are calibrated to probabilities.
It is saved with skops, which loads only the types it is told to trust (no arbitrary pickles), beside a JSON file
of metadata holding the model file's SHA-256, checked before loading.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import platform
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs
import scipy.sparse
import sklearn
import skops
import skops.io as sio
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

from mailtriage import __version__
from mailtriage.errors import ModelError, TrainingError
from mailtriage.evaluation import THRESHOLDS, Metrics, measure
from mailtriage.examples import (
    Example,
    example_from_mail,
    feature_text,
    read_eml_folder,
    read_table,
    seed_examples,
)
from mailtriage.features import Embeddings, HashedNgrams
from mailtriage.files import write_private
from mailtriage.language import detect
from mailtriage.models import Classification, ParsedEmail
from mailtriage.settings import DEFAULT_CATEGORIES

TRUSTED_TYPES = [
    "mailtriage.classify.SoftmaxLinearSVC", "mailtriage.features.HashedNgrams", "mailtriage.features.Embeddings",
]  # fmt: skip
"""The types outside skops' safe defaults that our model holds; a file asking for any other is refused."""
MIN_EXAMPLES = 3
MODEL_FORMAT = "2"
"""Changes when what a model holds does (2: hashed n-grams): a default model of another format is built anew."""
SEED = 0
DEFAULT_CATEGORY_NAMES = tuple(category.name for category in DEFAULT_CATEGORIES)

__all__ = [
    "THRESHOLDS", "Classifier", "Example", "Metrics", "Predictor", "cross_validate", "example_from_mail",
    "feature_text", "load", "load_or_build_default", "measure", "model_state", "read_eml_folder", "read_table",
    "save", "seed_examples", "train",
]  # fmt: skip


# --- the model ---------------------------------------------------------------------------------------------------


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


def _two_columns(scores: np.ndarray) -> np.ndarray:
    """Scores as one column per class: with two classes an SVM gives one signed score."""
    return np.column_stack([-scores / 2, scores / 2]) if scores.ndim == 1 else scores


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))


def _log_loss(scores: np.ndarray, truth: np.ndarray) -> float:
    probabilities = _softmax(scores)
    return float(-np.mean(np.log(probabilities[np.arange(len(truth)), truth] + 1e-12)))


FEATURES = ("ngrams", "ngrams+embeddings")
"""What a model can read: n-grams alone, or n-grams and word embeddings (``features.py``)."""


def available_features() -> tuple[str, ...]:
    """FEATURES this installation can compute: embeddings need the ``embeddings`` extra (the wordllama wheel)."""
    return FEATURES if importlib.util.find_spec("wordllama") is not None else FEATURES[:1]


def build_model(features: str = "ngrams") -> Pipeline:
    """A fresh, untrained model reading ``features`` (one of FEATURES)."""
    parts: list[tuple[str, Any]] = [
        ("words", HashedNgrams("word", (1, 2), strip_accents="unicode")),
        ("chars", HashedNgrams("char_wb", (2, 5), min_df=2)),
    ]
    if features == "ngrams+embeddings":
        if features not in available_features():
            raise TrainingError("embeddings need the wordllama package: pip install 'mailtriage[embeddings]'")
        parts.append(("embeddings", Embeddings()))
    elif features != "ngrams":
        raise TrainingError(f"features {features!r}: expected one of {', '.join(FEATURES)}")
    return Pipeline([("features", FeatureUnion(parts)), ("classifier", SoftmaxLinearSVC())])


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


MIN_LANGUAGE_EXAMPLES = 20
"""A language with fewer examples than this does not weigh in the choice of features: its figure is noise."""


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


@dataclass
class TrainedModel:
    model: Pipeline
    metadata: dict[str, Any] = field(default_factory=dict)


def train(
    examples: Sequence[Example], *, folds: int = 5, sources: Iterable[str] = (), features: str = "ngrams"
) -> TrainedModel:
    """Fit a model on every example, with cross-validated metrics from ``folds`` folds in its metadata.

    ``features`` is one of FEATURES, or ``auto``: each is cross-validated and ``choose_features`` picks one (with
    no folds, ``auto`` is n-grams alone).
    """
    counts = check_trainable(examples)
    started = datetime.now(UTC)
    names = available_features() if features == "auto" else (features,)
    measured = {name: cross_validate(examples, folds, name) for name in names} if folds > 1 else {}
    chosen = choose_features(measured) if features == "auto" and measured else names[0]
    metrics = measured.get(chosen)
    model = build_model(chosen)
    model.fit([e.text for e in examples], [e.label for e in examples])
    languages: dict[str, Counter[str]] = {}
    for example in examples:
        languages.setdefault(example.label, Counter())[example.language] += 1
    metadata = {
        "format": MODEL_FORMAT,
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
        "versions": {
            "mailtriage": __version__,
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }  # fmt: skip
    return TrainedModel(model, metadata)


def save(trained: TrainedModel, path: Path) -> dict[str, Any]:
    """Write the model to ``path`` and its metadata, with the file's SHA-256, beside it (``.json``)."""
    writable(path)
    sio.dump(trained.model, path, compression=zipfile.ZIP_DEFLATED, compresslevel=6)
    os.chmod(path, 0o600)  # learnt from customers' words
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    metadata = {**trained.metadata, "sha256": digest, "version": digest[:12]}
    write_private(metadata_path(path), json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")
    return metadata


def metadata_path(path: Path) -> Path:
    return path.with_suffix(".json")


# --- using a model -------------------------------------------------------------------------------------------------


class Classifier:
    """A loaded model: predicts a category with its confidence, and says which words weighed most."""

    def __init__(self, model: Pipeline, metadata: dict[str, Any]) -> None:
        self.model = model
        self.metadata = metadata
        self.categories: tuple[str, ...] = tuple(str(c) for c in model.classes_)
        self.version = str(metadata.get("version", "unversioned"))
        self._parts: list[tuple[str, Any]] = list(model.named_steps["features"].transformer_list)
        self._classifier: SoftmaxLinearSVC = model.named_steps["classifier"]

    def _features(self, texts: Sequence[str]) -> Any:
        # The same as the pipeline's transform, without the checks and the FeatureUnion machinery that cost more
        # than the arithmetic for one message (1.0 ms down to 0.6 ms a message, measured on Banking77).
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return scipy.sparse.hstack([part.transform(texts) for _, part in self._parts]).tocsr()

    def predict(self, text: str) -> tuple[str, float]:
        return self.predict_many([text])[0]

    def predict_many(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """The category and confidence of each text, in one pass over the model: a batch costs far less a text
        than one call each."""
        if not texts:
            return []
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            probabilities = self._classifier.predict_proba(self._features(texts))
        best = probabilities.argmax(axis=1)
        return [(self.categories[int(i)], float(row[i])) for row, i in zip(probabilities, best, strict=True)]

    def explain(self, text: str, category: str, top: int = 8) -> list[tuple[str, float]]:
        """The n-grams of ``text`` that pushed most towards ``category``, with their weight."""
        row = self._features([text])
        weights = self._weights(self.categories.index(category))
        names: dict[int, str] = {}  # column -> n-gram; embeddings, last, name no column
        offset = 0
        for name, part in self._parts:
            if isinstance(part, HashedNgrams):
                names |= {offset + column: _term(name, term) for column, term in part.terms(text).items()}
                offset += len(part.columns_)
        contribution = row.multiply(weights).tocsr()
        pairs = sorted(zip(contribution.indices, contribution.data, strict=True), key=lambda p: -p[1])
        return [(names[int(i)], float(w)) for i, w in pairs if w > 0 and int(i) in names][:top]

    def _weights(self, index: int) -> np.ndarray:
        coef = self._classifier.svm_.coef_
        if coef.shape[0] == 1:  # two categories: one row of weights, for the second
            return np.asarray(coef[0] if index == 1 else -coef[0])
        return np.asarray(coef[index])


def _term(kind: str, term: str) -> str:
    return f"'{term}'" if kind == "chars" else term


def load(path: Path, categories: Sequence[str] | None = None) -> Classifier:
    """Load the model at ``path`` after checking it against its metadata; optionally check its categories.

    Raises:
        ModelError: the file or its metadata is missing, unreadable, altered since it was saved, holds types
            that are not trusted, or sorts into other categories than ``categories``.
    """
    meta_file = metadata_path(path)
    if not path.exists():
        raise ModelError(path, "no model file: build one with `mailtriage train` (or run `mailtriage demo`)")
    try:
        metadata = json.loads(meta_file.read_text(encoding="utf-8"))
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(path, f"its metadata {meta_file.name} is missing: train the model again") from None
    except (OSError, ValueError) as exc:
        raise ModelError(path, f"cannot read it or its metadata ({exc})") from None
    if hashlib.sha256(data).hexdigest() != metadata.get("sha256"):
        raise ModelError(path, f"its content does not match the SHA-256 in {meta_file.name}: altered or corrupted")
    try:
        untrusted = sio.get_untrusted_types(data=data)
        if set(untrusted) - set(TRUSTED_TYPES):
            raise ModelError(path, f"it holds types that are not trusted: {', '.join(sorted(untrusted))}")
        model = sio.load(io.BytesIO(data), trusted=TRUSTED_TYPES)  # the very bytes whose hash was checked
    except ModelError:
        raise
    except Exception as exc:  # skops raises many kinds of errors on damaged files
        raise ModelError(path, f"it is not a readable model ({type(exc).__name__}: {exc})") from None
    steps = model.named_steps if isinstance(model, Pipeline) else {}
    if not isinstance(steps.get("classifier"), SoftmaxLinearSVC) or "features" not in steps:
        raise ModelError(path, f"it holds a {type(model).__name__}, not a model written by `mailtriage train`")
    reads = [part for _, part in steps["features"].transformer_list]
    if any(isinstance(part, Embeddings) for part in reads) and "ngrams+embeddings" not in available_features():
        raise ModelError(path, "it reads word embeddings, which need the wordllama package: "
                         "pip install 'mailtriage[embeddings]'")  # fmt: skip
    classifier = Classifier(model, metadata)
    if categories is not None:
        check_categories(path, classifier.categories, categories)
    return classifier


def model_state(path: Path, categories: Sequence[str]) -> dict[str, Any]:
    """What ``mailtriage status`` says of a model, without loading it: its version, when it was trained, its
    cross-validated macro-F1, and the problem that would stop the daemon from loading it (None: none)."""
    state: dict[str, Any] = {"path": str(path), "version": None, "trained_at": None, "macro_f1": None}
    try:
        metadata = json.loads(metadata_path(path).read_text(encoding="utf-8"))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError as exc:
        return {**state, "problem": f"missing: {exc.filename} (built at the first `run`, or `mailtriage train`)"}
    except (OSError, ValueError) as exc:
        return {**state, "problem": f"unreadable: {exc}"}
    cross_validation = metadata.get("cross_validation") or {}
    state |= {"version": metadata.get("version"), "trained_at": metadata.get("trained_at"),
              "macro_f1": cross_validation.get("macro_f1")}  # fmt: skip
    problem = None
    if digest != metadata.get("sha256"):
        problem = "its content does not match its metadata's SHA-256: altered or corrupted"
    else:
        try:
            check_categories(path, metadata.get("categories", []), categories)
        except ModelError as exc:
            problem = exc.reason
    return {**state, "problem": problem}


def check_categories(path: Path, model: Sequence[str], configured: Sequence[str]) -> None:
    missing, extra = sorted(set(configured) - set(model)), sorted(set(model) - set(configured))
    if missing or extra:
        parts = [f"configured but not in the model: {', '.join(missing)}" if missing else "",
                 f"in the model but not configured: {', '.join(extra)}" if extra else ""]  # fmt: skip
        raise ModelError(path, "its categories differ from the config: " + "; ".join(p for p in parts if p) +
                         " (retrain with `mailtriage train`)")  # fmt: skip


class Predictor:
    """The classification stage of the pipeline: category, confidence, language and model version for a message;
    the fallback category when the model is less sure than the threshold."""

    def __init__(self, classifier: Classifier, threshold: float, fallback: str) -> None:
        self.classifier = classifier
        self.threshold = threshold
        self.fallback = fallback

    def __call__(self, messages: Sequence[ParsedEmail]) -> list[Classification]:
        """The classification of each message, the batch through the model at once."""
        texts = [feature_text(parsed.subject, parsed.new_text) for parsed in messages]
        classifications = []
        for text, (category, confidence) in zip(texts, self.classifier.predict_many(texts), strict=True):
            decided = category if confidence >= self.threshold else self.fallback
            language = detect(text)[0]
            classifications.append(Classification(decided, category, confidence, language, self.classifier.version))
        return classifications


def model_path(configured: Path | None) -> Path:
    """The model a configuration uses: the one it names, else the default model."""
    return configured or default_model_path()


def default_model_path() -> Path:
    """Where the default model is kept: the user's cache folder, under a name that changes with the seed set and
    the libraries it was built with, so an upgrade of either builds a new one instead of loading a stale file."""
    key = hashlib.sha256()
    versions = (MODEL_FORMAT, __version__, sklearn.__version__, np.__version__, skops.__version__,
                platform.python_version())  # fmt: skip
    for part in versions:
        key.update(part.encode() + b"\0")
    for example in seed_examples():
        key.update(f"{example.label}\0{example.text}\0".encode())
    return platformdirs.user_cache_path("mailtriage") / "models" / f"default-{key.hexdigest()[:16]}.skops"


def load_or_build_default(path: Path | None, categories: Sequence[str], log: Callable[[str], None]) -> Classifier:
    """The model at ``path``, or the default model (``path`` None). A missing model is built from the seed set
    when the categories are the defaults: in a second or two, without cross-validation (``train`` and
    ``evaluate`` give those figures), so that a first run needs no training step."""
    path = path or default_model_path()
    if path.exists() or sorted(categories) != sorted(DEFAULT_CATEGORY_NAMES):
        return load(path, categories)
    writable(path)  # before the training, not after it
    log(f"building the default model from the seed set into {path} (once)")
    trained = train(seed_examples(), folds=0, sources=["seed"])
    metadata = save_atomically(trained, path)
    return Classifier(trained.model, metadata)


def save_atomically(trained: TrainedModel, path: Path) -> dict[str, Any]:
    """``save`` beside ``path`` and then rename into place, the metadata last: a reader (another daemon, a crash
    half-way) never sees a model without its metadata, and a model file is never half written."""
    partial = path.with_name(f".{path.stem}.{os.getpid()}{path.suffix}")
    metadata = save(trained, partial)
    os.replace(partial, path)
    os.replace(metadata_path(partial), metadata_path(path))
    return metadata


def writable(path: Path) -> None:
    """Raise ModelError unless a model can be written at ``path`` (its folder is made if missing)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".mailtriage-"):
            pass
    except OSError as exc:
        raise ModelError(
            path, f"cannot write a model there ({exc.strerror or exc}): set classifier.model to a writable path"
        ) from None
