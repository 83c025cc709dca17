"""A case's clocks in words, as the console shows them."""

from datetime import UTC, datetime, timedelta

import pytest

from services.referral.console.clocks import duration, in_words, late_by
from services.referral.enums import CaseStatus

NOW = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "0 s"),
        (42, "42 s"),
        (60, "1 min"),
        (185, "3 min 5 s"),
        (7_800, "2 h 10 min"),
        (86_400 * 3 + 3_600 * 4 + 59, "3 d 4 h"),
        (-5, "0 s"),
    ],
)
def test_a_duration_reads_in_its_two_largest_units(seconds: int, words: str) -> None:
    assert duration(timedelta(seconds=seconds)) == words


def test_a_waiting_case_reads_as_due_in_or_late_by() -> None:
    assert in_words(CaseStatus.READY, NOW + timedelta(seconds=42), NOW) == "ready: due in 42 s"
    late = in_words(CaseStatus.REVIEW, NOW - timedelta(minutes=3, seconds=5), NOW)
    assert late == "review: 3 min 5 s late"
    assert in_words(CaseStatus.SUBMITTED, None, NOW) == "submitted: nothing due from us"


def test_late_only_from_the_deadline_on() -> None:
    assert late_by(NOW + timedelta(seconds=1), NOW) is None
    assert late_by(None, NOW) is None
    assert late_by(NOW, NOW) == timedelta(0)
    assert late_by(NOW - timedelta(minutes=2), NOW) == timedelta(minutes=2)
