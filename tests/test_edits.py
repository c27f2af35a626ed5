"""What agents do with drafts: the verdict on a reply, and the report's counts per template."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailtriage.edits import DraftUse, draft_use, own_words
from mailtriage.report import draft_uses
from mailtriage.store import AuditEvent

DRAFT = (
    "Dear Anna Schmidt,\n\nThank you for your message regarding A-10234. Our team will look into your request and "
    "get back to you. To help us check it, could you please briefly tell us the reason for your request? If the "
    "product is damaged, a few photos would also be helpful.\n\nKind regards,\nThe support team\n"
)
QUOTE = "\nOn 23.11.2026 08:15, Anna Schmidt <anna@example.org> wrote:\n> I want to return my kettle.\n> Anna\n"


@pytest.mark.parametrize(
    "reply,use",
    [
        (DRAFT + QUOTE, DraftUse.UNCHANGED),
        (DRAFT.replace("Dear Anna Schmidt", "Hello Anna").replace("a few photos", "two photos") + QUOTE,
         DraftUse.EDITED),
        ("Hello Anna,\n\nThank you for your message about A-10234. Could you tell us why you want to return it? "
         "Photos would help if it is damaged. Our team will look into your request.\n\nKind regards,\nThe support "
         "team\n" + QUOTE, DraftUse.REWRITTEN),
        ("Hi Anna, the return label is attached; drop the parcel at any post office.\nBest, Tom\n" + QUOTE,
         DraftUse.UNUSED),
    ],
    ids=["unchanged", "edited", "rewritten", "unused"],
)  # fmt: skip
def test_a_reply_is_told_apart_as_the_draft_sent_unchanged_edited_rewritten_or_unused(
    reply: str, use: DraftUse
) -> None:
    assert draft_use(DRAFT, reply)[0] is use


def test_the_quoted_message_and_its_introduction_are_not_the_writers_words() -> None:
    assert own_words("Thanks!\n\nOn Monday, Anna wrote:\n> refund now\n") == ["thanks"]
    assert own_words("Reply\r\n> quoted\r\nbelow the quote") == ["reply"]


def event(template: str, use: str, day: int = 2) -> AuditEvent:
    detail = {"template": template, "use": use, "kept": 1.0}
    return AuditEvent(datetime(2026, 12, day, tzinfo=UTC), "support", 1, "draft-used", detail)


def test_the_report_counts_each_templates_drafts_by_what_agents_did_with_them() -> None:
    events = [event("billing/en", "unchanged"), event("billing/fr", "unchanged"), event("billing/de", "edited"),
              event("repair/en", "rewritten"), event("repair/de", "unused")]  # fmt: skip
    events.append(event("repair/en", "unused", day=1))  # before the report's period
    counts = draft_uses(events, since=datetime(2026, 12, 2, tzinfo=UTC))
    assert counts == {
        "billing": {"unchanged": 2, "edited": 1, "rewritten": 0, "unused": 0},
        "repair": {"unchanged": 0, "edited": 0, "rewritten": 1, "unused": 1},
    }
