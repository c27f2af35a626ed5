"""First-response deadlines: due times in wall-clock or business hours, and a message's state at a given ``now``.

Pure: every function takes the times it needs. Business hours come from a calendar (time zone, working spans per
weekday, holidays); times are counted in real elapsed time, so a daylight-saving change shortens or lengthens a
night, never a working span.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from mailtriage.settings import WEEKDAYS, Settings

MAX_DAYS = 3660
"""A calendar with no working time at all would make a due time unreachable: give up after ten years."""


class State(enum.StrEnum):
    ON_TRACK = "on-track"
    WARNING = "warning"
    BREACHED = "breached"
    ANSWERED = "answered"


@dataclass(frozen=True)
class Calendar:
    """When the clock runs: working spans per weekday (0 is Monday) in a time zone, minus holidays.

    No spans at all means around the clock, every day (24/7).
    """

    timezone: str = "UTC"
    spans: Mapping[int, Sequence[tuple[time, time]]] = field(default_factory=dict)
    holidays: frozenset[date] = frozenset()

    @property
    def always_open(self) -> bool:
        return not self.spans

    def _working(self, day: date) -> list[tuple[datetime, datetime]]:
        """The working spans of a local day, as UTC instants."""
        if day in self.holidays:
            return []
        zone = ZoneInfo(self.timezone)
        return [
            (datetime.combine(day, start, zone).astimezone(UTC), _end(day, end, zone))
            for start, end in self.spans.get(day.weekday(), ())
        ]

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The instant at which ``duration`` of working time has passed since ``start``."""
        if self.always_open:
            return start.astimezone(UTC) + duration  # in UTC: real hours, whatever the clocks do
        remaining = duration
        point = start.astimezone(UTC)
        day = start.astimezone(ZoneInfo(self.timezone)).date()
        for _ in range(MAX_DAYS):
            for span_start, span_end in self._working(day):
                begin = max(point, span_start)
                if begin >= span_end:
                    continue
                if remaining <= span_end - begin:
                    return begin + remaining
                remaining -= span_end - begin
            day += timedelta(days=1)
        raise ValueError("the calendar has no working time in ten years")

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Working time from ``start`` to ``end`` (negative when ``end`` comes first)."""
        if end < start:
            return -self.between(end, start)
        if self.always_open:
            return end.astimezone(UTC) - start.astimezone(UTC)
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        total = timedelta()
        day = start.astimezone(ZoneInfo(self.timezone)).date()
        last = end.astimezone(ZoneInfo(self.timezone)).date()
        while day <= last:
            for span_start, span_end in self._working(day):
                begin, finish = max(start, span_start), min(end, span_end)
                if finish > begin:
                    total += finish - begin
            day += timedelta(days=1)
        return total


def _end(day: date, end: time, zone: ZoneInfo) -> datetime:
    """The end of a span: ``time(0)`` as an end means midnight at the close of the day."""
    if end == time(0):
        return datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC)
    return datetime.combine(day, end, zone).astimezone(UTC)


@dataclass(frozen=True)
class WarningRule:
    """When a message on track becomes a warning: ``left`` working time before due, or ``share`` of the target
    gone; whichever comes first."""

    left: timedelta | None = timedelta(hours=4)
    share: float | None = None


def due(received: datetime, target: timedelta, calendar: Calendar) -> datetime:
    """When the first response is due: ``target`` of the calendar's time after ``received``."""
    return calendar.add(received, target)


def state_at(
    deadline: datetime,
    target: timedelta,
    calendar: Calendar,
    now: datetime,
    *,
    answered_at: datetime | None = None,
    warning: WarningRule = WarningRule(),
) -> State:
    """The state at ``now`` of a message due at ``deadline`` under a ``target``."""
    if answered_at is not None and answered_at <= now:
        return State.ANSWERED
    if now >= deadline:
        return State.BREACHED
    left = calendar.between(now, deadline)
    gone = target - left
    if warning.left is not None and left <= warning.left:
        return State.WARNING
    if warning.share is not None and gone >= target * warning.share:
        return State.WARNING
    return State.ON_TRACK


def state(
    received: datetime,
    target: timedelta,
    calendar: Calendar,
    now: datetime,
    *,
    answered_at: datetime | None = None,
    warning: WarningRule = WarningRule(),
) -> State:
    """A message's deadline state at ``now``."""
    deadline = due(received, target, calendar)
    return state_at(deadline, target, calendar, now, answered_at=answered_at, warning=warning)


OPEN = (State.ON_TRACK, State.WARNING, State.BREACHED)
"""States of a message still waiting for its first response."""
_ORDER = {State.ON_TRACK: 0, State.WARNING: 1, State.BREACHED: 2, State.ANSWERED: 3}


def later(new: State, old: State) -> bool:
    """Whether ``new`` comes after ``old`` (a state never goes back: a breach stays a breach)."""
    return _ORDER[new] > _ORDER[old]


@dataclass(frozen=True)
class Policy:
    """The deadline rules of a configuration: the clock, the default and per-category targets, the warning."""

    calendar: Calendar = Calendar()
    target: timedelta = timedelta(hours=24)
    targets: Mapping[str, timedelta | None] = field(default_factory=dict)
    """Per category; None: the category's mail gets no deadline."""
    warning: WarningRule = WarningRule()
    watch: timedelta = timedelta(days=30)
    """How long past its due time an unanswered message is still watched for its answer."""
    display_zone: str = "UTC"

    def target_for(self, category: str | None) -> timedelta | None:
        if category is not None and category in self.targets:
            return self.targets[category]
        return self.target

    def due(self, received: datetime, category: str | None) -> datetime | None:
        """When a message of ``category`` received at ``received`` must be answered; None: no deadline."""
        target = self.target_for(category)
        return None if target is None else due(received, target, self.calendar)

    def state(self, deadline: datetime, category: str | None, now: datetime) -> State:
        target = self.target_for(category) or self.target
        return state_at(deadline, target, self.calendar, now, warning=self.warning)

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Time on the clock between two instants: working time for a business calendar, else real time."""
        return self.calendar.between(start, end)


def policy_from_settings(settings: Settings) -> Policy | None:
    """The deadline policy of a configuration; None when deadlines are turned off."""
    d = settings.deadlines
    if not d.enabled:
        return None
    c = d.calendar
    calendar = Calendar(c.timezone)
    if d.clock == "business":
        spans = {day: tuple(_span(text) for text in getattr(c, name)) for day, name in enumerate(WEEKDAYS)}
        calendar = Calendar(c.timezone, {day: found for day, found in spans.items() if found}, frozenset(c.holidays))
    targets = {
        category.name: (timedelta(hours=category.target_hours) if category.target_hours else None)
        for category in settings.categories
        if category.target_hours is not None
    }
    return Policy(
        calendar=calendar,
        target=timedelta(hours=d.target_hours),
        targets=targets,
        warning=WarningRule(
            left=None if d.warn_hours_left is None else timedelta(hours=d.warn_hours_left), share=d.warn_share
        ),
        watch=timedelta(days=d.watch_days),
        display_zone=c.timezone,
    )


def _span(text: str) -> tuple[time, time]:
    start, end = text.split("-")
    return time.fromisoformat(start), time(0) if end == "24:00" else time.fromisoformat(end)


def format_span(span: timedelta) -> str:
    """A duration as people read it: '3h 05m', '2d 4h', '12m'; negative durations get a minus sign."""
    sign = "-" if span < timedelta() else ""
    minutes = int(abs(span).total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes:02d}m"
    return f"{sign}{minutes}m"


_RELATIVE = re.compile(r"^\+(\d+(?:\.\d+)?)\s*([mhd])$")
_DAY_AND_TIME = re.compile(r"^(today|tomorrow)?\s*(\d{1,2}):(\d{2})$")


def parse_when(text: str, now: datetime, zone: str) -> datetime:
    """A moment as an admin types it, in ``zone`` unless it says otherwise: an ISO date or date-time
    ('2026-11-24', '2026-11-24 09:00', '2026-11-24T09:00+01:00'), a time today or tomorrow ('17:00',
    'tomorrow 9:00'), or a span from now ('+3h', '+90m', '+2d'). Raises ValueError otherwise."""
    text = text.strip().lower()
    local = ZoneInfo(zone)
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = float(relative.group(1)), relative.group(2)
        return now + timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: amount})
    day_and_time = _DAY_AND_TIME.match(text)
    if day_and_time:
        day = now.astimezone(local).date() + timedelta(days=1 if day_and_time.group(1) == "tomorrow" else 0)
        moment = time(int(day_and_time.group(2)), int(day_and_time.group(3)))
        return datetime.combine(day, moment, local).astimezone(UTC)
    try:
        found = datetime.fromisoformat(text.upper())
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use '2026-11-24 09:00', 'tomorrow 9:00', '17:00' or '+3h'") from None
    return (found if found.tzinfo else found.replace(tzinfo=local)).astimezone(UTC)
