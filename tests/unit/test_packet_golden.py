"""Golden files: the exact JSON and text of a packet for each receiver's template.

A UK police force (a P1 case, a UK P0, a supplement to each, a case made P0 by an escalation
across two flags, a sender abroad), a country's police abroad (the sender there, the sender in
the UK, a country this service has no name for), a hotline (NCMEC's CyberTipline, at P1 and at
P0), the IWF (at P1 and at P0) and the NCA (a UK service at P1 and at P0, a US service's
UK-linked content at P2). A change to what a packet says must be seen and reviewed, so
it fails here first. After checking the difference, line by line as a call handler would read
it, regenerate them: `CSAE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_packet_golden.py`.

Times are those of a real case: a packet is built after the flags it lists were detected, and a
supplement after the version it adds to was sent.
"""

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from pydantic import TypeAdapter

from schemas.flag import ModerationFlag
from schemas.packets import NSPCC_GUIDANCE, Packet, PolicePacket, Supplement
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
from services.domain.policy import default_policy
from services.referral.escalation import Escalator, escalate
from services.referral.packet_text import render_text
from services.referral.packets import Reporter, build_packet
from services.router.routing import route
from tests.factories import flag_document, image

GOLDEN = Path(__file__).parent / "golden"
DETECTED = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
BUILD_DELAY = timedelta(seconds=30)
"""A packet is built this long after the latest flag it lists was detected."""
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
XK_POLICE = Destination(kind=DestinationKind.INTL, mechanism="local_police", country="XK")
IWF = Destination(kind=DestinationKind.IWF)
NCA = Destination(kind=DestinationKind.NCA)
US_PLATFORM = {"org_id": "org-test-us", "service": "chat", "country": "US"}
US_SUBJECT = {"account_id": "acct-golden-subject", "ips": ["198.51.100.7"], "country": "US"}
CHILD_IN_CV1 = {**CHILD, "location": {"country": "GB", "postcode_district": "CV1"}}


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


def _task(flag: ModerationFlag, destination: Destination, *rules: FiredRule) -> ReferralTask:
    """The task routing makes for the flag and destination, the rules given having fired."""
    criteria = sorted({c for rule in rules for c in rule.criteria})
    refer = any(rule.outcome == "refer" for rule in rules)
    return ReferralTask.model_validate(
        {
            "task_id": task_id_for(flag.flag_id, destination),
            "case_key": f"{flag.platform.org_id}|acct-golden-subject|{destination.key}",
            "flag_id": flag.flag_id,
            "destination": destination,
            "criteria": criteria,
            "priority": min((rule.priority for rule in rules), key=list(Priority).index),
            "decision": "refer" if refer else "review",
            "rules": list(rules),
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
        child=CHILD_IN_CV1,
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
    """Known images, one of them at a public URL: the IWF, at P1."""
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
    return [_task(flag, IWF, rule)]


def iwf_p0_case() -> list[ReferralTask]:
    """Known images shared beyond the platform, of a child the source says is in danger now."""
    match = {"list": "synthetic-known-list", "match": "exact", "external": True}
    flag = _flag(
        3,
        0,
        source={"system": "test-hasher", "version": "2.1.0", "kind": "hash_match"},
        signals=[
            _signal("iioc", "known_image", 1.0, hash_match=match),
            _signal("safety", "live_abuse_risk", 0.9, immediate_danger=True),
        ],
        content=[image("content-golden-2", public=True)],
    )
    danger = _rule(
        "immediate-danger",
        "refer",
        Priority.P0,
        Criterion.SAFETY,
        matched=["signals[1].immediate_danger=true"],
    )
    known = _rule(
        "iioc-hash-exact",
        "refer",
        Priority.P1,
        Criterion.IIOC,
        matched=["signals[0].category=iioc", "signals[0].hash_match=exact"],
    )
    return [_task(flag, IWF, danger, known)]


def uk_p0_then_self_harm_case() -> list[ReferralTask]:
    """The UK P0, reported by a 999 call; then a self-harm flag a person must still review."""
    self_harm = _flag(3, 20, signals=[_signal("self_harm", "suicidal_ideation", 0.65)], child=CHILD)
    return [*uk_p0_case(), _task(self_harm, WEST_MIDLANDS, SELF_HARM)]


def hotline_p0_case() -> list[ReferralTask]:
    """A US platform's sextortion threat with a child in danger now: NCMEC at P0 (the local
    police in the United States get it first, in their own case)."""
    danger = _us_flag(
        signals=[_signal("coercion", "sextortion_threat", 0.93, immediate_danger=True)],
        child={"age_band": "16_17", "location": {"country": "US"}},
    )
    return [_task(danger, NCMEC, DANGER)]


def uk_sender_child_in_us_case() -> list[ReferralTask]:
    """A UK platform's child in the United States, in danger now: the sender is in the UK, where
    911 reaches no one."""
    danger = _flag(
        4,
        0,
        signals=[_signal("coercion", "sextortion_threat", 0.93, immediate_danger=True)],
        child={"age_band": "under_13", "location": {"country": "US"}},
    )
    return [_task(danger, US_POLICE, DANGER)]


def us_sender_child_in_uk_case() -> list[ReferralTask]:
    """A US platform's child in Coventry, in danger now: West Midlands Police first, and the
    sender is in the United States, where 999 reaches no one."""
    danger = _us_flag(
        signals=[_signal("coercion", "sextortion_threat", 0.93, immediate_danger=True)],
        child=CHILD_IN_CV1,
    )
    return [_task(danger, WEST_MIDLANDS, DANGER)]


def unknown_country_case() -> list[ReferralTask]:
    """A UK platform's child in a country this service has no name or number for (XK)."""
    danger = _flag(
        4,
        0,
        signals=[_signal("safety", "threat_to_life", 0.9, immediate_danger=True)],
        child={"age_band": "13_15", "location": {"country": "XK"}},
    )
    return [_task(danger, XK_POLICE, DANGER)]


def escalated_case() -> list[ReferralTask]:
    """A sextortion threat, then suicidal ideation about the same child on a second flag: each
    is P1, and the policy's escalation `sextortion-with-self-harm` makes the case P0. Routed and
    escalated by the default policy, as the router and the referral worker do."""
    policy = default_policy()
    flags = [
        _flag(2, 12, signals=[_signal("coercion", "sextortion_threat", 0.92)], child=CHILD_IN_CV1),
        _flag(3, 20, signals=[_signal("self_harm", "suicidal_ideation", 0.93)], child=CHILD_IN_CV1),
    ]
    escalator = Escalator(policy, uk_forces(), "west-midlands")
    tasks: list[ReferralTask] = []
    ledger: dict[str, dict[str, object]] = {}
    for flag in flags:
        routed = flag.detected_at + timedelta(seconds=1)
        arriving = [
            t
            for t in route(
                flag, policy=policy, directory=uk_forces(), home_force_id="kent", now=routed
            ).tasks
            if t.destination == WEST_MIDLANDS
        ]
        done = escalate(
            escalator,
            destination=WEST_MIDLANDS,
            case_version=policy.version,
            ledger=ledger,
            arriving=arriving,
            now=routed,
        )
        ledger = done.ledger
        tasks += [*arriving, *(t for t in done.tasks if t.destination == WEST_MIDLANDS)]
    return tasks


def nca_case() -> list[ReferralTask]:
    """A UK service's sextortion threat with an image, and grooming: the NCA at P1."""
    content = image("content-golden-1") | {"uploader_ip": "192.0.2.10"}
    sextortion = _flag(
        2,
        12,
        signals=[_signal("coercion", "sextortion_threat", 0.92)],
        content=[content, {"content_id": "msg-golden-7", "media_type": "text"}],
        child=CHILD_IN_CV1,
    )
    grooming = _flag(1, 0, signals=[_signal("grooming", "grooming_pattern", 0.7)], child=CHILD)
    return [_task(grooming, NCA, GROOMING), _task(sextortion, NCA, SEXTORTION)]


def nca_p0_case() -> list[ReferralTask]:
    """The UK P0 sextortion threat, at the NCA: 999 first, then the report, immediately."""
    return [_task(t.flag, NCA, DANGER) for t in uk_p0_case()]


def nca_non_uk_case() -> list[ReferralTask]:
    """A US service's grooming of a child in the UK (UK-linked content): the NCA at P2."""
    grooming = _us_flag(
        signals=[_signal("grooming", "grooming_pattern", 0.95)],
        child={"age_band": "under_13", "location": {"country": "GB"}},
        content=[
            {
                "content_id": "msg-golden-9",
                "media_type": "text",
                "url": "https://chat.example.org/m/9",
            }
        ],
    )
    rule = _rule(
        "grooming-high",
        "refer",
        Priority.P2,
        Criterion.GROOMING,
        matched=["signals[0].category=grooming", "signals[0].confidence>=0.9"],
    )
    return [_task(grooming, NCA, rule)]


SENT = Supplement(
    supplements_version=1,
    external_reference="WMP-20261126-0042",
    submitted_at=DETECTED + timedelta(minutes=15),
    new_flag_ids=[UUID("00000000-0000-4000-8000-00000000f003")],
)
"""Version 1 (flags 1 and 2, built at 09:12:30) sent at 09:15; flag 3 arrived at 09:20."""
SENT_P0 = Supplement(
    supplements_version=1,
    external_reference="WMP-20261126-0099",
    submitted_at=DETECTED + timedelta(minutes=14),
    new_flag_ids=[UUID("00000000-0000-4000-8000-00000000f003")],
)
"""The P0 (flag 2, built at 09:12:30) reported by a 999 call at 09:14; flag 3 at 09:20."""
APPROVED = DETECTED + timedelta(minutes=14)
"""A person approved the P1 case before sending it: flag 1's review is confirmed, flag 3's
(routed after) is not."""


@dataclass(frozen=True)
class Case:
    tasks: Callable[[], list[ReferralTask]]
    supplement: Supplement | None = None
    reviewed_at: datetime | None = None


CASES: dict[str, Case] = {
    "police_packet": Case(uk_police_case),
    "police_packet_p0": Case(uk_p0_case),
    "police_packet_supplementary": Case(uk_police_case, SENT, APPROVED),
    "police_packet_p0_supplementary": Case(uk_p0_then_self_harm_case, SENT_P0),
    "police_packet_escalated": Case(escalated_case),
    "police_packet_sender_abroad": Case(us_sender_child_in_uk_case),
    "police_abroad_packet": Case(us_police_case),
    "police_abroad_packet_sender_in_uk": Case(uk_sender_child_in_us_case),
    "police_abroad_packet_unknown_country": Case(unknown_country_case),
    "hotline_packet": Case(ncmec_case),
    "hotline_packet_p0": Case(hotline_p0_case),
    "iwf_packet": Case(iwf_case),
    "iwf_packet_p0": Case(iwf_p0_case),
    "nca_packet": Case(nca_case),
    "nca_packet_p0": Case(nca_p0_case),
    "nca_packet_non_uk": Case(nca_non_uk_case),
}


def _compare(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("CSAE_UPDATE_GOLDEN") == "1":
        path.write_text(actual)
    assert path.exists(), f"{path} is missing: run with CSAE_UPDATE_GOLDEN=1 and review it"
    assert actual == path.read_text(), f"{name} differs from its golden file"


def _build(name: str) -> Packet:
    case = CASES[name]
    tasks = case.tasks()
    return build_packet(
        case_id=CASE_ID,
        version=2 if case.supplement else 1,
        destination=tasks[0].destination,
        tasks=tasks,
        reporter=REPORTER,
        directory=uk_forces(),
        now=max(t.detected_at for t in tasks) + BUILD_DELAY,
        supplement=case.supplement,
        reviewed_at=case.reviewed_at,
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_packets_match_their_golden_files(name: str) -> None:
    packet = _build(name)
    _compare(f"{name}.json", json.dumps(packet.model_dump(mode="json"), indent=2) + "\n")
    _compare(f"{name}.txt", render_text(packet))


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_times_are_those_of_a_real_case(name: str) -> None:
    """Built after every flag it lists was detected; a supplement after the version it adds to
    was sent, which was after the flags before it; a review confirmed after it was routed."""
    packet = _build(name)
    tasks = CASES[name].tasks()
    assert all(t.detected_at < t.routed_at < packet.built_at for t in tasks)
    supplement = packet.supplement
    if supplement is not None:
        new = set(supplement.new_flag_ids)
        assert all(t.detected_at < supplement.submitted_at for t in tasks if t.flag_id not in new)
        assert all(t.detected_at > supplement.submitted_at for t in tasks if t.flag_id in new)
        assert supplement.submitted_at < packet.built_at
    if isinstance(packet, PolicePacket):
        for entry in packet.timeline:
            assert entry.confirmed_at is None or entry.at < entry.confirmed_at < packet.built_at


def _as_stored_before(name: str) -> Packet:
    """The golden packet without what packets stored by earlier releases lack."""
    body = json.loads((GOLDEN / f"{name}.json").read_text())
    for key in ("supplement", "support"):
        body.pop(key, None)
    for key in (
        "police",
        "country",
        "country_name",
        "emergency_number",
        "emergency_also",
        "sender_country",
        "sender_country_name",
        "sender_emergency_number",
    ):
        body["authority"].pop(key, None)
    if "subject" in body:
        body["subject"].pop("postcode_district")
    for entry in body.get("timeline", []):
        for key in ("signals", "confirmed_at", "escalation", "escalated_from"):
            entry.pop(key)
    return TypeAdapter[Packet](Packet).validate_python(body)


STORED_BEFORE = sorted(
    name for name in CASES if name != "police_packet_escalated" and not name.startswith("nca")
)
"""Escalations and NCA packets are new: no packet stored before them has one."""


@pytest.mark.parametrize("name", STORED_BEFORE)
def test_packets_stored_before_the_newer_fields_still_read_right(name: str) -> None:
    """The API renders stored packets: one built before templates, signals and signposting
    existed must still open with the right call and carry no UK wording abroad."""
    packet = _as_stored_before(name)
    text = render_text(packet)
    first = text.splitlines()[0]
    if name.startswith("police_abroad_packet"):
        assert first == "A CHILD MAY BE IN IMMEDIATE DANGER: CALL THE LOCAL EMERGENCY NUMBER NOW."
    if name == "hotline_packet":
        assert first.startswith("CSAE REPORT TO NCMEC CyberTipline · PRIORITY P1")
        assert "SUPPORT" not in text
    if name in ("police_packet", "iwf_packet"):
        assert packet.support == NSPCC_GUIDANCE
        assert text.endswith(f"SUPPORT\n  {NSPCC_GUIDANCE}\n")
    if name in ("police_packet_p0", "police_packet_sender_abroad", "iwf_packet_p0"):
        assert first.startswith("A CHILD MAY BE IN IMMEDIATE DANGER: CALL 999 NOW.")
    if name.startswith("police_packet"):
        assert "not confirmed by a person" not in text
    assert "+00:00" not in text
