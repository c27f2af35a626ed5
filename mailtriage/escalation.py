"""Mail a person must see at once: legal threats, mediators and consumer bodies, chargebacks, safety hazards.

The default escalation rules, in English, French and German, as override rules with the action ``escalate``: the
message gets no generic draft, is flagged with ``\\Flagged`` and the escalation keyword (``$Urgent``), its team is
told, and the rule is named in the audit log. They are tried before the configured rules; ``escalation.default_rules
= false`` leaves them out, and ``[[rules]]`` with ``action = "escalate"`` adds others.

Each pattern is matched, case-blind, against the subject and the body, in the language the message was detected in:
"Brand" is a fire in German and a make in English.
"""

from __future__ import annotations

from mailtriage.routing_settings import EscalationSettings, Rule

_PATTERNS: dict[str, dict[str, str]] = {
    "legal threat": {
        "en": r"\b(lawyers?|attorneys?|solicitors?|legal action|legal proceedings|lawsuit|sue you|small claims|"
        r"(take|taking) (you|this|it) to court)\b",
        "fr": r"\b(avocats?|mise en demeure|action en justice|poursuites? judiciaires?|tribunal|porter plainte|"
        r"huissier)\b",
        "de": r"\b(anwalt|anwältin|rechtsanwalt\w*|anwaltlich\w*|klage|verklagen|vor gericht|gerichtlich\w*|"
        r"rechtliche schritte|mahnbescheid|abmahnung)\b",
    },
    "mediator or consumer body": {
        "en": r"\b(mediators?|mediation|ombudsman|ombudsperson|arbitration|trading standards|citizens advice|"
        r"consumer (rights|protection) (agency|authority|body|organi[sz]ation))\b",
        "fr": r"\b(médiateur|médiation|conciliateur|dgccrf|ufc[- ]que choisir|association de consommateurs|"
        r"60 millions de consommateurs)\b",
        "de": r"\b(schlichtung\w*|ombudsmann|ombudsstelle|verbraucherzentrale|verbraucherschutz\w*)\b",
    },
    "chargeback": {
        "en": r"\b(charge ?backs?|dispute (the|this|my) (charge|payment|transaction)|"
        r"reverse (the|my) (charge|payment))\b",
        "fr": r"\b(rétrofacturation|faire opposition|opposition (sur|à) (le|la|mon|ma|ce|cette)|"
        r"contester (le|la|ce|cette) (paiement|prélèvement|transaction|débit))\b",
        "de": r"\b(rückbuchung\w*|chargeback|zurückbuchen|lastschrift (zurück\w*|widerrufen)|widerspruch gegen die "
        r"(lastschrift|abbuchung|zahlung))\b",
    },
    "safety hazard": {
        "en": r"\b(caught fire|on fire|burst into flames|flames?|smoke (came|coming|poured|pouring)|started smoking|"
        r"smell(ed|s)? of burning|electric(al)? shock|shocked (me|him|her)|electrocut\w*|sparking|sparked|"
        r"sparks? (came|flew|flying)|explod\w*|explosion|injur(y|ies|ed)|hospital|burn(ed|t)? (my|his|her|their))\b",
        "fr": r"\b(pris feu|en feu|flammes?|fumée|étincelles?|décharge électrique|électrocut\w*|brûlures?|"
        r"(odeur de|sent le) brûlé|blessée?s?|blessures?|hôpital|urgences|explos\w*)\b",
        "de": r"\b(brand|in flammen|flammen?|feuer gefangen|rauch|qualm\w*|funken\w*|funkt|stromschlag|"
        r"elektrischen schlag|verbrannt|verbrennung\w*|verletz\w*|krankenhaus|notaufnahme|explodiert|explosion)\b",
    },
}


def default_rules(settings: EscalationSettings) -> tuple[Rule, ...]:
    """The default escalation rules, one per kind and language, or none when ``default_rules`` is off."""
    if not settings.default_rules:
        return ()
    return tuple(
        Rule(
            name=f"{kind} ({language})",
            message=pattern,
            language=language,
            action="escalate",
            keywords=(settings.keyword,),
            notify=settings.notify,
        )  # fmt: skip
        for kind, by_language in _PATTERNS.items()
        for language, pattern in by_language.items()
    )
