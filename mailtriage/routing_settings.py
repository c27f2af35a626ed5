"""The routing sections of the configuration: categories and their template variants, override rules, and
escalation; what their patterns match. ``sections.py`` holds the others; ``settings.Settings`` holds them together."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EMAIL = r"^[^@\s]+@[^@\s]+$"
ESCALATION_KEYWORD = "$Urgent"
"""The keyword an escalated message gets when its rule names none (``escalation.keyword`` by default)."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"a regular expression ({exc})") from None
    return value


class Patterns(Section):
    """What a rule or a template variant matches: each pattern given must match (regular expressions,
    case-insensitive; ``language`` exactly)."""

    sender: str | None = None
    recipient: str | None = None
    subject: str | None = None
    body: str | None = None
    message: str | None = None
    """Matched against the subject and the body: either may hold it."""
    attachment_type: str | None = None
    language: str | None = None

    _patterns = field_validator("sender", "recipient", "subject", "body", "message", "attachment_type")(regex)

    def require_a_pattern(self) -> None:
        keys = ("sender", "recipient", "subject", "body", "message", "attachment_type", "language")
        if not any(getattr(self, key) for key in keys):
            raise ValueError("at least one of sender, recipient, subject, body, message, attachment_type or language")


class Variant(Patterns):
    """Another approved template for some of a category's mail: the first variant whose patterns all match is
    drafted from, else the category's template."""

    name: str = Field(min_length=1)
    template: str = Field(min_length=1)

    @model_validator(mode="after")
    def _complete(self) -> Variant:
        self.require_a_pattern()
        return self


class Category(Section):
    """A category mail is sorted into, and what happens to its mail."""

    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    folder: str | None = None
    keywords: tuple[str, ...] = ()
    flag: bool = False
    template: str | None = None
    draft: bool = True
    notify: str | None = Field(default=None, pattern=EMAIL)
    target_hours: float | None = Field(default=None, ge=0)
    """The first-response target of this category's mail; None: ``deadlines.target_hours``; 0: no deadline."""
    variants: tuple[Variant, ...] = ()
    """Templates for some of its mail, tried in order before ``template``."""

    @field_validator("keywords")
    @classmethod
    def _atoms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [k for k in value if not re.fullmatch(r"[^\s()\[\]{%*\"\\]+", k) or k.startswith("\\")]
        if bad:
            raise ValueError(f"IMAP keywords without spaces, brackets, quotes or a leading backslash (not {bad})")
        return value

    @property
    def template_name(self) -> str:
        return self.template or self.name


class Rule(Patterns):
    """An override rule: when every pattern given matches, its action wins over the classifier."""

    name: str = Field(min_length=1)
    action: Literal["category", "no-draft", "untouched", "escalate"] = "category"
    category: str | None = None
    keywords: tuple[str, ...] = ()
    """Keywords set besides the category's; ``escalate`` sets ``$Urgent`` when none is given."""
    notify: str | None = None
    """A team address told about the message, instead of the category's."""

    @model_validator(mode="after")
    def _complete(self) -> Rule:
        if self.action == "category" and self.category is None:
            raise ValueError("a category for action = 'category'")
        self.require_a_pattern()
        return self


class EscalationSettings(Section):
    """Mail a person must see at once (``escalation.py``): the default rules, the keyword and who is told."""

    default_rules: bool = True
    keyword: str = Field(default=ESCALATION_KEYWORD, pattern=r"^[^\s()\\{%*\"\]]+$")
    notify: str | None = None


REFUND_CHASER = (
    r"(where|when)\b.{0,40}\b(refund|money)|still (no|not|waiting|haven't).{0,40}(refund|money)|"
    r"(toujours pas|pas encore|toujours aucun|attends toujours|j'attends).{0,60}(rembours|argent|avoir)|"
    r"(rembours\w*).{0,60}(toujours pas|pas encore|pas reçu|jamais reçu)|"
    r"(noch (immer )?nicht|immer noch nicht|noch kein|warte (immer noch|seit)).{0,60}(erstatt|geld|gutschrift)|"
    r"(erstattung|rückerstattung|gutschrift|geld).{0,60}"
    r"(noch (immer )?nicht|immer noch nicht|nicht erhalten|nie erhalten)"
)
"""A customer chasing a refund (not asking for one): en, fr, de."""
DAMAGED = (
    r"\b(damaged|broken|crushed|dented|smashed|cracked|endommagée?s?|abîmée?s?|cassée?s?|écrasée?s?|"
    r"beschädigt\w*|kaputt\w*|zerbrochen\w*|eingedrückt\w*|zerdrückt\w*)\b"
)
INCOMPLETE = (
    r"\b(missing|incomplete|only (one|two|half|part)|manqu\w*|incomplet\w*|fehl(t|en|te|ten)|unvollständig\w*)\b"
)

DEFAULT_CATEGORIES = (
    Category(name="defect-complaint", description="Complaint about a defective or damaged product"),
    Category(
        name="return-refund",
        description="Return, exchange, cancellation or refund",
        variants=(Variant(name="refund chaser", template="return-refund-status", message=REFUND_CHASER),),
    ),
    Category(name="repair", description="Repair and maintenance, in or out of warranty"),
    Category(name="how-to", description="How to set up, use or care for a product"),
    Category(name="spare-parts", description="Spare parts and accessories"),
    Category(
        name="order-delivery",
        description="Order and delivery status",
        variants=(
            Variant(name="damaged parcel", template="order-delivery-damaged", message=DAMAGED),
            Variant(name="incomplete delivery", template="order-delivery-incomplete", message=INCOMPLETE),
        ),
    ),
    Category(name="billing", description="Billing, invoices and payments"),
    Category(name="feedback", description="Praise, suggestions and other feedback"),
)
