"""What the model reads: hashed n-grams that compute what a vocabulary did, and embeddings taken only where
cross-validation says they help every language."""

from __future__ import annotations

from pathlib import Path

import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion, Pipeline

from mailtriage import classify
from mailtriage.errors import ModelError, TrainingError
from mailtriage.evaluation import Metrics
from mailtriage.features import NgramColumns, char_grams, word_grams
from tests.test_classify import LANGUAGES, held_out


def vocabulary_model() -> Pipeline:
    features = FeatureUnion([
        ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, strip_accents="unicode")),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)),
    ])  # fmt: skip
    return Pipeline([("features", features), ("classifier", classify.SoftmaxLinearSVC())])


def test_hashed_ngrams_classify_the_held_out_mails_exactly_as_a_fitted_vocabulary_did() -> None:
    seed = classify.seed_examples()
    texts, labels = [e.text for e in seed], [e.label for e in seed]
    hashed, vocabulary = classify.build_model().fit(texts, labels), vocabulary_model().fit(texts, labels)
    tests = [e.text for language in LANGUAGES for e in held_out(language)]
    # Of 2^20 hashed columns a few collide (some 2 % of the seed set's n-grams share one), so the SVM lands a
    # hair away: probabilities within a tenth, and the same category for every held-out mail.
    for (_, ours), (_, theirs) in zip(hashed.model_.parts, vocabulary.named_steps["features"].transformer_list,
                                      strict=True):  # fmt: skip
        assert len(theirs.vocabulary_) * 0.97 <= ours.width <= len(theirs.vocabulary_)
    assert list(hashed.predict(tests)) == list(vocabulary.predict(tests))
    assert hashed.predict_proba(tests) == pytest.approx(vocabulary.predict_proba(tests), abs=0.1)


def test_the_ngrams_are_scikit_learns_words_and_char_wb_ngrams() -> None:
    words = TfidfVectorizer(ngram_range=(1, 2), strip_accents="unicode").build_analyzer()
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5)).build_analyzer()
    for text in ("Ma cafetière fuit  à chaque utilisation!", "Wasserkocher KV-8: Fehler E3", "a", "", "Ré: Öl"):
        assert word_grams(text, 1, 2, accents=False) == words(text)
        assert char_grams(text, 2, 5) == chars(text)


def test_hashed_ngrams_keep_only_the_columns_seen_in_min_df_training_texts() -> None:
    chars = NgramColumns.fit(["abc", "abd", "xyz"], "char_wb", 2, 2, min_df=2)
    assert chars.width == len({" a", "ab"})  # ' a' and 'ab' are in two texts; the rest in one
    columns, values = chars.row("qq")
    assert len(columns) == 0 and len(values) == 0  # what training never saw counts nowhere
    columns, values = chars.row("ab")
    assert len(columns) == 2 and float(values @ values) == pytest.approx(1.0)


def test_a_column_is_explained_by_the_ngram_of_the_text_it_came_from() -> None:
    words = NgramColumns.fit(["the kettle leaks", "the parcel is late"], "word", 1, 2)
    named = words.terms("The kettle is late")
    assert set(named.values()) == {"the", "kettle", "the kettle", "is", "late", "is late"}
    columns, _ = words.row("The kettle is late")
    assert set(columns.tolist()) == set(named)


def metrics(macro_f1: float, **languages: float) -> Metrics:
    per_language = {name: {"examples": 100, "accuracy": f1, "macro_f1": f1} for name, f1 in languages.items()}
    return Metrics(100, macro_f1, macro_f1, {}, per_language, {}, [])


def test_embeddings_are_chosen_only_when_they_raise_macro_f1_without_lowering_any_language() -> None:
    plain = metrics(0.80, en=0.80, fr=0.80)
    assert classify.choose_features({"ngrams": plain, "ngrams+embeddings": metrics(0.85, en=0.90, fr=0.80)}) == (
        "ngrams+embeddings"
    )
    assert classify.choose_features({"ngrams": plain, "ngrams+embeddings": metrics(0.85, en=0.95, fr=0.75)}) == "ngrams"
    assert classify.choose_features({"ngrams": plain, "ngrams+embeddings": metrics(0.80, en=0.80, fr=0.80)}) == "ngrams"


def test_a_language_with_few_examples_does_not_weigh_in_the_choice() -> None:
    plain = metrics(0.80, en=0.80)
    plain.per_language["it"] = {"examples": 5, "accuracy": 1.0, "macro_f1": 1.0}
    better = metrics(0.85, en=0.90)
    better.per_language["it"] = {"examples": 5, "accuracy": 0.6, "macro_f1": 0.6}
    assert classify.choose_features({"ngrams": plain, "ngrams+embeddings": better}) == "ngrams+embeddings"


def test_training_on_the_seed_set_with_auto_keeps_ngrams_and_records_both_figures() -> None:
    trained = classify.train(classify.seed_examples(), folds=3, features="auto")
    assert trained.metadata["features"] == "ngrams"  # embeddings lower every language here (docs/performance.md)
    choice = trained.metadata["feature_choice"]
    assert set(choice) == set(classify.available_features())
    if "ngrams+embeddings" in choice:
        plain, embedded = choice["ngrams"]["per_language"], choice["ngrams+embeddings"]["per_language"]
        assert any(embedded[language] < plain[language] for language in LANGUAGES)


def test_a_model_reading_embeddings_is_refused_with_the_extra_to_install_where_wordllama_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "ngrams+embeddings" not in classify.available_features():
        pytest.skip("wordllama is not installed (pip install 'mailtriage[embeddings]')")
    seed = classify.seed_examples()
    classify.save(classify.train(seed, folds=0, features="ngrams+embeddings"), tmp_path / "m.npz")
    import mailtriage.model

    monkeypatch.setattr(mailtriage.model, "embeddings_available", lambda: False)
    monkeypatch.setattr(classify, "embeddings_available", lambda: False)
    with pytest.raises(ModelError, match=r"mailtriage\[embeddings\]"):
        classify.load(tmp_path / "m.npz")
    with pytest.raises(TrainingError, match=r"mailtriage\[embeddings\]"):
        classify.build_model("ngrams+embeddings")


def test_a_daemon_built_from_settings_with_a_model_in_place_never_imports_scikit_learn(
    seed_model: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    script = f"""
import sys
from pathlib import Path
from mailtriage.settings import ClassifierSettings, MailboxSettings, Settings, StoreSettings
from mailtriage.wiring import daemon_from_settings
settings = Settings(mailboxes=(MailboxSettings(name="m", maildir=Path({str(tmp_path / "mail")!r})),),
                    store=StoreSettings(url="sqlite:///{tmp_path / "store.db"}"),
                    classifier=ClassifierSettings(model=Path({str(seed_model)!r})))
daemon = daemon_from_settings(settings)
print(sorted(name for name in ("sklearn", "scipy", "matplotlib") if name in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # some 100 MiB the daemon does not carry
