"""The flood breaker's rules: when a source trips it, which referrals are held, where a replay
says it would have opened."""

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from schemas.referral import Priority
from services.domain.breaker import (
    BreakerSettings,
    cooled,
    goes_out_anyway,
    held,
    trips,
    would_open,
)
from services.domain.deadlines import DEFAULT_DEADLINES
from services.domain.forces import uk_forces
from services.domain.policy import default_policy
from services.referral.packet_text import render_text
from services.referral.packets import Reporter, build_packet
from services.router.routing import route
from tests.factories import make_flag, signal

T0 = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
SETTINGS = BreakerSettings(factor=10, min_flags=50, window=timedelta(minutes=5))


def test_a_source_trips_only_past_factor_times_its_usual_rate_and_the_floor() -> None:
    # Usual: 288 flags a day is one per 5-minute window.
    assert trips(49, 0, SETTINGS) is None, "below the floor a quiet source never trips"
    assert trips(50, 288, SETTINGS) is not None
    assert trips(50, 288 * 5, SETTINGS) is None, "5 per window is usual: 50 is only 10x"
    assert trips(51, 288 * 5, SETTINGS) is not None
    tripped = trips(60, 288, SETTINGS)
    assert tripped is not None
    assert tripped.reason(SETTINGS) == (
        "60 flags in 5 min; usually 1.0 (over 10 times the usual rate)"
    )


def test_a_breaker_cools_down_only_when_configured() -> None:
    assert not cooled(T0, T0 + timedelta(days=30), SETTINGS)
    cooling = BreakerSettings(cool_down=timedelta(hours=1))
    assert not cooled(T0, T0 + timedelta(minutes=59), cooling)
    assert cooled(T0, T0 + timedelta(hours=1), cooling)


def _tasks(**facts: object) -> list:  # type: ignore[type-arg]
    flag = make_flag(**facts)
    return list(
        route(
            flag, policy=default_policy(), directory=uk_forces(), home_force_id="kent", now=T0
        ).tasks
    )


def test_a_held_source_referrals_become_reviews_except_a_child_in_immediate_danger() -> None:
    (referral,) = _tasks(signals=[signal("grooming", 0.95)])
    source = (referral.flag.source.system, referral.flag.source.version)
    review = held(referral, frozenset({source}), DEFAULT_DEADLINES)
    assert (review.decision, review.priority, review.task_id) == (
        "review",
        referral.priority,
        referral.task_id,
    )
    assert review.due_at == referral.detected_at + DEFAULT_DEADLINES[referral.priority].review
    assert held(referral, frozenset(), DEFAULT_DEADLINES) is referral, "other sources flow"

    danger = _tasks(signals=[signal("grooming", 0.95, immediate_danger=True)])
    assert all(t.priority is Priority.P0 and goes_out_anyway(t) for t in danger)
    assert all(held(t, frozenset({source}), DEFAULT_DEADLINES) is t for t in danger)


def test_replay_says_where_a_misfiring_version_would_have_opened() -> None:
    steady = [(("clf", "1.0"), T0 + timedelta(minutes=m)) for m in range(0, 24 * 60, 5)]
    flood_at = T0 + timedelta(hours=24)
    flood = [(("clf", "2.0"), flood_at + timedelta(seconds=s)) for s in range(60)]
    other = [(("hash", "1.0"), flood_at + timedelta(seconds=s)) for s in range(0, 60, 10)]
    opened = would_open(steady + flood + other, SETTINGS)
    assert [(source, at) for source, at, _ in opened] == [
        (("clf", "2.0"), flood_at + timedelta(seconds=49))
    ]
    assert would_open(steady, SETTINGS) == [], "the usual rate never trips"


def test_a_rate_a_person_accepted_opens_it_only_at_ten_times_more() -> None:
    assert trips(600, 0, SETTINGS, accepted=60) is None
    assert trips(601, 0, SETTINGS, accepted=60) is not None


def test_a_held_referral_reads_as_held_by_the_breaker_not_by_the_policy() -> None:
    (referral,) = _tasks(signals=[signal("grooming", 0.95)])
    source = (referral.flag.source.system, referral.flag.source.version)
    review = held(referral, frozenset({source}), DEFAULT_DEADLINES)
    packet = build_packet(
        case_id=uuid4(),
        version=1,
        destination=review.destination,
        tasks=[review],
        reporter=Reporter("Test Platform Ltd", "DSL, 020 0000 0000"),
        directory=uk_forces(),
        now=T0,
    )
    text = render_text(packet)
    assert "the flood breaker was open" in text
    assert "held for a person's review by the policy" not in text
