"""NCMEC CyberTipline XML: every rendering is valid against the vendored schema.

Golden reports (a sextortion case, an image hash-match case, a case with a child's age band and
the reported account's IPs, a P0) are compared byte for byte. After checking a difference, line
by line, regenerate them: `CSAE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_ncmec_xml.py`.
Synthetic data only (`tests.factories`).
"""

import os
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import xmlschema
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.flag import ModerationFlag
from schemas.packets import EarlierReport, PolicePacket, Supplement
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
from services.referral import ncmec_xml
from services.referral.ncmec_xml import (
    CHILD_PORNOGRAPHY,
    ONLINE_ENTICEMENT,
    NotForNcmec,
    annotations,
    incident_type,
    render,
)
from services.referral.packets import Reporter, build_packet
from tests.factories import flag_document, image

XSD = Path(__file__).parents[2] / "schemas" / "external" / "ncmec" / "cyber_tipline.xsd"
GOLDEN = Path(__file__).parent / "golden"
DETECTED = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
CASE_ID = UUID("00000000-0000-4000-8000-00000000c0de")
NCMEC = Destination(kind=DestinationKind.INTL, mechanism="ncmec_cybertipline", country="US")
US_POLICE = Destination(kind=DestinationKind.INTL, mechanism="local_police", country="US")
US_PLATFORM = {"org_id": "org-test-us", "service": "chat", "country": "US"}
REPORTER = Reporter(
    name="Example Platform Inc",
    safeguarding_contact="Trust and Safety on call, +1 555 0100",
    safeguarding_email="safeguarding@example.org",
)
SERVICE = "chat"
"""The flags' `platform.service`, as the API passes it."""


@cache
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


def _parse(document: bytes) -> ET.Element:
    """A report this module rendered (trusted: no entities, no DTD), parsed to read it back."""
    return ET.fromstring(document)  # noqa: S314


def _rule(priority: Priority, *criteria: Criterion) -> FiredRule:
    return FiredRule(
        rule_id=f"test-{'-'.join(criteria)}",
        mode="active",
        outcome="refer",
        priority=priority,
        criteria=list(criteria),
        matched=["signals[0].category"],
    )


def _task(flag: ModerationFlag, rule: FiredRule, destination: Destination = NCMEC) -> ReferralTask:
    return ReferralTask.model_validate(
        {
            "task_id": task_id_for(flag.flag_id, destination),
            "case_key": f"{flag.platform.org_id}|{flag.subject.account_id}|{destination.key}",
            "flag_id": flag.flag_id,
            "destination": destination,
            "criteria": rule.criteria,
            "priority": rule.priority,
            "decision": "refer",
            "rules": [rule],
            "policy_version": "test.1",
            "detected_at": flag.detected_at,
            "routed_at": flag.detected_at + timedelta(seconds=1),
            "due_at": flag.detected_at + timedelta(minutes=5),
            "flag": flag,
        }
    )


def _flag(**fields: Any) -> ModerationFlag:
    at = DETECTED.isoformat()
    document = flag_document(
        **{
            "flag_id": "00000000-0000-4000-8000-00000000f001",
            "detected_at": at,
            "published_at": at,
            "platform": US_PLATFORM,
            **fields,
        }
    )
    return ModerationFlag.model_validate(document)


def _packet(tasks: list[ReferralTask]) -> PolicePacket:
    packet = build_packet(
        case_id=CASE_ID,
        version=1,
        destination=tasks[0].destination,
        tasks=tasks,
        reporter=REPORTER,
        directory=uk_forces(),
        now=max(t.detected_at for t in tasks) + timedelta(seconds=30),
    )
    assert isinstance(packet, PolicePacket)
    return packet


def sextortion_case() -> list[ReferralTask]:
    flag = _flag(
        signals=[{"category": "coercion", "label": "sextortion_threat", "confidence": 0.92}],
        subject={"account_id": "acct-test-subject", "username": "test_subject"},
        child={"age_band": "16_17"},
        content=[{"content_id": "msg-test-7", "media_type": "text"}],
    )
    return [_task(flag, _rule(Priority.P1, Criterion.COERCION))]


def hash_match_case() -> list[ReferralTask]:
    match = {"list": "synthetic-known-list", "match": "exact", "external": True}
    flag = _flag(
        source={"system": "test-hasher", "version": "2.1.0", "kind": "hash_match"},
        signals=[
            {"category": "iioc", "label": "known_image", "confidence": 1.0, "hash_match": match}
        ],
        subject={"account_id": "acct-test-subject", "ips": ["203.0.113.5"]},
        content=[
            {**image("content-test-2", public=True), "uploader_ip": "203.0.113.5"},
            image("content-test-3"),
        ],
    )
    return [_task(flag, _rule(Priority.P1, Criterion.IIOC))]


def child_and_ips_case() -> list[ReferralTask]:
    flag = _flag(
        signals=[{"category": "grooming", "label": "grooming_pattern", "confidence": 0.9}],
        subject={
            "account_id": "acct-test-subject",
            "username": "test <subject> & 'co'",
            "ips": ["192.0.2.10", "2001:db8::10"],
            "country": "US",
        },
        child={
            "account_id": "acct-test-child",
            "age_band": "under_13",
            "location": {"country": "US"},
        },
    )
    return [_task(flag, _rule(Priority.P2, Criterion.GROOMING))]


def p0_case() -> list[ReferralTask]:
    flag = _flag(
        signals=[
            {
                "category": "coercion",
                "label": "sextortion_threat",
                "confidence": 0.95,
                "immediate_danger": True,
            }
        ],
        subject={"account_id": "acct-test-subject", "ips": ["198.51.100.7"], "country": "US"},
        child={"age_band": "13_15", "location": {"country": "US"}},
    )
    return [_task(flag, _rule(Priority.P0, Criterion.COERCION, Criterion.SAFETY))]


CASES = {
    "ncmec_sextortion": sextortion_case,
    "ncmec_hash_match": hash_match_case,
    "ncmec_child_and_ips": child_and_ips_case,
    "ncmec_p0": p0_case,
}


def _render(name: str) -> bytes:
    return render(_packet(CASES[name]()), service=SERVICE)


@pytest.mark.parametrize("name", sorted(CASES))
def test_reports_match_their_golden_files(name: str) -> None:
    actual = _render(name)
    path = GOLDEN / f"{name}.xml"
    if os.environ.get("CSAE_UPDATE_GOLDEN") == "1":
        path.write_bytes(actual)
    assert path.exists(), f"{path} is missing: run with CSAE_UPDATE_GOLDEN=1 and review it"
    assert actual == path.read_bytes(), f"{path.name} differs from its golden file"


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_reports_are_valid_against_the_schema(name: str) -> None:
    schema().validate((GOLDEN / f"{name}.xml").read_bytes().decode())


def test_a_report_without_its_incident_type_is_invalid() -> None:
    """The validator bites: the same report, its `incidentType` removed, fails."""
    report = _parse(_render("ncmec_sextortion"))
    summary = report.find("incidentSummary")
    assert summary is not None
    kind = summary.find("incidentType")
    assert kind is not None
    assert schema().is_valid(ET.tostring(report, encoding="unicode"))
    summary.remove(kind)
    assert not schema().is_valid(ET.tostring(report, encoding="unicode"))


def test_the_mapping_from_criteria_and_labels() -> None:
    assert incident_type([Criterion.IIOC]) == CHILD_PORNOGRAPHY
    assert incident_type([Criterion.GROOMING]) == ONLINE_ENTICEMENT
    assert incident_type([Criterion.COERCION, Criterion.IIOC]) == ONLINE_ENTICEMENT
    assert incident_type([Criterion.SAFETY]) is None
    assert annotations(_packet(sextortion_case())) == ["sextortion"]
    assert annotations(_packet(hash_match_case())) == []
    solicited = _flag(
        signals=[{"category": "grooming", "label": "csam_solicitation", "confidence": 0.9}]
    )
    packet = _packet([_task(solicited, _rule(Priority.P2, Criterion.GROOMING))])
    assert annotations(packet) == ["csamSolicitation"]


def test_what_the_reports_say() -> None:
    hashes = _parse(_render("ncmec_hash_match"))
    assert hashes.findtext("incidentSummary/incidentType") == CHILD_PORNOGRAPHY
    assert hashes.findall("internetDetails/webPageIncident/url")[0].text == (
        "https://cdn.example.org/content-test-2"
    )
    assert "fileDetails" not in {element.tag for element in hashes.iter()}
    notes = hashes.findtext("additionalInfo") or ""
    assert image("content-test-3")["hashes"]["sha256"] in notes
    assert "No images or other content are attached" in notes

    child = _parse(_render("ncmec_child_and_ips"))
    reported = child.find("personOrUserReported")
    assert reported is not None
    assert reported.findtext("screenName") == "test <subject> & 'co'"
    assert [e.text for e in reported.findall("ipCaptureEvent/ipAddress")] == [
        "192.0.2.10",
        "2001:db8::10",
    ]
    assert child.findtext("victim/additionalInfo") == "Age band given by the platform: under 13."
    assert child.findtext("victim/estimatedLocation/countryCode") == "US"

    danger = _parse(_render("ncmec_p0"))
    assert danger.findtext("incidentSummary/escalateToHighPriority")
    assert (
        _parse(_render("ncmec_sextortion")).find("incidentSummary/escalateToHighPriority") is None
    )


def test_only_ncmec_packets_render() -> None:
    flag = _flag(signals=[{"category": "iioc", "label": "known_image", "confidence": 1.0}])
    police = _packet([_task(flag, _rule(Priority.P1, Criterion.IIOC), US_POLICE)])
    with pytest.raises(NotForNcmec):
        render(police)
    safety = _flag(signals=[{"category": "safety", "label": "safety_risk", "confidence": 0.9}])
    with pytest.raises(NotForNcmec):
        render(_packet([_task(safety, _rule(Priority.P2, Criterion.SAFETY))]))


def test_the_country_list_is_the_schemas() -> None:
    enumeration = getattr(schema().types["country"], "enumeration", None) or []
    assert set(enumeration) - {""} == ncmec_xml.COUNTRIES


TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(
    lambda value: value.strip() == value and value.strip() != ""
)
IDENTIFIER = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:@/+=-]{0,20}\Z")
LABEL = st.from_regex(r"\A[a-z0-9][a-z0-9_.:-]{0,20}\Z")
IP = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
COUNTRY = st.from_regex(r"\A[A-Z]{2}\Z")
CRITERIA = st.sets(st.sampled_from(list(Criterion)), min_size=1).filter(
    lambda criteria: incident_type(criteria) is not None
)
CATEGORY = {c: c.value for c in Criterion}


@st.composite
def ncmec_tasks(draw: st.DrawFn) -> list[ReferralTask]:
    criteria = sorted(draw(CRITERIA))
    content = [
        {
            **image(draw(IDENTIFIER), public=draw(st.booleans())),
            "media_type": draw(st.sampled_from(["image", "video", "text"])),
        }
        for _ in range(draw(st.integers(0, 3)))
    ]
    child = draw(
        st.none()
        | st.fixed_dictionaries(
            {
                "account_id": IDENTIFIER,
                "age_band": st.sampled_from(["under_13", "13_15", "16_17", "unknown"]),
                "location": st.fixed_dictionaries({"country": COUNTRY}),
            }
        )
    )
    flag = _flag(
        signals=[
            {"category": CATEGORY[c], "label": draw(LABEL), "confidence": 0.9} for c in criteria
        ],
        subject={
            "account_id": draw(IDENTIFIER),
            "username": draw(TEXT),
            "ips": draw(st.lists(IP, max_size=4)),
            "country": draw(COUNTRY),
        },
        content=content,
        child=child,
    )
    priority = draw(st.sampled_from(list(Priority)))
    return [_task(flag, _rule(priority, *criteria))]


@given(ncmec_tasks(), st.none() | TEXT)
@settings(max_examples=60, deadline=None)
def test_every_rendering_is_valid_against_the_schema(
    tasks: list[ReferralTask], service: str | None
) -> None:
    packet = _packet(tasks)
    document = render(packet, service=service)
    schema().validate(document.decode())
    report = _parse(document)
    assert report.findtext("personOrUserReported/espIdentifier") == packet.subject.account_id


def test_a_supplement_names_the_earlier_report_and_is_not_escalated_again() -> None:
    """A CyberTipline report id (a number) becomes `priorCTReports`; a P0 case whose new flags
    add no P0 was escalated when it was first reported."""
    tasks = p0_case()
    later = _flag(
        flag_id="00000000-0000-4000-8000-00000000f002",
        signals=[{"category": "grooming", "label": "grooming_pattern", "confidence": 0.9}],
        subject={"account_id": "acct-test-subject"},
    )
    tasks.append(_task(later, _rule(Priority.P2, Criterion.GROOMING)))
    supplement = Supplement(
        supplements_version=1,
        external_reference="123456789",
        submitted_at=DETECTED + timedelta(minutes=5),
        new_flag_ids=[later.flag_id],
    )
    packet = build_packet(
        case_id=CASE_ID,
        version=2,
        destination=NCMEC,
        tasks=tasks,
        reporter=REPORTER,
        directory=uk_forces(),
        now=DETECTED + timedelta(minutes=10),
        supplement=supplement,
    )
    document = render(packet, service=SERVICE)
    schema().validate(document.decode())
    report = _parse(document)
    assert report.findtext("personOrUserReported/priorCTReports") == "123456789"
    assert report.find("incidentSummary/escalateToHighPriority") is None
    assert "Supplementary to the referral sent as 123456789" in (
        report.findtext("additionalInfo") or ""
    )


def test_earlier_reports_of_the_subject_are_named_where_the_schema_allows() -> None:
    """Its CyberTipline reports from other cases as `priorCTReports`; the NCA's reference, for
    which the schema has no place, in the additional information."""
    flag = _flag(signals=[{"category": "coercion", "label": "sextortion", "confidence": 0.9}])
    packet = _packet([_task(flag, _rule(Priority.P1, Criterion.COERCION))])
    earlier = [
        EarlierReport(
            receiver="ncmec_cybertipline",
            reference="987654321",
            submitted_at=DETECTED - timedelta(days=3),
            case_id=UUID(int=7),
            packet_version=1,
        ),
        EarlierReport(
            receiver="nca",
            reference="NCA-2026-000042",
            submitted_at=DETECTED - timedelta(days=1),
            case_id=UUID(int=8),
            packet_version=2,
        ),
    ]
    document = render(packet.model_copy(update={"earlier_reports": earlier}), service=SERVICE)
    schema().validate(document.decode())
    report = _parse(document)
    assert [e.text for e in report.findall("personOrUserReported/priorCTReports")] == ["987654321"]
    notes = report.findtext("additionalInfo") or ""
    assert "National Crime Agency (NCA) under reference NCA-2026-000042" in notes
    assert "987654321" not in notes
