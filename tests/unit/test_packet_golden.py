"""Golden files: the exact JSON and text of a packet for each receiver's template.

A UK police force (a P1 case, a UK P0, a supplement), a country's police abroad, a hotline
(NCMEC's CyberTipline) and the IWF. A change to what a packet says must be seen and reviewed, so
it fails here first. After checking the difference, line by line as a call handler would read
it, regenerate them: `CSAE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_packet_golden.py`.
"""

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from pydantic import TypeAdapter

from schemas.flag import ModerationFlag
from schemas.packets import NSPCC_GUIDANCE, Packet, Supplement
from schemas.referral import (
    Criterion,
    Destination,
    DestinationKind,
    FiredRule,
    Priority,
    ReferralTask,
    task_id_for,
)
from services.domain.forces import uk_forces
from services.referral.packet_text import render_text
from services.referral.packets import Reporter, build_packet
from tests.factories import flag_document, image

GOLDEN = Path(__file__).parent / "golden"
DETECTED = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
BUILT = datetime(2026, 11, 26, 9, 0, 30, tzinfo=UTC)
CASE_ID = UUID("00000000-0000-4000-8000-00000000c0de")
REPORTER = Reporter(
    name="Example Platform Ltd",
    safeguarding_contact="Designated Safeguarding Lead, +44 20 0000 0000",
    safeguarding_email="safeguarding@example.org",
)
SUBJECT = {
    "account_id": "acct-golden-subject",
    "username": "golden_subject",
    "ips": ["192.0.2.10", "2001:db8::10"],
    "country": "GB",
    "location": {"country": "GB", "postcode_district": "B1"},
}
CHILD = {"account_id": "acct-golden-child", "age_band": "13_15"}
WEST_MIDLANDS = Destination(kind=DestinationKind.POLICE, force_id="west-midlands")
US_POLICE = Destination(kind=DestinationKind.INTL, mechanism="local_police", country="US")
NCMEC = Destination(kind=DestinationKind.INTL, mechanism="ncmec_cybertipline", country="US")
US_PLATFORM = {"org_id": "org-test-us", "service": "chat", "country": "US"}
US_SUBJECT = {"account_id": "acct-golden-subject", "ips": ["198.51.100.7"], "country": "US"}


def _signal(category: str, label: str, confidence: float, **extra: Any) -> dict[str, Any]:
    return {"category": category, "label": label, "confidence": confidence, **extra}


def _flag(number: int, minutes: int, **fields: Any) -> ModerationFlag:
    at = (DETECTED + timedelta(minutes=minutes)).isoformat()
    document = flag_document(
        flag_id=f"00000000-0000-4000-8000-00000000f00{number}",
        detected_at=at,
        published_at=at,
        **{"subject": SUBJECT, **fields},
    )
    return ModerationFlag.model_validate(document)


def _rule(
    rule_id: str, outcome: str, priority: Priority, *criteria: Criterion, matched: list[str]
) -> FiredRule:
    return FiredRule(
        rule_id=rule_id,
        mode="active",
        outcome=outcome,  # type: ignore[arg-type]
        priority=priority,
        criteria=list(criteria),
        matched=matched,
    )


def _task(flag: ModerationFlag, destination: Destination, rule: FiredRule) -> ReferralTask:
    return ReferralTask.model_validate(
        {
            "task_id": task_id_for(flag.flag_id, destination),
            "case_key": f"{flag.platform.org_id}|acct-golden-subject|{destination.key}",
            "flag_id": flag.flag_id,
            "destination": destination,
            "criteria": rule.criteria,
            "priority": rule.priority,
            "decision": rule.outcome,
            "rules": [rule],
            "policy_version": "golden.1",
            "detected_at": flag.detected_at,
            "routed_at": flag.detected_at + timedelta(seconds=1),
            "due_at": flag.detected_at + timedelta(minutes=5),
            "flag": flag,
        }
    )


GROOMING = _rule(
    "grooming-medium",
    "review",
    Priority.P3,
    Criterion.GROOMING,
    matched=["signals[0].category=grooming", "signals[0].confidence in [0.6, 0.9)"],
)
SEXTORTION = _rule(
    "coercion-high",
    "refer",
    Priority.P1,
    Criterion.COERCION,
    matched=["signals[0].category=coercion", "signals[0].confidence>=0.8"],
)
SELF_HARM = _rule(
    "self-harm-medium",
    "review",
    Priority.P2,
    Criterion.SAFETY,
    matched=["signals[0].category=self_harm", "signals[0].confidence in [0.5, 0.8)"],
)
DANGER = _rule(
    "immediate-danger",
    "refer",
    Priority.P0,
    Criterion.COERCION,
    Criterion.SAFETY,
    matched=["signals[0].immediate_danger=true"],
)


def uk_police_case() -> list[ReferralTask]:
    """Grooming, then a sextortion threat, then suicidal ideation, about one child: P1."""
    grooming = _flag(
        1,
        0,
        signals=[_signal("grooming", "grooming_pattern", 0.7)],
        child={**CHILD, "location": {"country": "GB", "postcode_district": "CV1"}},
    )
    sextortion = _flag(
        2,
        12,
        signals=[_signal("coercion", "sextortion_threat", 0.92)],
        content=[image("content-golden-1"), {"content_id": "msg-golden-7", "media_type": "text"}],
        child=CHILD,
    )
    self_harm = _flag(3, 20, signals=[_signal("self_harm", "suicidal_ideation", 0.65)], child=CHILD)
    return [
        _task(grooming, WEST_MIDLANDS, GROOMING),
        _task(sextortion, WEST_MIDLANDS, SEXTORTION),
        _task(self_harm, WEST_MIDLANDS, SELF_HARM),
    ]


def uk_p0_case() -> list[ReferralTask]:
    """A sextortion threat the source says puts the child in immediate danger."""
    danger = _flag(
        2,
        12,
        signals=[_signal("coercion", "sextortion_threat", 0.93, immediate_danger=True)],
        content=[{"content_id": "msg-golden-7", "media_type": "text"}],
        child={**CHILD, "location": {"country": "GB", "postcode_district": "CV1"}},
    )
    return [_task(danger, WEST_MIDLANDS, DANGER)]


def _us_flag(**fields: Any) -> ModerationFlag:
    return _flag(4, 0, platform=US_PLATFORM, subject=US_SUBJECT, **fields)


def us_police_case() -> list[ReferralTask]:
    """A US platform's child in danger now: the local police in the United States first."""
    danger = _us_flag(
        signals=[_signal("coercion", "sextortion_threat", 0.93, immediate_danger=True)],
        child={"age_band": "under_13", "location": {"country": "US"}},
    )
    return [_task(danger, US_POLICE, DANGER)]


def ncmec_case() -> list[ReferralTask]:
    """A US platform's sextortion report, not in immediate danger: NCMEC's CyberTipline."""
    sextortion = _us_flag(
        signals=[_signal("coercion", "sextortion_threat", 0.92)],
        child={"age_band": "16_17"},
    )
    return [_task(sextortion, NCMEC, SEXTORTION)]


def iwf_case() -> list[ReferralTask]:
    iwf = Destination(kind=DestinationKind.IWF)
    match = {"list": "synthetic-known-list", "match": "exact", "external": True}
    flag = _flag(
        3,
        0,
        source={"system": "test-hasher", "version": "2.1.0", "kind": "hash_match"},
        signals=[_signal("iioc", "known_image", 1.0, hash_match=match)],
        content=[image("content-golden-2", public=True), image("content-golden-3")],
    )
    rule = _rule(
        "iioc-hash-exact", "refer", Priority.P1, Criterion.IIOC, matched=["hash_match=exact"]
    )
    return [_task(flag, iwf, rule)]


SENT = Supplement(
    supplements_version=1,
    external_reference="WMP-20261126-0042",
    submitted_at=DETECTED + timedelta(minutes=15),
    new_flag_ids=[UUID("00000000-0000-4000-8000-00000000f003")],
)
CASES: dict[str, tuple[Callable[[], list[ReferralTask]], Supplement | None]] = {
    "police_packet": (uk_police_case, None),
    "police_packet_p0": (uk_p0_case, None),
    "police_packet_supplementary": (uk_police_case, SENT),
    "police_abroad_packet": (us_police_case, None),
    "hotline_packet": (ncmec_case, None),
    "iwf_packet": (iwf_case, None),
}


def _compare(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("CSAE_UPDATE_GOLDEN") == "1":
        path.write_text(actual)
    assert path.exists(), f"{path} is missing: run with CSAE_UPDATE_GOLDEN=1 and review it"
    assert actual == path.read_text(), f"{name} differs from its golden file"


def _build(name: str) -> Packet:
    tasks, supplement = CASES[name]
    case_tasks = tasks()
    return build_packet(
        case_id=CASE_ID,
        version=2 if supplement else 1,
        destination=case_tasks[0].destination,
        tasks=case_tasks,
        reporter=REPORTER,
        directory=uk_forces(),
        now=BUILT,
        supplement=supplement,
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_packets_match_their_golden_files(name: str) -> None:
    packet = _build(name)
    _compare(f"{name}.json", json.dumps(packet.model_dump(mode="json"), indent=2) + "\n")
    _compare(f"{name}.txt", render_text(packet))


def _as_stored_before(name: str) -> Packet:
    """The golden packet without what packets stored by earlier releases lack."""
    body = json.loads((GOLDEN / f"{name}.json").read_text())
    for key in ("supplement", "support"):
        body.pop(key, None)
    for key in ("police", "country", "country_name", "emergency_number"):
        body["authority"].pop(key, None)
    if "subject" in body:
        body["subject"].pop("postcode_district")
    for entry in body.get("timeline", []):
        entry.pop("signals")
    return TypeAdapter[Packet](Packet).validate_python(body)


@pytest.mark.parametrize("name", sorted(CASES))
def test_packets_stored_before_the_newer_fields_still_read_right(name: str) -> None:
    """The API renders stored packets: one built before templates, signals and signposting
    existed must still open with the right call and carry no UK wording abroad."""
    packet = _as_stored_before(name)
    text = render_text(packet)
    first = text.splitlines()[0]
    if name == "police_abroad_packet":
        assert first == "A CHILD MAY BE IN IMMEDIATE DANGER: CALL THE LOCAL EMERGENCY NUMBER NOW."
    if name == "hotline_packet":
        assert first.startswith("CSAE REPORT TO NCMEC CyberTipline · PRIORITY P1")
        assert "SUPPORT" not in text
    if name in ("police_packet", "iwf_packet"):
        assert packet.support == NSPCC_GUIDANCE
        assert text.endswith(f"SUPPORT\n  {NSPCC_GUIDANCE}\n")
    if name == "police_packet_p0":
        assert first == "A CHILD MAY BE IN IMMEDIATE DANGER: CALL 999 NOW."
    assert "+00:00" not in text
