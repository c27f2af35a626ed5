from __future__ import annotations

import json
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from py3langid.langid import MODEL_FILE, LanguageIdentifier, visit_counts

import mailtriage
from mailtriage.language import CANDIDATES, MIN_CONFIDENCE, UNKNOWN, Identifier, _encode, _identifier, detect

SEED = Path(mailtriage.__file__).parent / "seed"
LINT = Path(__file__).parent / "fixtures" / "lint"
IDENTIFIER_BYTES = 6_000_000  # measured 4,256,634 (py3langid's own: about 75 MB)


def mails() -> list[str]:
    """Every 12th seed mail (60, en/fr/de) and every 60th lint sentence (30), as the daemon would read them."""
    seed = [json.loads(line) for path in sorted(SEED.glob("*.jsonl")) for line in path.read_text().splitlines()]
    lint = [json.loads(line) for path in sorted(LINT.glob("*.jsonl")) for line in path.read_text().splitlines()]
    return [f"{item['subject']}\n{item['body']}" for item in seed[::12]] + [item["text"] for item in lint[::60]]


def odd_texts() -> list[str]:
    """Texts off the beaten path: capitals, other scripts, emoji, a lone surrogate, digits, more than 2000 chars."""
    rng = random.Random(20)
    alphabet = "abcxyzäöüßéçñåøąłčřşğабвгдежзыюя αβγ中文日本語한국어العربية0123456789 .,!?\n-'€" + "\ud800\U0001f600"
    return [
        "MY KETTLE IS LEAKING, PLEASE REPLACE IT",
        "Привет, мой чайник протекает с понедельника.",
        "Merhaba, su ısıtıcım dün bozuldu, ne yapmalıyım?",
        "注文番号 4471 の件です。まだ届いていません。",
        "Order #4471 😡😡 still not here!!!",
        "0800 123 456 / 17.03.2025 / KX-200",
        "Cześć, mój czajnik przecieka od wczoraj.",
        "Hola, mi hervidor gotea desde ayer. " * 80,
        *("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 300))) for _ in range(20)),
    ]


@pytest.fixture(scope="module")
def py3langid() -> LanguageIdentifier:
    """py3langid's own identifier restricted to the candidates, as mailtriage used it before it kept less."""
    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(list(CANDIDATES))
    return identifier


@pytest.mark.parametrize(
    "text,language",
    [
        ("My KX-200 kettle has been leaking from the base since yesterday, could you replace it?", "en"),
        ("Ma bouilloire KX-200 fuit par le dessous depuis hier, pouvez-vous me la remplacer ?", "fr"),
        ("Mein Wasserkocher KX-200 ist seit gestern undicht, können Sie ihn bitte ersetzen?", "de"),
        ("Mi hervidor KX-200 gotea desde ayer, ¿pueden cambiármelo por otro?", "es"),
        ("Mijn waterkoker lekt sinds gisteren, kunnen jullie hem vervangen?", "nl"),
    ],
)
def test_a_mail_is_detected_in_its_language_with_confidence(text: str, language: str) -> None:
    detected, confidence = detect(text)
    assert detected == language and confidence >= MIN_CONFIDENCE


@pytest.mark.parametrize("text", ["ok", "Thanks!", "Merci", "Danke", "KX-200", "Re: Order #4471"])
def test_a_short_ambiguous_text_is_unknown(text: str) -> None:
    language, confidence = detect(text)
    assert language == UNKNOWN and 0.0 < confidence < MIN_CONFIDENCE


@pytest.mark.parametrize("text", ["", "  \n\t "])
def test_an_empty_text_is_unknown_with_no_confidence(text: str) -> None:
    assert detect(text) == (UNKNOWN, 0.0)


def test_the_identifier_answers_exactly_as_py3langid_restricted_to_the_candidates(
    py3langid: LanguageIdentifier,
) -> None:
    texts = [text[:2000] for text in mails() + odd_texts()]
    assert len(texts) > 100
    assert [_identifier().classify(text) for text in texts] == [py3langid.classify(text) for text in texts]


def test_the_identifier_finds_the_features_py3langid_s_automaton_finds(py3langid: LanguageIdentifier) -> None:
    rowbase = [row << 8 for row in py3langid.tk_row]
    for text in mails()[::3] + odd_texts():
        data = _encode(text)
        expected = visit_counts(py3langid.tk_nextmove, rowbase, py3langid.tk_output, data) or Counter()
        assert Counter(_identifier()._features(data).tolist()) == expected


def test_detect_gives_the_same_answers_from_many_threads_at_once() -> None:
    texts = mails()
    expected = [detect(text) for text in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(detect, texts * 4)) == expected * 4


def held(array: np.ndarray[Any, Any]) -> int:
    """The bytes an array keeps alive: those of the buffer it is a view of, if it is one."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array.nbytes


def test_the_identifier_holds_a_few_mb_of_arrays_of_its_own() -> None:
    identifier = _identifier()
    arrays: tuple[np.ndarray[Any, Any], ...] = (
        identifier.weights,
        identifier.priors,
        identifier.keys,
        identifier.features,
    )
    assert all(array.base is None or isinstance(array.base, np.ndarray) for array in arrays)  # not py3langid's buffers
    assert sum(map(held, arrays)) == identifier.nbytes < IDENTIFIER_BYTES  # nor views of larger arrays
    assert identifier.weights.shape[1] == len(CANDIDATES)


def test_a_language_py3langid_has_two_columns_for_is_refused() -> None:
    with pytest.raises(ValueError, match="more than one column"):
        Identifier.restricted(("sr", "en"))
