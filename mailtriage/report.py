"""The manager's report: volume, first-response times, deadlines and automation per category and language, and
what customers write about.

Pure computation over the records the caller passes in (no store, no configuration), plus its renderings: rich
tables, JSON, CSV and a PNG chart.
"""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.feature_extraction.text import CountVectorizer

from mailtriage.deadlines import OPEN, Policy
from mailtriage.edits import DraftUse
from mailtriage.models import MessageKind
from mailtriage.store import AuditEvent, MessageRecord, Status, Store
from mailtriage.terminal import cell

if TYPE_CHECKING:
    from mailtriage.settings import Settings

ALL = "all"
"""The language of a category's total row."""
NONE_SHOWN = "–"
TOKENS = r"(?u)\b[^\W\d_]{3,}\b"
"""Words of three letters or more, accented ones included (so French and German words stay whole); no digits."""
_WORD = re.compile(TOKENS)
STOP_WORDS = frozenset(
    # English, French and German function words: common to every category, yet so frequent that their share of a
    # category's words outweighs c-TF-IDF's discount ("the" would top the list); and greetings, thanks and
    # sign-offs, which say nothing about what customers write about. Words under three letters are never tokens.
    """
    the and for with that this these those you your our are was were have has had not but from can could would will
    should been into about than then there here what when where which who how its his her him she they them their
    all any some just also very too
    les des une est sont pour par avec dans sur pas que qui mais ont été son ses mon mes vos votre notre nos leur
    leurs nous vous ils elles elle lui cette ces aux tout tous comme plus suis
    der die das den dem des ein eine einen einem einer und ist sind war für mit auf aus bei von nach zum zur nicht
    auch aber oder wie was ich mich mir sie ihr ihre ihnen wir uns mein meine meinen meiner meinem sein seine hat
    haben habe wird werden wurde kann noch schon sich
    hello dear thanks thank regards kind best sir madam
    bonjour merci cordialement madame monsieur salutations bonne journée
    hallo guten tag danke vielen grüße freundlichen herr frau
    """.split()
)
_OPEN = frozenset(state.value for state in OPEN)
COLUMNS = (
    "category", "language", "volume", "answered", "median h", "p90 h", "within target %", "breaches", "open",
    "auto %", "corrections",
)  # fmt: skip

Phrases = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Row:
    """The numbers of one category in one language (``language`` is ``"all"`` for the category's total).

    Hours are on the report's clock, rounded to 3 decimals; shares are fractions of 1, rounded to 4.
    """

    category: str
    language: str
    volume: int
    answered: int
    median_hours: float | None
    """None when nothing was answered."""
    p90_hours: float | None
    within_target: float | None
    """Share answered by their due time among messages with a due time that were answered or breached; None: none."""
    breaches: int
    """Breached and still waiting, or answered after their due time."""
    open: int
    """Still waiting for a first response (on track, warning or breached)."""
    auto_share: float
    """Share decided by the model at or above the confidence threshold."""
    corrections: int


@dataclass(frozen=True)
class Report:
    """The manager's report over ``since`` (None: everything) to ``now``."""

    since: datetime | None
    now: datetime
    clock: str
    """How response times are counted: "wall-clock" or "business hours (ZONE)"."""
    rows: tuple[Row, ...]
    """Per category and language: categories by volume (largest first), languages by volume within each."""
    totals: tuple[Row, ...]
    """Per category, in the order of ``rows``, with language "all"."""
    phrases: dict[str, Phrases]
    """Per category: its most distinctive words and two-word phrases with their c-TF-IDF scores, best first."""
    drafts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per template: how many of its drafts agents sent unchanged, edited, rewrote, or answered without
    (``draft_uses``)."""


def build_report(
    records: Sequence[MessageRecord],
    *,
    policy: Policy | None,
    threshold: float,
    since: datetime | None = None,
    now: datetime,
    top: int = 8,
) -> Report:
    """The report over ``records``: customer mail only, neither skipped nor a follow-up (a follow-up shares its
    thread's clock), received (or, without a receive time, recorded) at or after ``since``.

    Args:
        policy: the deadline policy whose clock response times are counted on; None: wall-clock.
        threshold: the classifier's confidence threshold, for the share decided automatically.
        top: how many phrases to keep per category.
    """
    counted = [record for record in records if _counts(record, since)]
    by_category: dict[str, list[MessageRecord]] = {}
    for record in counted:
        by_category.setdefault(_category(record), []).append(record)
    rows: list[Row] = []
    totals: list[Row] = []
    for category, messages in sorted(by_category.items(), key=_largest_first):
        totals.append(_row(category, ALL, messages, policy, threshold))
        by_language: dict[str, list[MessageRecord]] = {}
        for record in messages:
            by_language.setdefault(record.language or "unknown", []).append(record)
        for language, group in sorted(by_language.items(), key=_largest_first):
            rows.append(_row(category, language, group, policy, threshold))
    texts = {category: [record.new_text for record in messages] for category, messages in by_category.items()}
    phrases = top_phrases(texts, top)
    return Report(since, now, describe_clock(policy), tuple(rows), tuple(totals), phrases)


def store_report(
    store: Store, settings: Settings, *, since: datetime | None, mailbox: str | None, now: datetime
) -> Report:
    """The report over what ``store`` recorded (of ``mailbox``; None: every mailbox) since ``since``, on the
    configured deadline clock, with what agents did with the drafts."""
    from mailtriage.deadlines import policy_from_settings

    built = build_report(store.messages.all(mailbox, since=since), policy=policy_from_settings(settings),
                         threshold=settings.classifier.threshold, since=since, now=now)  # fmt: skip
    return replace(built, drafts=draft_uses(store.audit.all(mailbox, actions=("draft-used",)), since))


def draft_uses(events: Iterable[AuditEvent], since: datetime | None = None) -> dict[str, dict[str, int]]:
    """Per template (by name, without its language), how often agents sent its drafts unchanged, edited them,
    rewrote them or answered without them (``edits.py``), from the ``draft-used`` audit events since ``since``."""
    counts: dict[str, dict[str, int]] = {}
    for event in events:
        if event.action != "draft-used" or (since is not None and event.at < since):
            continue
        template = str(event.detail.get("template") or "?").partition("/")[0]
        row = counts.setdefault(template, {use.value: 0 for use in DraftUse})
        row[str(event.detail.get("use"))] = row.get(str(event.detail.get("use")), 0) + 1
    return dict(sorted(counts.items()))


def describe_clock(policy: Policy | None) -> str:
    if policy is None or policy.calendar.always_open:
        return "wall-clock"
    return f"business hours ({policy.calendar.timezone})"


def _counts(record: MessageRecord, since: datetime | None) -> bool:
    if record.kind != MessageKind.CUSTOMER or record.status == Status.SKIPPED or record.thread_of is not None:
        return False
    return since is None or (record.received_at or record.recorded_at) >= since


def _category(record: MessageRecord) -> str:
    return record.corrected or record.category or "unclassified"


def _largest_first(item: tuple[str, list[MessageRecord]]) -> tuple[int, str]:
    return -len(item[1]), item[0]


def _row(
    category: str, language: str, messages: Sequence[MessageRecord], policy: Policy | None, threshold: float
) -> Row:
    hours = sorted(
        _response_hours(record.received_at or record.recorded_at, record.answered_at, policy)
        for record in messages
        if record.answered_at is not None
    )
    decided = [record for record in messages if _decided(record)]
    on_time = sum(1 for record in decided if _answered_on_time(record))
    return Row(
        category=category,
        language=language,
        volume=len(messages),
        answered=len(hours),
        median_hours=_rounded(statistics.median(hours) if hours else None, 3),
        p90_hours=_rounded(percentile_90(hours), 3),
        within_target=_rounded(on_time / len(decided) if decided else None, 4),
        breaches=sum(1 for record in messages if _breached(record)),
        open=sum(1 for record in messages if record.deadline_state in _OPEN),
        auto_share=round(sum(1 for record in messages if _automatic(record, threshold)) / len(messages), 4),
        corrections=sum(1 for r in messages if r.corrected is not None and r.corrected != r.category),
    )


def _response_hours(start: datetime, end: datetime, policy: Policy | None) -> float:
    """First-response time in hours on the policy's clock. A message's clock starts when it was received, or
    without a receive time when it was recorded, as its deadline's does."""
    elapsed = end - start if policy is None else policy.elapsed(start, end)
    return elapsed / timedelta(hours=1)


def percentile_90(values: Sequence[float]) -> float | None:
    """The 90th percentile by linear interpolation between closest ranks (``statistics.quantiles`` with the
    "inclusive" method, numpy's default "linear"): 9.1 for 1…10; one value is its own; None for none."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def _decided(record: MessageRecord) -> bool:
    """Whether a message's deadline is met or missed for good: it had one, and was answered or breached."""
    return record.due_at is not None and (record.answered_at is not None or record.deadline_state == "breached")


def _answered_on_time(record: MessageRecord) -> bool:
    return record.answered_at is not None and record.due_at is not None and record.answered_at <= record.due_at


def _breached(record: MessageRecord) -> bool:
    if record.deadline_state == "breached":
        return True
    return record.answered_at is not None and record.due_at is not None and record.answered_at > record.due_at


def _automatic(record: MessageRecord, threshold: float) -> bool:
    return record.decided_by == "model" and record.confidence is not None and record.confidence >= threshold


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# --- what customers write about --------------------------------------------------------------------------------------


def top_phrases(texts: Mapping[str, Sequence[str]], top: int) -> dict[str, Phrases]:
    """The ``top`` most distinctive words and two-word phrases of each category's texts, by class-based TF-IDF.

    A term's score in a category is its share of the category's terms times log(1 + A / f), where A is the average
    number of terms per category and f the term's count over all categories (BERTopic's c-TF-IDF): words everyone
    writes ("hello", "bonjour", "merci") sink, the category's own rise. Only terms found in at least two of the
    category's messages count, so one long mail cannot fill the list; function words (``STOP_WORDS``) are left out
    before the two-word phrases are formed. A category with fewer than two messages with words gets an empty tuple.
    """
    found: dict[str, Phrases] = {category: () for category in texts}
    documents = [(category, text) for category, group in texts.items() for text in group if _WORD.search(text)]
    if not documents:
        return found  # CountVectorizer refuses an empty vocabulary
    vectorizer = CountVectorizer(ngram_range=(1, 2), lowercase=True, token_pattern=TOKENS, stop_words=list(STOP_WORDS))
    counts = vectorizer.fit_transform([text for _, text in documents]).tocsr()
    terms = vectorizer.get_feature_names_out()
    categories = sorted({category for category, _ in documents})
    members = {c: np.array([i for i, (category, _) in enumerate(documents) if category == c]) for c in categories}
    per_category = np.vstack([np.asarray(counts[members[c]].sum(axis=0)).ravel() for c in categories])
    weight = np.log(1 + per_category.sum() / len(categories) / per_category.sum(axis=0))
    for index, category in enumerate(categories):
        if len(members[category]) < 2:
            continue
        in_messages = np.asarray((counts[members[category]] > 0).sum(axis=0)).ravel()
        frequency = per_category[index] / per_category[index].sum()
        scores = np.where(in_messages >= 2, frequency * weight, 0.0)
        best = [j for j in np.argsort(-scores, kind="stable")[:top] if scores[j] > 0]
        found[category] = tuple((str(terms[j]), round(float(scores[j]), 3)) for j in best)
    return found


# --- renderings ------------------------------------------------------------------------------------------------------


def render(report: Report, console: Console) -> None:
    """Print the report as rich tables: the numbers per category then its languages, then the phrases."""
    console.print(f"[bold]Support report[/bold], {_period(report)}; response times in {report.clock}")
    table = Table(title="Per category and language")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("category", "language") else "right")
    for total in report.totals:
        table.add_row(*map(cell, _cells(total)), style="bold")
        for row in report.rows:
            if row.category == total.category:
                table.add_row("", cell(f"  {row.language}"), *map(cell, _cells(row)[2:]))
    console.print(table)
    phrases = Table("category", "top phrases", title="What customers write about")
    for total in report.totals:
        said = ", ".join(p for p, _ in report.phrases.get(total.category, ())) or NONE_SHOWN
        phrases.add_row(cell(total.category), cell(said))  # customers' own words
    console.print(phrases)
    uses = Table("template", *(use.value for use in DraftUse), title="What agents do with drafts")
    for template, counts in report.drafts.items():
        uses.add_row(cell(template), *(str(counts.get(use.value, 0)) for use in DraftUse))
    console.print(uses if report.drafts else "No replies to drafted messages found in Sent yet.")


def _cells(row: Row) -> tuple[str, ...]:
    return (
        row.category, row.language, str(row.volume), str(row.answered), _shown(row.median_hours, "{:.1f}"),
        _shown(row.p90_hours, "{:.1f}"), _shown(row.within_target, "{:.0%}"), str(row.breaches), str(row.open),
        _shown(row.auto_share, "{:.0%}"), str(row.corrections),
    )  # fmt: skip


def _shown(value: float | None, form: str) -> str:
    return NONE_SHOWN if value is None else form.format(value)


def _period(report: Report) -> str:
    end = _when(report.now)
    return f"up to {end}" if report.since is None else f"{_when(report.since)} to {end}"


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def to_json(report: Report) -> dict[str, Any]:
    """The report as JSON-serialisable values: times in ISO 8601, rows as objects, phrases as lists."""
    return {
        "since": None if report.since is None else report.since.isoformat(),
        "now": report.now.isoformat(),
        "clock": report.clock,
        "totals": [asdict(row) for row in report.totals],
        "rows": [asdict(row) for row in report.rows],
        "phrases": {
            category: [{"phrase": phrase, "score": score} for phrase, score in found]
            for category, found in report.phrases.items()
        },
        "drafts": report.drafts,
    }


def to_csv(report: Report) -> str:
    """One line per category and language (not the totals), headed by the field names of :class:`Row`; an empty
    cell for None."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([field.name for field in fields(Row)])
    for row in report.rows:
        writer.writerow(["" if value is None else value for value in asdict(row).values()])
    return out.getvalue()


def chart(report: Report, target: Path | IO[bytes], form: str = "png") -> None:
    """Save two bar charts side by side, as PNG or SVG: volume per category, and median and p90 response hours per
    category (grouped; a category with nothing answered has no bars there)."""
    if isinstance(target, Path):
        target.parent.mkdir(parents=True, exist_ok=True)
    draw(report).savefig(target, format=form, dpi=100)


def draw(report: Report) -> Any:
    """The chart's matplotlib figure: made without pyplot, whose global state is not for threads (the console
    draws in several)."""
    from matplotlib.figure import Figure

    names = [total.category for total in report.totals]
    positions = np.arange(len(names))
    figure = Figure(figsize=(max(10.0, 1.6 * len(names) + 4), 4.5))
    volume, hours = figure.subplots(1, 2)
    volume.bar(positions, [total.volume for total in report.totals], color="tab:blue")
    _label(volume, names, "Messages per category", "messages")
    if not names:
        volume.text(0.5, 0.5, "no messages in this period", ha="center", transform=volume.transAxes)
    width = 0.38
    medians = [t.median_hours for t in report.totals]
    _label(hours, names, "First response", f"hours ({report.clock})")
    if all(value is None for value in medians):  # an empty axis from -0.04 to 0.04 hours says nothing
        hours.text(0.5, 0.5, "nothing answered yet", ha="center", transform=hours.transAxes)
        hours.set_yticks([])
    else:
        hours.bar(positions - width / 2, _gaps(medians), width, label="median")
        hours.bar(positions + width / 2, _gaps([t.p90_hours for t in report.totals]), width, label="90th percentile")
        hours.legend()
    figure.suptitle(f"Support report, {_period(report)}")
    figure.tight_layout()
    return figure


def _gaps(values: Sequence[float | None]) -> list[float]:
    """None as NaN, which matplotlib leaves out (no bar) where 0 would draw a misleading one."""
    return [math.nan if value is None else value for value in values]


def _label(axes: Any, names: Sequence[str], title: str, unit: str) -> None:
    axes.set_title(title)
    axes.set_xlabel("category")
    axes.set_ylabel(unit)
    axes.set_xticks(range(len(names)), names, rotation=20, ha="right")
