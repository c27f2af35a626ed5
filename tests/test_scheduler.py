from __future__ import annotations

import pytest

from mailtriage.scheduler import backoff
from mailtriage.settings import ScheduleSettings


@pytest.mark.parametrize("failures,seconds", [(1, 5), (2, 10), (3, 20), (4, 40), (6, 160), (7, 300), (30, 300)])
def test_retries_back_off_exponentially_up_to_a_cap(failures: int, seconds: float) -> None:
    assert backoff(failures, ScheduleSettings(backoff_initial=5, backoff_max=300)) == seconds
