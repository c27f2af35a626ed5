"""What agents do with drafts: the reply an agent sent, compared with the draft mailtriage wrote for the same
message. Pure: two texts in, a verdict out. The deadline sweep records the verdict of each reply it finds in Sent
(``draft-used`` in the audit log) and ``mailtriage report`` counts them per template, so that compliance and admins
see which texts agents send as they are and which they rewrite."""

from __future__ import annotations

import difflib
import enum
import re

UNCHANGED_AT = 0.98
EDITED_AT = 0.75
REWRITTEN_AT = 0.35
"""Shares of the draft's words the reply keeps, in order (difflib's ratio over words): at or above each, the
reply is the draft sent unchanged, lightly edited, rewritten; below the last, the agent wrote their own."""
_WORD = re.compile(r"\w+", re.UNICODE)


class DraftUse(enum.StrEnum):
    UNCHANGED = "unchanged"
    EDITED = "edited"
    REWRITTEN = "rewritten"
    UNUSED = "unused"
    """Answered without the draft: the reply keeps little or nothing of it."""


def own_words(text: str) -> list[str]:
    """The words of a reply or a draft above the quoted message: lines from the first quoted one (``>``) on, and
    the line introducing them ("On ... wrote:"), are not the writer's."""
    lines = text.replace("\r\n", "\n").split("\n")
    quoted = next((i for i, line in enumerate(lines) if line.lstrip().startswith(">")), len(lines))
    kept = lines[:quoted]
    while kept and not kept[-1].strip():
        kept.pop()
    if kept and quoted < len(lines) and kept[-1].rstrip().endswith(":"):
        kept.pop()
    return _WORD.findall("\n".join(kept).casefold())


def draft_use(draft: str, reply: str) -> tuple[DraftUse, float]:
    """How much of ``draft`` the agent's ``reply`` kept, as a verdict and the share of words (0 to 1)."""
    ratio = difflib.SequenceMatcher(None, own_words(draft), own_words(reply), autojunk=False).ratio()
    if ratio >= UNCHANGED_AT:
        return DraftUse.UNCHANGED, ratio
    if ratio >= EDITED_AT:
        return DraftUse.EDITED, ratio
    if ratio >= REWRITTEN_AT:
        return DraftUse.REWRITTEN, ratio
    return DraftUse.UNUSED, ratio
