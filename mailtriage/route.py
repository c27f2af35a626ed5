"""Routing: override rules first, then the classifier's category, into a RouteDecision. Pure: values in, values out."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from mailtriage.models import Classification, ParsedEmail, RouteDecision
from mailtriage.routing_settings import ESCALATION_KEYWORD, Patterns
from mailtriage.settings import Category, Rule


def matching_rule(parsed: ParsedEmail, language: str, rules: Sequence[Rule]) -> Rule | None:
    """The first rule, in order, whose every pattern matches the message."""
    for rule in rules:
        if _matches(rule, parsed, language):
            return rule
    return None


def variant(parsed: ParsedEmail, language: str, category: Category) -> tuple[str, str | None]:
    """The template a category's message is drafted from: its first matching variant's, else the category's;
    and the variant's name, if one matched."""
    for candidate in category.variants:
        if _matches(candidate, parsed, language):
            return candidate.template, candidate.name
    return category.template_name, None


def _matches(rule: Patterns, parsed: ParsedEmail, language: str) -> bool:
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
    category, decided_by, reason = _decided(rule, classification, fallback)
    settings = categories.get(category, Category(name=category))
    drafts = settings.draft and category != fallback and not (rule is not None and rule.action == "no-draft")
    if rule is not None and rule.action == "no-draft":
        reason += f"; rule {rule.name!r}: no draft"
    template, variant_name = variant(parsed, classification.language, settings)
    if drafts and variant_name is not None:
        reason += f"; variant {variant_name!r}"
    return RouteDecision(
        category=category,
        decided_by=decided_by,
        reason=reason,
        folder=settings.folder,
        keywords=(*settings.keywords, *(rule.keywords if rule else ())),
        flag=settings.flag,
        template=template if drafts else None,
        notify=(rule.notify if rule else None) or settings.notify,
    )


def _decided(rule: Rule | None, classification: Classification, fallback: str) -> tuple[str, str, str]:
    """The category, who decided it and why: a rule naming one, else the model, or the fallback when unsure."""
    if rule is not None and rule.category is not None:
        return rule.category, f"rule:{rule.name}", f"rule {rule.name!r} matched"
    if classification.is_fallback:
        return fallback, "fallback", f"model unsure: {classification.predicted} at {classification.confidence:.2f}"
    return classification.category, "model", f"model: {classification.confidence:.2f} ({classification.model_version})"


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
