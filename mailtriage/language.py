"""The language of a message (py3langid: offline, a model of a few MB shipped in the package).

The set of languages it chooses among is broad on purpose, so that a Spanish or Dutch mail is called what it is
rather than the closest of the languages we reply in; below ``MIN_CONFIDENCE`` the language is ``unknown``.
"""

from __future__ import annotations

import threading
from functools import cache

from py3langid.langid import MODEL_FILE, LanguageIdentifier

UNKNOWN = "unknown"
MIN_CONFIDENCE = 0.8
CANDIDATES = ("en", "fr", "de", "es", "it", "nl", "pt", "pl", "sv", "da", "no", "fi", "cs", "tr", "ru")
_LOCK = threading.Lock()


@cache
def _identifier() -> LanguageIdentifier:
    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(list(CANDIDATES))
    return identifier


def detect(text: str) -> tuple[str, float]:
    """The language code of ``text`` and how sure the detector is; ``unknown`` when it is not sure enough."""
    if not text.strip():
        return UNKNOWN, 0.0
    with _LOCK:  # the identifier reuses buffers between calls
        language, confidence = _identifier().classify(text[:2000])
    return (str(language), float(confidence)) if confidence >= MIN_CONFIDENCE else (UNKNOWN, float(confidence))
