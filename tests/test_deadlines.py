from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from mailtriage.deadlines import Calendar, State, WarningRule, due, state

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
