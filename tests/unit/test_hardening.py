"""Inputs that once could misroute a referral or stall a consumer, and what they do now."""

import json
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from schemas.flag import ModerationFlag
from schemas.referral import Destination, DestinationKind, Priority, RejectionReason
from services.domain.destinations import plan
from services.domain.forces import uk_forces
from services.pipeline.decode import Refusal, decode
from services.referral.packets import authority
from tests.factories import flag_document, make_flag


@pytest.mark.parametrize("field", ["platform", "child"])
def test_uk_is_read_as_gb_so_a_uk_platform_reaches_uk_police(field: str) -> None:
    overrides: dict[str, Any] = {
        "platform": {"org_id": "org-test", "service": "chat", "country": "UK"},
        "child": {"location": {"country": "UK", "postcode_district": "NG1"}},
    }
    flag = make_flag(**{field: overrides[field]})
    destinations = plan(flag, (), uk_forces(), "kent")
    expected = "police:nottinghamshire" if field == "child" else "police:kent"
    assert [d.key for d in destinations] == [expected]


@pytest.mark.parametrize(
    ("detected_at", "published_at"),
    [
        ("9999-12-31T23:59:30+00:00", "9999-12-31T23:59:31+00:00"),  # deadlines would overflow
        ("1970-01-01T00:00:00+00:00", "1970-01-01T00:00:00+00:00"),
        ("2026-11-26T10:00:00+00:00", "2026-11-26T09:00:00+00:00"),  # detected after published
    ],
)
def test_implausible_timestamps_are_refused(detected_at: str, published_at: str) -> None:
    with pytest.raises(ValidationError):
        make_flag(detected_at=detected_at, published_at=published_at)


def test_a_few_minutes_of_clock_skew_between_detection_and_publishing_is_allowed() -> None:
    flag = make_flag(
        detected_at="2026-11-26T09:03:00+00:00", published_at="2026-11-26T09:00:00+00:00"
    )
    assert flag.detected_at > flag.published_at


def _refusal(document: dict[str, Any]) -> Refusal:
    result = decode(json.dumps(document).encode(), ModerationFlag, max_bytes=1 << 20)
    assert isinstance(result, Refusal)
    return result


def test_dead_letter_locations_never_repeat_a_senders_key() -> None:
    secret = "Jane Doe home address"
    media = _refusal(flag_document(content=[{secret: "data:image/png;base64,AAAA"}]))
    extra = _refusal(flag_document(subject={"account_id": "acct-1", secret: "x"}))

    assert media.reason is RejectionReason.EMBEDDED_MEDIA
    assert [p.loc for p in media.errors] == [["content", 0, "<unknown>"]]
    assert extra.reason is RejectionReason.INVALID
    assert [p.loc for p in extra.errors] == [["subject", "<unknown>"]]
    assert secret not in repr(media) + repr(extra)


@pytest.mark.parametrize(("priority", "number"), [(Priority.P0, "999"), (Priority.P2, "101")])
def test_a_force_missing_from_the_directory_still_gets_a_packet_that_says_what_to_do(
    priority: Priority, number: str
) -> None:
    unknown = Destination(kind=DestinationKind.POLICE, force_id="merged-constabulary")
    who = authority(unknown, priority, uk_forces())
    assert who.id == "merged-constabulary"
    assert "Confirm the child's local police force" in who.instruction
    assert number in who.instruction
    assert who.phone == number


def test_every_flag_in_a_police_packet_says_whether_a_person_must_still_review_it() -> None:
    from services.domain.policy import default_policy
    from services.referral.packets import Reporter, build_packet
    from services.router.routing import route
    from tests.factories import signal

    now = datetime(2026, 11, 26, 9, 1, tzinfo=UTC)
    account = {"account_id": f"acct-{uuid4().hex[:6]}"}
    tasks = [
        task
        for flag in (
            make_flag(subject=account, signals=[signal("grooming", 0.95)]),
            make_flag(subject=account, signals=[signal("grooming", 0.7)]),
        )
        for task in route(
            flag, policy=default_policy(), directory=uk_forces(), home_force_id="kent", now=now
        ).tasks
    ]
    packet = build_packet(
        case_id=uuid4(),
        version=1,
        destination=tasks[0].destination,
        tasks=tasks,
        reporter=Reporter(name="Test Ltd", safeguarding_contact="DSL"),
        directory=uk_forces(),
        now=now,
    )
    assert packet.kind == "police"
    assert sorted(entry.decision for entry in packet.timeline) == ["refer", "review"]
