from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from mailtriage.deadlines import (
    Calendar,
    State,
    WarningRule,
    due,
    format_span,
    parse_when,
    policy_from_settings,
    state,
)
from mailtriage.settings import Category, DeadlineSettings, MailboxSettings, Settings

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
NINE_TO_FIVE = {day: [(time(9), time(17))] for day in range(5)}  # Monday to Friday
DAY = timedelta(hours=8)  # one working day of 9 to 17


def at(zone: ZoneInfo, *fields: int) -> datetime:
    return datetime(*fields, tzinfo=zone)


def test_mail_arriving_friday_evening_under_a_monday_to_friday_calendar_is_due_on_monday() -> None:
    office = Calendar("Europe/Paris", NINE_TO_FIVE)
    friday_evening = at(PARIS, 2026, 11, 20, 19, 30)
    assert due(friday_evening, DAY, office) == at(PARIS, 2026, 11, 23, 17, 0)
    assert due(friday_evening, timedelta(hours=3), office) == at(PARIS, 2026, 11, 23, 12, 0)


def test_a_holiday_does_not_count() -> None:
    office = Calendar("Europe/Paris", NINE_TO_FIVE, frozenset({date(2026, 12, 25)}))
    thursday_afternoon = at(PARIS, 2026, 12, 24, 15, 0)
    # 2 hours on Thursday, Friday the 25th is a holiday, the weekend is closed: the other 6 hours on Monday.
    assert due(thursday_afternoon, DAY, office) == at(PARIS, 2026, 12, 28, 15, 0)


def test_mail_arriving_outside_hours_starts_counting_when_the_office_opens() -> None:
    office = Calendar("Europe/Paris", NINE_TO_FIVE)
    assert due(at(PARIS, 2026, 11, 24, 6, 45), timedelta(hours=2), office) == at(PARIS, 2026, 11, 24, 11, 0)


def test_several_spans_in_one_day_skip_the_lunch_break() -> None:
    office = Calendar("Europe/Paris", {day: [(time(9), time(12)), (time(13), time(17))] for day in range(5)})
    assert due(at(PARIS, 2026, 11, 24, 11, 0), timedelta(hours=2), office) == at(PARIS, 2026, 11, 24, 14, 0)
    assert office.between(at(PARIS, 2026, 11, 24, 8, 0), at(PARIS, 2026, 11, 24, 18, 0)) == timedelta(hours=7)


def test_a_24_7_calendar_counts_straight_across_midnight() -> None:
    always = Calendar("Europe/Paris")
    late = at(PARIS, 2026, 11, 24, 23, 30)
    assert due(late, timedelta(hours=1), always) == at(PARIS, 2026, 11, 25, 0, 30)
    assert state(late, timedelta(hours=1), always, late + timedelta(minutes=59)) is State.WARNING
    assert state(late, timedelta(hours=1), always, late + timedelta(minutes=61)) is State.BREACHED


@pytest.mark.parametrize(
    "zone,before_change,received,expected",
    [
        # Europe/Paris springs forward on 29 March 2026 and falls back on 25 October 2026.
        (PARIS, "spring", at(PARIS, 2026, 3, 28, 12, 0), at(PARIS, 2026, 3, 29, 13, 0)),
        (PARIS, "autumn", at(PARIS, 2026, 10, 24, 12, 0), at(PARIS, 2026, 10, 25, 11, 0)),
        # America/New_York springs forward on 8 March 2026 and falls back on 1 November 2026.
        (NEW_YORK, "spring", at(NEW_YORK, 2026, 3, 7, 12, 0), at(NEW_YORK, 2026, 3, 8, 13, 0)),
        (NEW_YORK, "autumn", at(NEW_YORK, 2026, 10, 31, 12, 0), at(NEW_YORK, 2026, 11, 1, 11, 0)),
    ],
)
def test_24_real_hours_across_a_daylight_saving_change_end_an_hour_off_the_wall_clock(
    zone: ZoneInfo, before_change: str, received: datetime, expected: datetime
) -> None:
    deadline = due(received, timedelta(hours=24), Calendar(str(zone)))
    assert deadline == expected and deadline - received == timedelta(hours=24)


@pytest.mark.parametrize("zone", [PARIS, NEW_YORK], ids=["paris", "new-york"])
def test_business_hours_keep_their_length_on_the_days_the_clocks_change(zone: ZoneInfo) -> None:
    office = Calendar(str(zone), {day: [(time(9), time(17))] for day in range(7)})
    change_day = date(2026, 3, 29) if zone is PARIS else date(2026, 3, 8)
    morning = datetime.combine(change_day, time(9), zone)
    assert due(morning, DAY, office) == datetime.combine(change_day, time(17), zone)


def test_states_go_from_on_track_to_warning_to_breached_and_stop_when_answered() -> None:
    office = Calendar("Europe/Paris", NINE_TO_FIVE)
    received = at(PARIS, 2026, 11, 24, 9, 0)
    rule = WarningRule(left=timedelta(hours=2))
    assert state(received, DAY, office, at(PARIS, 2026, 11, 24, 10, 0), warning=rule) is State.ON_TRACK
    assert state(received, DAY, office, at(PARIS, 2026, 11, 24, 15, 30), warning=rule) is State.WARNING
    assert state(received, DAY, office, at(PARIS, 2026, 11, 24, 17, 0), warning=rule) is State.BREACHED
    answered = at(PARIS, 2026, 11, 24, 16, 0)
    assert state(received, DAY, office, at(PARIS, 2026, 11, 25, 9, 0), answered_at=answered) is State.ANSWERED


def test_a_warning_can_come_from_the_share_of_the_target_gone() -> None:
    office = Calendar("Europe/Paris", NINE_TO_FIVE)
    received = at(PARIS, 2026, 11, 24, 9, 0)
    rule = WarningRule(left=None, share=0.75)
    assert state(received, DAY, office, at(PARIS, 2026, 11, 24, 14, 59), warning=rule) is State.ON_TRACK
    assert state(received, DAY, office, at(PARIS, 2026, 11, 24, 15, 0), warning=rule) is State.WARNING


def test_the_night_is_not_working_time_so_no_warning_comes_at_midnight() -> None:
    office = Calendar("Europe/Paris", NINE_TO_FIVE)
    received = at(PARIS, 2026, 11, 24, 14, 0)  # due Wednesday 14:00
    rule = WarningRule(left=timedelta(hours=2))
    assert state(received, DAY, office, at(PARIS, 2026, 11, 25, 0, 0), warning=rule) is State.ON_TRACK
    assert state(received, DAY, office, at(PARIS, 2026, 11, 25, 12, 0), warning=rule) is State.WARNING


def config(**deadlines: object) -> Settings:
    mailbox = MailboxSettings(name="support", maildir=Path("mail"))
    categories = (
        Category(name="billing", target_hours=8),
        Category(name="feedback", target_hours=0),
        Category(name="repair"),
    )
    return Settings(mailboxes=(mailbox,), categories=categories, deadlines=DeadlineSettings.model_validate(deadlines))


def test_the_configured_business_calendar_and_category_targets_make_the_due_times() -> None:
    policy = policy_from_settings(config(
        clock="business", target_hours=16,
        calendar={"timezone": "Europe/Paris", "monday": ["09:00-12:00", "14:00-19:00"], "friday": ["09:00-17:00"],
                  "tuesday": [], "wednesday": [], "thursday": [], "holidays": ["2026-11-23"]},
    ))  # fmt: skip
    assert policy is not None
    friday_noon = at(PARIS, 2026, 11, 20, 12, 0)
    # Friday 12-17 (5 h), Monday the 23rd is a holiday, Friday 27 9-17 (8 h), Monday 30 9-12 (3 h) = 16 h.
    assert policy.due(friday_noon, "repair") == at(PARIS, 2026, 11, 30, 12, 0)
    # billing's own 8 hours: Friday 12-17, then Friday 27 9-12.
    assert policy.due(friday_noon, "billing") == at(PARIS, 2026, 11, 27, 12, 0)
    assert policy.due(friday_noon, "feedback") is None  # a target of 0: no deadline
    assert policy.due(friday_noon, None) == policy.due(friday_noon, "repair")  # unclassified: the default


def test_the_default_clock_is_wall_clock_and_deadlines_can_be_turned_off() -> None:
    policy = policy_from_settings(config())
    assert policy is not None and policy.calendar.always_open
    sunday_night = at(PARIS, 2026, 11, 22, 23, 0)
    assert policy.due(sunday_night, "repair") == sunday_night + timedelta(hours=24)
    assert policy.warning == WarningRule(left=timedelta(hours=4), share=None)
    assert policy_from_settings(config(enabled=False)) is None


@pytest.mark.parametrize(
    "deadlines,expected",
    [
        ({"calendar": {"timezone": "Europe/Pariss"}}, "an IANA time zone"),
        ({"calendar": {"monday": ["9-17"]}}, "HH:MM-HH:MM"),
        ({"calendar": {"monday": ["13:00-18:00", "09:00-12:00"]}}, "in order"),
        ({"calendar": {d: [] for d in ("monday", "tuesday", "wednesday", "thursday", "friday")}}, "at least one"),
        ({"warn_hours_left": None}, "warn_hours_left or warn_share"),
        ({"warn_share": 1.5}, "less than 1"),
        ({"digest_to": "leads@example.com"}, "an [smtp] host"),
    ],
)
def test_a_calendar_or_warning_that_cannot_work_is_refused(deadlines: dict[str, object], expected: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(expected)):
        config(**deadlines)


def test_a_span_may_run_to_midnight() -> None:
    policy = policy_from_settings(config(clock="business", calendar={"saturday": ["20:00-24:00"]}))
    assert policy is not None
    saturday = at(ZoneInfo("UTC"), 2026, 11, 21, 22, 0)
    assert policy.due(saturday, "billing") == at(ZoneInfo("UTC"), 2026, 11, 23, 15, 0)  # 2 h Sat, 6 h Mon 9-15


NOW = datetime(2026, 11, 23, 20, 0, tzinfo=ZoneInfo("UTC"))  # 21:00 in Paris


@pytest.mark.parametrize(
    "text,expected",
    [
        ("tomorrow 9:00", at(PARIS, 2026, 11, 24, 9, 0)),
        ("17:00", at(PARIS, 2026, 11, 23, 17, 0)),
        ("+3h", NOW + timedelta(hours=3)),
        ("+90m", NOW + timedelta(minutes=90)),
        ("+2d", NOW + timedelta(days=2)),
        ("2026-11-24", at(PARIS, 2026, 11, 24, 0, 0)),
        ("2026-11-24 09:00", at(PARIS, 2026, 11, 24, 9, 0)),
        ("2026-11-24T09:00+00:00", at(ZoneInfo("UTC"), 2026, 11, 24, 9, 0)),
    ],
)
def test_a_time_for_deadlines_at_is_read_in_the_calendars_zone(text: str, expected: datetime) -> None:
    assert parse_when(text, NOW, "Europe/Paris") == expected


def test_a_time_that_is_not_one_is_refused_with_the_forms_that_work() -> None:
    with pytest.raises(ValueError, match="tomorrow 9:00"):
        parse_when("next blue moon", NOW, "Europe/Paris")


def test_spans_read_as_people_write_them() -> None:
    assert [format_span(timedelta(minutes=m)) for m in (5, 65, 60 * 50, -90)] == ["5m", "1h 05m", "2d 2h", "-1h 30m"]
