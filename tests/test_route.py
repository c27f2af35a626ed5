from __future__ import annotations

import pytest

from mailtriage.models import Classification
from mailtriage.parse import parse_message
from mailtriage.route import route
from mailtriage.settings import Category, Rule

CATEGORIES = {
    "return-refund": Category(name="return-refund", folder="Support/Returns", keywords=("$Returns",), flag=True),
    "billing": Category(name="billing", template="invoices", draft=True),
    "feedback": Category(name="feedback", draft=False),
}
MAIL = b"From: Ann <ann@bigcustomer.example>\nTo: support@example.com\nSubject: Refund?\n\nI want my money back.\n"


def sure(category: str, language: str = "en") -> Classification:
    return Classification(category, category, 0.93, language, "m1")


def unsure(predicted: str) -> Classification:
    return Classification("needs-triage", predicted, 0.31, "en", "m1")


def decide(classification: Classification, *rules: Rule, mail: bytes = MAIL) -> object:
    return route(parse_message(mail), classification, CATEGORIES, rules, "needs-triage")


def test_the_models_category_brings_its_folder_keywords_flag_and_template() -> None:
    decision = decide(sure("return-refund"))
    assert (decision.category, decision.decided_by) == ("return-refund", "model")
    assert (decision.folder, decision.keywords, decision.flag, decision.template) == (
        "Support/Returns", ("$Returns",), True, "return-refund"
    )  # fmt: skip


def test_a_category_can_name_another_template_or_no_draft_at_all() -> None:
    assert decide(sure("billing")).template == "invoices"
    assert decide(sure("feedback")).template is None


def test_mail_the_model_is_unsure_about_goes_to_the_fallback_and_is_never_drafted_to() -> None:
    decision = decide(unsure("return-refund"))
    assert (decision.category, decision.decided_by, decision.template) == ("needs-triage", "fallback", None)
    assert "return-refund at 0.31" in decision.reason


@pytest.mark.parametrize(
    "rule",
    [
        Rule(name="vip", sender=r"@bigcustomer\.example$", category="billing"),
        Rule(name="legal", body=r"\bmoney back\b", category="billing"),
        Rule(name="subject", subject="^refund", category="billing"),
        Rule(name="to", recipient="^support@", category="billing"),
        Rule(name="english", language="en", category="billing"),
    ],
    ids=lambda r: r.name,
)
def test_an_override_rule_beats_the_classifier_and_says_so(rule: Rule) -> None:
    decision = decide(sure("return-refund"), rule)
    assert (decision.category, decision.decided_by) == ("billing", f"rule:{rule.name}")


def test_rules_are_tried_in_order_and_all_their_patterns_must_match() -> None:
    no_match = Rule(name="both", sender=r"@bigcustomer\.example$", subject="invoice", category="feedback")
    first = Rule(name="first", sender="ann@", category="billing")
    second = Rule(name="second", sender="ann@", category="feedback")
    assert decide(sure("return-refund"), no_match, first, second).decided_by == "rule:first"


def test_a_rule_can_stop_the_draft_or_leave_the_message_untouched() -> None:
    quiet = decide(sure("return-refund"), Rule(name="quiet", sender="ann@", action="no-draft"))
    assert (quiet.category, quiet.template, quiet.folder) == ("return-refund", None, "Support/Returns")
    hands_off = decide(sure("return-refund"), Rule(name="hands-off", sender="ann@", action="untouched"))
    assert hands_off.untouched and hands_off.decided_by == "rule:hands-off"


def test_a_rule_on_attachment_type_matches_the_attachments_content_type() -> None:
    mail = (
        b"From: a@example.com\nSubject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\nsee file\n--b\nContent-Type: application/pdf\n"
        b'Content-Disposition: attachment; filename="invoice.pdf"\n\nJVBERi0=\n--b--\n'
    )
    rule = Rule(name="pdf", attachment_type="^application/pdf$", category="billing")
    assert decide(sure("feedback"), rule, mail=mail).category == "billing"
    assert decide(sure("feedback"), rule).category == "feedback"


def test_a_rule_with_a_broken_pattern_or_no_pattern_is_refused() -> None:
    with pytest.raises(ValueError, match="a regular expression"):
        Rule(name="bad", subject="(unclosed", category="billing")
    with pytest.raises(ValueError, match="at least one of sender"):
        Rule(name="empty", category="billing")
