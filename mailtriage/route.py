"""Routing: override rules first, then the classifier's category, into a RouteDecision. Pure: values in, values out."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from mailtriage.models import Classification, ParsedEmail, RouteDecision
from mailtriage.settings import Category, Rule


def matching_rule(parsed: ParsedEmail, language: str, rules: Sequence[Rule]) -> Rule | None:
    """The first rule, in order, whose every pattern matches the message."""
    for rule in rules:
        if _matches(rule, parsed, language):
            return rule
    return None


def _matches(rule: Rule, parsed: ParsedEmail, language: str) -> bool:
    fields = {
        "sender": [parsed.sender.email] if parsed.sender else [],
        "recipient": [a.email for a in parsed.to + parsed.cc],
        "subject": [parsed.subject],
        "body": [parsed.text],
        "message": [parsed.subject, parsed.text],
        "attachment_type": [a.content_type for a in parsed.attachments],
    }
    for key, values in fields.items():
        pattern = getattr(rule, key)
        if pattern is not None and not any(re.search(pattern, value, re.IGNORECASE) for value in values):
            return False
    return rule.language is None or rule.language == language


def route(
    parsed: ParsedEmail,
    classification: Classification,
    categories: Mapping[str, Category],
    rules: Sequence[Rule],
    fallback: str,
) -> RouteDecision:
    """Decide a message's category and handling: a matching rule wins over the model; the fallback category (a
    human decides) is routed like any other but never drafted to."""
    rule = matching_rule(parsed, classification.language, rules)
    if rule is not None and rule.action == "untouched":
        return RouteDecision(
            classification.category, f"rule:{rule.name}", "the rule leaves it untouched", untouched=True
        )
    if rule is not None and rule.action == "escalate":
        return _escalated(rule, classification, categories, fallback)
    if rule is not None and rule.category is not None:
        category, decided_by, reason = rule.category, f"rule:{rule.name}", f"rule {rule.name!r} matched"
    elif classification.is_fallback:
        category, decided_by = fallback, "fallback"
        reason = f"model unsure: {classification.predicted} at {classification.confidence:.2f}"
    else:
        category, decided_by = classification.category, "model"
        reason = f"model: {classification.confidence:.2f} ({classification.model_version})"
    settings = categories.get(category, Category(name=category))
    drafts = settings.draft and category != fallback and not (rule is not None and rule.action == "no-draft")
    if rule is not None and rule.action == "no-draft":
        reason += f"; rule {rule.name!r}: no draft"
    return RouteDecision(
        category=category,
        decided_by=decided_by,
        reason=reason,
        folder=settings.folder,
        keywords=(*settings.keywords, *(rule.keywords if rule else ())),
        flag=settings.flag,
        template=settings.template_name if drafts else None,
        notify=(rule.notify if rule else None) or settings.notify,
    )


ESCALATION_KEYWORD = "$Urgent"


def _escalated(
    rule: Rule, classification: Classification, categories: Mapping[str, Category], fallback: str
) -> RouteDecision:
    """A message a person must see at once: routed to its category's folder, flagged with the rule's keywords
    (``$Urgent`` by default), its team told, no draft: a generic reply to a threat or a hazard would be wrong."""
    category = rule.category or (fallback if classification.is_fallback else classification.category)
    settings = categories.get(category, Category(name=category))
    keywords = rule.keywords or (ESCALATION_KEYWORD,)
    return RouteDecision(
        category=category,
        decided_by=f"rule:{rule.name}",
        reason=f"escalated: rule {rule.name!r} matched; no draft, a person answers",
        folder=settings.folder,
        keywords=(*settings.keywords, *keywords),
        flag=True,
        template=None,
        notify=rule.notify or settings.notify,
    )
