"""The one line a person reads about each message, in the log and in the demo:

``support: UID 31 from anna@example.org "Kettle leaks": defect-complaint (model 0.97) → Support/Defects, draft
written``
"""

from __future__ import annotations

from mailtriage.models import Classification, ParsedEmail, RouteDecision

SUBJECT_CHARS = 80


def who(mailbox: str, uid: int, sender: str, subject: str) -> str:
    """``support: UID 31 from anna@example.org "Kettle leaks"``."""
    shown = subject if len(subject) <= SUBJECT_CHARS else subject[: SUBJECT_CHARS - 1] + "…"
    return f'{mailbox}: UID {uid} from {sender or "(no sender)"} "{shown}"'


def decided(category: str | None, decided_by: str | None, confidence: float | None) -> str:
    """``defect-complaint (model 0.97)``, ``billing (rule key accounts)``, ``needs-triage (model unsure, 0.31)``."""
    if category is None:
        return "not classified"
    if decided_by and decided_by.startswith("rule:"):
        return f"{category} (rule {decided_by.removeprefix('rule:')})"
    sure = f"{confidence:.2f}" if confidence is not None else "?"
    return f"{category} (model unsure, {sure})" if decided_by == "fallback" else f"{category} (model {sure})"


def of_decision(classification: Classification | None, decision: RouteDecision | None) -> str:
    if decision is not None:
        confidence = classification.confidence if classification else None
        return decided(decision.category, decision.decided_by, confidence)
    if classification is not None:
        return decided(classification.category, "model", classification.confidence)
    return "not classified"


def sender_of(parsed: ParsedEmail) -> str:
    return parsed.sender.email if parsed.sender else ""
