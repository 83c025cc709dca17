"""Golden files: the exact JSON and text of a police packet and an IWF packet.

A change to what a packet says must be seen and reviewed, so it fails here first. After checking
the difference, regenerate them:
`CSAE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_packet_golden.py`.
"""

import json
import os
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
from tests.factories import flag_document, image, signal

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


def _flag(number: int, minutes: int, **fields: Any) -> ModerationFlag:
    at = (DETECTED + timedelta(minutes=minutes)).isoformat()
    document = flag_document(
        flag_id=f"00000000-0000-4000-8000-00000000f00{number}",
        detected_at=at,
        published_at=at,
        subject=SUBJECT,
        **fields,
    )
    return ModerationFlag.model_validate(document)


def _task(
    flag: ModerationFlag,
    destination: Destination,
    rule: FiredRule,
    decision: str = "refer",
) -> ReferralTask:
    return ReferralTask.model_validate(
        {
            "task_id": task_id_for(flag.flag_id, destination),
            "case_key": f"org-test|acct-golden-subject|{destination.key}",
            "flag_id": flag.flag_id,
            "destination": destination,
            "criteria": rule.criteria,
            "priority": rule.priority,
            "decision": decision,
            "rules": [rule],
            "policy_version": "golden.1",
            "detected_at": flag.detected_at,
            "routed_at": flag.detected_at + timedelta(seconds=1),
            "due_at": flag.detected_at + timedelta(minutes=5),
            "flag": flag,
        }
    )


def _rule(rule_id: str, outcome: str, priority: Priority, criterion: Criterion) -> FiredRule:
    return FiredRule(
        rule_id=rule_id,
        mode="active",
        outcome=outcome,  # type: ignore[arg-type]
        priority=priority,
        criteria=[criterion],
        matched=[f"signals[0].category={criterion.value}", "signals[0].confidence>=0.6"],
    )


def _compare(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("CSAE_UPDATE_GOLDEN") == "1":
        path.write_text(actual)
    assert path.exists(), f"{path} is missing: run with CSAE_UPDATE_GOLDEN=1 and review it"
    assert actual == path.read_text(), f"{name} differs from its golden file"


def police_case() -> list[ReferralTask]:
    police = Destination(kind=DestinationKind.POLICE, force_id="west-midlands")
    child = {"account_id": "acct-golden-child", "age_band": "13_15"}
    grooming = _flag(
        1,
        0,
        signals=[signal("grooming", 0.7)],
        child={**child, "location": {"country": "GB", "postcode_district": "CV1"}},
    )
    coercion = _flag(
        2,
        12,
        signals=[signal("coercion", 0.93, immediate_danger=True)],
        content=[image("content-golden-1"), {"content_id": "msg-golden-7", "media_type": "text"}],
        child=child,
    )
    return [
        _task(
            grooming,
            police,
            _rule("grooming-middling", "review", Priority.P2, Criterion.GROOMING),
            "review",
        ),
        _task(
            coercion, police, _rule("immediate-danger", "refer", Priority.P0, Criterion.COERCION)
        ),
    ]


def iwf_case() -> list[ReferralTask]:
    iwf = Destination(kind=DestinationKind.IWF)
    match = {"list": "synthetic-known-list", "match": "exact", "external": True}
    flag = _flag(
        3,
        0,
        source={"system": "test-hasher", "version": "2.1.0", "kind": "hash_match"},
        signals=[signal("iioc", 1.0, hash_match=match)],
        content=[image("content-golden-2", public=True), image("content-golden-3")],
    )
    return [_task(flag, iwf, _rule("iioc-exact-known", "refer", Priority.P1, Criterion.IIOC))]


@pytest.mark.parametrize(
    ("name", "tasks", "supplement"),
    [
        ("police_packet", police_case, None),
        (
            "police_packet_supplementary",
            police_case,
            Supplement(
                supplements_version=1,
                external_reference="WMP-20261126-0042",
                submitted_at=DETECTED + timedelta(minutes=10),
                new_flag_ids=[UUID("00000000-0000-4000-8000-00000000f002")],
            ),
        ),
        ("iwf_packet", iwf_case, None),
    ],
)
def test_packets_match_their_golden_files(
    name: str, tasks: Any, supplement: Supplement | None
) -> None:
    case_tasks: list[ReferralTask] = tasks()
    packet = build_packet(
        case_id=CASE_ID,
        version=2 if supplement else 1,
        destination=case_tasks[0].destination,
        tasks=case_tasks,
        reporter=REPORTER,
        directory=uk_forces(),
        now=BUILT,
        supplement=supplement,
    )
    _compare(f"{name}.json", json.dumps(packet.model_dump(mode="json"), indent=2) + "\n")
    _compare(f"{name}.txt", render_text(packet))


@pytest.mark.parametrize("name", ["police_packet", "iwf_packet"])
def test_packets_stored_before_supplements_and_signposting_still_read(name: str) -> None:
    """Packets stored by the first release lack `supplement`, `support` and the subject's
    postcode district: the API must still serve them, as JSON and as text."""
    body = json.loads((GOLDEN / f"{name}.json").read_text())
    for key in ("supplement", "support"):
        del body[key]
    if "subject" in body:
        del body["subject"]["postcode_district"]
    packet = TypeAdapter[Packet](Packet).validate_python(body)
    assert packet.support == NSPCC_GUIDANCE
    assert render_text(packet) == (GOLDEN / f"{name}.txt").read_text().replace(
        "  Postcode district: B1\n", ""
    )
