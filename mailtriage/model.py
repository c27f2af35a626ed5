"""A trained model as the daemon uses it: arrays in a NumPy file, read without scikit-learn.

A model is its features' columns and idf (``features.NgramColumns``), a weight per column and category, an
intercept per category and one softmax temperature: a linear SVM's scores made probabilities. It is written as a
``.npz`` of plain numeric arrays and read with ``allow_pickle=False``: a model file cannot hold code, so there is
nothing to trust but numbers. Beside it, a JSON file of metadata holds the file's SHA-256, checked before loading.
Training (``classify.py``) needs scikit-learn; predicting needs NumPy alone, which keeps the daemon some 100 MiB
lighter and loads a model in milliseconds.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import platform
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs
from numpy.typing import NDArray

from mailtriage import __version__
from mailtriage.errors import ModelError
from mailtriage.examples import feature_text, seed_examples
from mailtriage.features import Embeddings, NgramColumns
from mailtriage.files import write_private
from mailtriage.language import detect
from mailtriage.models import Classification, ParsedEmail
from mailtriage.settings import DEFAULT_CATEGORIES

DEFAULT_CATEGORY_NAMES = tuple(category.name for category in DEFAULT_CATEGORIES)

FORMAT = 3
"""Changes when what a model file holds does (3: NumPy arrays, CRC-32 hashed n-grams)."""
_NGRAMS = ("words", "chars")


@dataclass(frozen=True, eq=False)
class Model:
    """What a linear model over the features is: enough to score texts."""

    parts: tuple[tuple[str, NgramColumns], ...]
    embeddings: Embeddings | None
    weights: NDArray[np.float64]
    """One row per feature column (the parts' in order, then the embeddings'), one column per category."""
    intercept: NDArray[np.float64]
    temperature: float
    classes: tuple[str, ...]

    @property
    def features(self) -> str:
        return "ngrams+embeddings" if self.embeddings is not None else "ngrams"

    def scores(self, texts: Sequence[str]) -> NDArray[np.float64]:
        """The SVM's score of each category for each text."""
        scores = np.tile(self.intercept, (len(texts), 1))
        offset = 0
        for _, part in self.parts:
            for n, text in enumerate(texts):
                columns, values = part.row(text)
                scores[n] += values @ self.weights[offset + columns]
            offset += part.width
        if self.embeddings is not None and texts:
            scores += self.embeddings.vectors(texts) @ self.weights[offset : offset + Embeddings.WIDTH]
        return scores

    def predict_proba(self, texts: Sequence[str]) -> NDArray[np.float64]:
        scores = self.scores(texts) / self.temperature
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))

    def contributions(self, text: str, category: int) -> list[tuple[str, float]]:
        """Each n-gram of ``text`` with what it added to ``category``'s score, largest first."""
        found: list[tuple[str, float]] = []
        offset = 0
        for name, part in self.parts:
            columns, values = part.row(text)
            terms = part.terms(text)
            weights = self.weights[offset + columns, category]
            for column, value, weight in zip(columns, values, weights, strict=True):
                term = terms.get(int(column))
                if term is not None:
                    found.append((f"'{term}'" if name == "chars" else term, float(value * weight)))
            offset += part.width
        return sorted(found, key=lambda pair: -pair[1])

    def arrays(self) -> dict[str, NDArray[Any]]:
        arrays: dict[str, NDArray[Any]] = {
            "format": np.asarray([FORMAT]), "weights": self.weights, "intercept": self.intercept,
            "temperature": np.asarray([self.temperature]), "classes": np.asarray(self.classes, dtype=np.str_),
            "embeddings": np.asarray([self.embeddings.weight if self.embeddings else 0.0]),
        }  # fmt: skip
        for name, part in self.parts:
            arrays |= part.arrays(name)
        return arrays


def write_model(model: Model, path: Path) -> bytes:
    """The model file's bytes, written to ``path``."""
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **model.arrays())
    data = buffer.getvalue()
    path.write_bytes(data)
    return data


def read_model(data: bytes) -> Model:
    """The model in a file's bytes.

    Raises:
        ValueError: not a model file of this format (an object array, which would need pickle, is refused).
    """
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        if "format" not in arrays.files or int(arrays["format"][0]) != FORMAT:
            raise ValueError("not a model of this version's format")
        parts = tuple((name, NgramColumns.from_arrays(arrays, name)) for name in _NGRAMS if f"{name}.spec" in arrays)
        weight = float(arrays["embeddings"][0])
        return Model(
            parts=parts, embeddings=Embeddings(weight) if weight else None, weights=np.asarray(arrays["weights"]),
            intercept=np.asarray(arrays["intercept"]), temperature=float(arrays["temperature"][0]),
            classes=tuple(str(c) for c in arrays["classes"]),
        )  # fmt: skip


class Classifier:
    """A loaded model: predicts a category with its confidence, and says which words weighed most."""

    def __init__(self, model: Model, metadata: dict[str, Any]) -> None:
        self.model = model
        self.metadata = metadata
        self.categories = model.classes
        self.version = str(metadata.get("version", "unversioned"))

    def predict(self, text: str) -> tuple[str, float]:
        return self.predict_many([text])[0]

    def predict_many(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """The category and confidence of each text."""
        if not texts:
            return []
        probabilities = self.model.predict_proba(texts)
        best = probabilities.argmax(axis=1)
        return [(self.categories[int(i)], float(row[i])) for row, i in zip(probabilities, best, strict=True)]

    def explain(self, text: str, category: str, top: int = 8) -> list[tuple[str, float]]:
        """The n-grams of ``text`` that pushed most towards ``category``, with their weight."""
        found = self.model.contributions(text, self.categories.index(category))
        return [(term, weight) for term, weight in found if weight > 0][:top]


def metadata_path(path: Path) -> Path:
    return path.with_suffix(".json")


def load(path: Path, categories: Sequence[str] | None = None) -> Classifier:
    """Load the model at ``path`` after checking it against its metadata; optionally check its categories.

    Raises:
        ModelError: the file or its metadata is missing, unreadable, altered since it was saved, not a model of
            this version, reads embeddings without the wordllama package, or sorts into other categories than
            ``categories``.
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
        model = read_model(data)  # the very bytes whose hash was checked
    except Exception as exc:  # NumPy raises many kinds of errors on damaged or foreign files
        raise ModelError(path, f"it is not a model this version of mailtriage reads ({type(exc).__name__}: {exc}): "
                         "train it again with `mailtriage train`") from None  # fmt: skip
    if model.embeddings is not None and not embeddings_available():
        raise ModelError(path, "it reads word embeddings, which need the wordllama package: "
                         "pip install 'mailtriage[embeddings]'")  # fmt: skip
    classifier = Classifier(model, metadata)
    if categories is not None:
        check_categories(path, classifier.categories, categories)
    return classifier


def embeddings_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("wordllama") is not None


def check_categories(path: Path, model: Sequence[str], configured: Sequence[str]) -> None:
    missing, extra = sorted(set(configured) - set(model)), sorted(set(model) - set(configured))
    if missing or extra:
        parts = [f"configured but not in the model: {', '.join(missing)}" if missing else "",
                 f"in the model but not configured: {', '.join(extra)}" if extra else ""]  # fmt: skip
        raise ModelError(path, "its categories differ from the config: " + "; ".join(p for p in parts if p) +
                         " (retrain with `mailtriage train`)")  # fmt: skip


@dataclass
class TrainedModel:
    model: Model
    metadata: dict[str, Any] = field(default_factory=dict)


def save(trained: TrainedModel, path: Path) -> dict[str, Any]:
    """Write the model to ``path`` and its metadata, with the file's SHA-256, beside it (``.json``)."""
    writable(path)
    digest = hashlib.sha256(write_model(trained.model, path)).hexdigest()
    os.chmod(path, 0o600)  # learnt from customers' words
    metadata = {**trained.metadata, "sha256": digest, "version": digest[:12]}
    write_private(metadata_path(path), json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")
    return metadata


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
    versions = (str(FORMAT), __version__, np.__version__, platform.python_version())  # fmt: skip
    for part in versions:
        key.update(part.encode() + b"\0")
    for example in seed_examples():
        key.update(f"{example.label}\0{example.text}\0".encode())
    return platformdirs.user_cache_path("mailtriage") / "models" / f"default-{key.hexdigest()[:16]}.npz"


def load_or_build_default(path: Path | None, categories: Sequence[str], log: Callable[[str], None]) -> Classifier:
    """The model at ``path``, or the default model (``path`` None). A missing model is built from the seed set
    when the categories are the defaults: in a second or two, without cross-validation (``train`` and
    ``evaluate`` give those figures), so that a first run needs no training step."""
    path = path or default_model_path()
    if path.exists() or sorted(categories) != sorted(DEFAULT_CATEGORY_NAMES):
        return load(path, categories)
    writable(path)  # before the training, not after it
    with path.with_name(f".{path.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two daemons starting at once: one builds, the other loads what it built
        if path.exists():
            return load(path, categories)
        log(f"building the default model from the seed set into {path} (once)")
        from mailtriage.classify import train  # scikit-learn: only to build it

        trained = train(seed_examples(), folds=0, sources=["seed"])
        metadata = save_atomically(trained, path)
    return Classifier(trained.model, metadata)


def save_atomically(trained: TrainedModel, path: Path) -> dict[str, Any]:
    """``save`` beside ``path`` and then rename into place, the metadata first: neither file is ever half written,
    and once the model file exists its metadata does (``load_or_build_default`` looks for the model)."""
    partial = path.with_name(f".{path.stem}.{os.getpid()}{path.suffix}")
    metadata = save(trained, partial)
    os.replace(metadata_path(partial), metadata_path(path))
    os.replace(partial, path)
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
