"""How long to wait before trying again, and how a wait reads in a log line."""

from __future__ import annotations

from mailtriage.settings import ScheduleSettings


def backoff(failures: int, schedule: ScheduleSettings) -> float:
    """Seconds to wait after ``failures`` failures in a row: doubling from ``backoff_initial``, capped."""
    return float(min(schedule.backoff_max, schedule.backoff_initial * 2 ** max(0, failures - 1)))


def seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"
