from __future__ import annotations

import pytest

from mailtriage.escalation import default_rules
from mailtriage.models import Classification
from mailtriage.parse import parse_message
from mailtriage.route import route
from mailtriage.settings import DEFAULT_CATEGORIES, Category, EscalationSettings, Rule, Variant

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


# --- escalation ------------------------------------------------------------------------------------------------

ESCALATED = [
    ("en", "legal threat", "If this is not sorted by Friday my lawyer will be in touch."),
    ("en", "mediator or consumer body", "I am taking this to the ombudsman."),
    ("en", "chargeback", "I will ask my bank for a chargeback."),
    ("en", "safety hazard", "The charger caught fire on my desk last night."),
    ("fr", "legal threat", "Sans réponse, je vous adresserai une mise en demeure."),
    ("fr", "mediator or consumer body", "Je vais saisir le médiateur de la consommation."),
    ("fr", "chargeback", "Je vais faire opposition sur le paiement auprès de ma banque."),
    ("fr", "safety hazard", "De la fumée est sortie de la bouilloire et ça sent le brûlé."),
    ("de", "legal threat", "Andernfalls übergebe ich die Sache meinem Anwalt."),
    ("de", "mediator or consumer body", "Ich habe mich bereits an die Verbraucherzentrale gewandt."),
    ("de", "chargeback", "Ich werde eine Rückbuchung bei meiner Bank veranlassen."),
    ("de", "safety hazard", "Beim Einschalten bekam ich einen Stromschlag."),
]


def mail_saying(text: str, subject: str = "My order") -> bytes:
    return (
        f"From: Ann <ann@example.org>\nSubject: {subject}\nContent-Type: text/plain; charset=utf-8\n\n{text}\n".encode()
    )


def escalating(settings: EscalationSettings | None = None) -> tuple[Rule, ...]:
    return default_rules(settings or EscalationSettings())


@pytest.mark.parametrize("language,kind,text", ESCALATED)
def test_threats_chargebacks_and_hazards_are_escalated_in_each_language(language: str, kind: str, text: str) -> None:
    decision = decide(sure("return-refund", language), *escalating(), mail=mail_saying(text))
    assert decision.decided_by == f"rule:{kind} ({language})"
    assert (decision.template, decision.flag, decision.category) == (None, True, "return-refund")
    assert decision.keywords == ("$Returns", "$Urgent") and decision.folder == "Support/Returns"
    assert decision.reason.startswith("escalated")


def test_an_escalation_in_the_subject_alone_is_found_too() -> None:
    mail = mail_saying("See above.", subject="Charger caught fire!")
    assert decide(sure("billing"), *escalating(), mail=mail).decided_by == "rule:safety hazard (en)"


def test_escalations_match_in_the_messages_language_only() -> None:
    # "Brand" is a fire in German, a make in English; "Gericht" a court and a dish.
    english = mail_saying("Which brand of descaler do you recommend?")
    german = mail_saying("Mein Gericht ist im Ofen angebrannt, welches Programm ist richtig?")
    assert decide(sure("how-to"), *escalating(), mail=english).decided_by == "model"
    assert decide(sure("how-to", "de"), *escalating(), mail=german).decided_by == "model"


def test_escalation_can_be_turned_off_or_written_as_a_rule_of_ones_own() -> None:
    mail = mail_saying("My lawyer will write to you.")
    assert decide(sure("billing"), *escalating(EscalationSettings(default_rules=False)), mail=mail).template
    own = Rule(name="press", message=r"\bjournalist\b", action="escalate", keywords=("$Press",), notify="pr@x.example")
    decision = decide(sure("billing"), own, mail=mail_saying("I am a journalist writing about your kettles."))
    assert (decision.keywords, decision.notify, decision.template) == (("$Press",), "pr@x.example", None)
    notified = EscalationSettings(notify="legal@example.com", keyword="$Escalated")
    decision = decide(sure("billing"), *escalating(notified), mail=mail)
    assert (decision.keywords, decision.notify) == (("$Escalated",), "legal@example.com")


# --- template variants -----------------------------------------------------------------------------------------

VARIANTS = [
    ("return-refund", "en", "I returned the kettle three weeks ago and I still haven't received my refund.",
     "return-refund-status"),
    ("return-refund", "en", "I would like to return the kettle and get a refund.", "return-refund"),
    ("return-refund", "fr", "J'ai renvoyé la bouilloire il y a trois semaines et je n'ai toujours pas été remboursée.",
     "return-refund-status"),
    ("return-refund", "fr", "Je souhaite retourner la bouilloire et être remboursée.", "return-refund"),
    ("return-refund", "de", "Ich warte seit drei Wochen auf die Erstattung, das Geld ist immer noch nicht da.",
     "return-refund-status"),
    ("return-refund", "de", "Ich möchte den Wasserkocher zurückgeben und mein Geld zurück.", "return-refund"),
    ("order-delivery", "en", "The parcel arrived today and the box was crushed, the lid is cracked.",
     "order-delivery-damaged"),
    ("order-delivery", "fr", "Il manque le couvercle dans le colis que j'ai reçu.", "order-delivery-incomplete"),
    ("order-delivery", "de", "Das Paket kam beschädigt an.", "order-delivery-damaged"),
    ("order-delivery", "de", "In der Lieferung fehlt das Netzteil.", "order-delivery-incomplete"),
    ("order-delivery", "en", "My order was due on Monday and has not arrived yet.", "order-delivery"),
]  # fmt: skip


@pytest.mark.parametrize("category,language,text,template", VARIANTS)
def test_a_categorys_first_matching_variant_chooses_the_template_else_its_own(
    category: str, language: str, text: str, template: str
) -> None:
    categories = {c.name: c for c in DEFAULT_CATEGORIES}
    decision = route(parse_message(mail_saying(text)), sure(category, language), categories, (), "needs-triage")
    assert decision.template == template
    assert ("variant" in decision.reason) is (template != category)


def test_a_variant_needs_a_pattern_and_drafts_nothing_where_its_category_does_not() -> None:
    with pytest.raises(ValueError, match="at least one of"):
        Variant(name="x", template="y")
    quiet = Category(name="feedback", draft=False, variants=(Variant(name="v", template="t", message="."),))
    assert decide(sure("feedback"), mail=mail_saying("anything")).template is None
    assert route(parse_message(MAIL), sure("feedback"), {"feedback": quiet}, (), "needs-triage").template is None
