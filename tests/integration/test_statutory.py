"""Statutory reports on the real PostgreSQL, through the API: the NCA destination's cases and
clocks, delivery receipts (what was sent, its sha256 as served, when, by whom, the reference),
and NCA and NCMEC reports of one subject naming each other."""

import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import xmlschema
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.flag import ModerationFlag
from schemas.packets import NcaPacket
from schemas.referral import DestinationKind, Priority
from services.domain.deadlines import NCA_DEADLINES
from services.domain.forces import uk_forces
from services.domain.organisations import Organisation
from services.domain.policy import default_policy
from services.referral import queries, retention, store
from services.referral.api import create_app
from services.referral.enums import CaseStatus
from services.referral.keys import Role, create_key
from services.referral.models import AuditRecord, Case
from services.router.routing import route
from tests.factories import image, make_flag, signal
from tests.infra import isolated_settings
from tests.integration.test_cases_store import NOW, REPORTER, routed

NCMEC_XSD = Path(__file__).parents[2] / "schemas" / "external" / "ncmec" / "cyber_tipline.xsd"


def _organisation(country: str, *reports_to: str) -> Organisation:
    return Organisation.model_validate(
        {
            "org_id": f"org-{country.lower()}",
            "name": "Example",
            "safeguarding_contact": "desk",
            "country": country,
            "reports_to": list(reports_to),
        }
    )


UK_REGULATED = _organisation("GB", "police", "iwf", "nca")
US_REGULATED = _organisation("US", "intl", "nca")


class Client:
    def __init__(self, client: httpx.AsyncClient, key: str) -> None:
        self.client = client
        self.auth = {"Authorization": f"Bearer {key}"}

    async def get(self, path: str, **params: str) -> httpx.Response:
        response = await self.client.get(path, headers=self.auth, params=params)
        assert response.status_code == 200, response.text
        return response

    async def submit(self, case_id: UUID, reference: str, **fields: Any) -> httpx.Response:
        body = {"to": "submitted", "external_reference": reference, "packet_version": 1, **fields}
        return await self.client.post(
            f"/v1/cases/{case_id}/transitions", json=body, headers=self.auth
        )


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Client]:
    keys = tmp_path / "keys"
    key = create_key(keys, Role.INVESTIGATOR)
    app = create_app(isolated_settings(database_url, api_keys_file=keys), clock=lambda: NOW)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield Client(client, key)


async def _cases(
    sessions: async_sessionmaker[AsyncSession], flag: ModerationFlag, organisation: Organisation
) -> dict[str, UUID]:
    """Route the flag as the router does for the organisation, and store its tasks as the
    worker does: each destination's case id, by destination key."""
    routing = route(
        flag,
        policy=default_policy(),
        directory=uk_forces(),
        home_force_id="kent",
        now=NOW,
        organisation=organisation,
    )
    async with sessions() as session, session.begin():
        applied = await store.apply_tasks(session=session, tasks=list(routing.tasks), now=NOW)
    return {a.task.destination.key: a.case_id for a in applied}


def _flag(organisation: Organisation, **fields: Any) -> ModerationFlag:
    return make_flag(
        platform={
            "org_id": organisation.org_id,
            "service": "chat",
            "country": organisation.country,
        },
        subject={"account_id": f"acct-stat-{uuid4().hex[:8]}", "ips": ["192.0.2.30"]},
        **fields,
    )


async def test_a_uk_regulated_service_gets_an_nca_case_on_the_ncas_clocks(
    api: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    flag = _flag(UK_REGULATED, signals=[signal("coercion", 0.95)], content=[image("c-nca-1")])
    cases = await _cases(sessions, flag, UK_REGULATED)
    assert set(cases) == {"police:kent", "nca"}
    async with sessions() as session:
        nca = await session.get(Case, cases["nca"])
        police = await session.get(Case, cases["police:kent"])
    assert nca is not None
    assert police is not None
    assert (nca.destination, nca.priority) == (DestinationKind.NCA.value, "P1")
    assert nca.submitted_due_at == flag.detected_at + NCA_DEADLINES[Priority.P1].submitted
    assert police.submitted_due_at == flag.detected_at + timedelta(hours=24)

    listed = await api.get("/v1/cases", destination="nca")
    assert str(cases["nca"]) in {item["case_id"] for item in listed.json()["items"]}
    packet = NcaPacket.model_validate((await api.get(f"/v1/cases/{cases['nca']}/packets/1")).json())
    assert packet.tier == "immediately"
    assert [i.item for i in packet.schedule_1 if not i.available] == [
        "earlier_reports",
        "upload_ip",
        "upload_port",
        "url",
        "connected_accounts",
    ]
    text = (await api.get(f"/v1/cases/{cases['nca']}/packets/1", format="text")).text
    assert text.startswith("STATUTORY CSEA REPORT TO THE NATIONAL CRIME AGENCY")


@pytest.mark.parametrize("rendering", ["json", "text"])
async def test_a_submission_keeps_a_receipt_of_the_bytes_served_and_audits_it(
    api: Client, sessions: async_sessionmaker[AsyncSession], rendering: str
) -> None:
    cases = await _cases(
        sessions, _flag(UK_REGULATED, signals=[signal("grooming", 0.95)]), UK_REGULATED
    )
    case_id = cases["nca"]
    served = await api.get(f"/v1/cases/{case_id}/packets/1", format=rendering)
    digest = hashlib.sha256(served.content).hexdigest()
    assert served.headers["x-packet-sha256"] == digest

    moved = await api.submit(case_id, "NCA-2026-000123", format=rendering)
    assert moved.status_code == 200, moved.text
    (receipt,) = moved.json()["receipts"]
    assert receipt["format"] == rendering
    assert receipt["sha256"] == digest
    assert receipt["size"] == len(served.content)
    assert receipt["packet_version"] == 1
    assert receipt["destination_key"] == "nca"
    assert receipt["external_reference"] == "NCA-2026-000123"
    assert receipt["actor"].startswith("investigator:")
    assert receipt["sent_at"] == NOW.isoformat().replace("+00:00", "Z")
    detail = (await api.get(f"/v1/cases/{case_id}")).json()
    assert detail["receipts"] == [receipt]

    async with sessions() as session:
        entry = await session.scalar(
            select(AuditRecord)
            .where(AuditRecord.case_id == case_id, AuditRecord.action == "case.transition")
            .order_by(AuditRecord.seq.desc())
        )
    assert entry is not None
    assert entry.detail["receipt"] == receipt["receipt_id"]
    assert (entry.detail["format"], entry.detail["sha256"]) == (rendering, digest)
    assert "NCA-2026-000123" not in str(entry.detail), "references stay in the case"


async def test_a_refused_submission_keeps_no_receipt(
    api: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cases = await _cases(
        sessions, _flag(UK_REGULATED, signals=[signal("grooming", 0.95)]), UK_REGULATED
    )
    refused = await api.submit(cases["nca"], "NCA-1", format="ncmec-xml")
    assert refused.status_code == 400, "an NCA case is no CyberTipline report"
    detail = (await api.get(f"/v1/cases/{cases['nca']}")).json()
    assert (detail["status"], detail["receipts"]) == ("ready", [])
    approve = await api.client.post(
        f"/v1/cases/{cases['police:kent']}/transitions",
        json={"to": "acknowledged", "format": "json"},
        headers=api.auth,
    )
    assert approve.status_code == 400, "a format is recorded only with submitted"


def _us_flag_about_a_uk_child() -> ModerationFlag:
    return _flag(
        US_REGULATED,
        signals=[signal("coercion", 0.95, label="sextortion_threat")],
        child={"age_band": "13_15", "location": {"country": "GB"}},
    )


async def test_an_nca_report_names_the_ncmec_report_of_the_same_subject(
    api: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cases = await _cases(sessions, _us_flag_about_a_uk_child(), US_REGULATED)
    assert set(cases) == {"intl:US:ncmec_cybertipline", "nca"}
    ncmec = cases["intl:US:ncmec_cybertipline"]
    refused = await api.submit(ncmec, "CT-not-a-number")
    assert refused.status_code == 400, "a CyberTipline report id is a number"

    served = await api.get(f"/v1/cases/{ncmec}/packets/1", format="ncmec-xml")
    sent = await api.submit(ncmec, "123456789")
    assert sent.status_code == 200, sent.text
    (receipt,) = sent.json()["receipts"]
    assert receipt["format"] == "ncmec-xml", "what a case to NCMEC sends by default"
    assert receipt["sha256"] == hashlib.sha256(served.content).hexdigest()

    body = (await api.get(f"/v1/cases/{cases['nca']}/packets/1")).json()
    packet = NcaPacket.model_validate(body)
    (earlier,) = packet.earlier_reports
    assert (earlier.receiver, earlier.reference, earlier.case_id) == (
        "ncmec_cybertipline",
        "123456789",
        ncmec,
    )
    assert next(i for i in packet.schedule_1 if i.item == "earlier_reports").available
    text = (await api.get(f"/v1/cases/{cases['nca']}/packets/1", format="text")).text
    assert "NCMEC CyberTipline report 123456789" in text


async def test_an_ncmec_report_names_the_nca_reference_of_the_same_subject(
    api: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cases = await _cases(sessions, _us_flag_about_a_uk_child(), US_REGULATED)
    sent = await api.submit(cases["nca"], "NCA-2026-000777")
    assert sent.status_code == 200, sent.text

    ncmec = cases["intl:US:ncmec_cybertipline"]
    report = (await api.get(f"/v1/cases/{ncmec}/packets/1", format="ncmec-xml")).content
    xmlschema.XMLSchema(str(NCMEC_XSD)).validate(report)
    assert b"National Crime Agency (NCA) under reference NCA-2026-000777" in report
    packet = (await api.get(f"/v1/cases/{ncmec}/packets/1")).json()
    assert [r["reference"] for r in packet["earlier_reports"]] == ["NCA-2026-000777"]


async def test_another_subjects_reports_are_not_named(
    api: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    first = await _cases(sessions, _us_flag_about_a_uk_child(), US_REGULATED)
    assert (await api.submit(first["nca"], "NCA-2026-000888")).status_code == 200
    other = await _cases(sessions, _us_flag_about_a_uk_child(), US_REGULATED)
    packet = (await api.get(f"/v1/cases/{other['intl:US:ncmec_cybertipline']}/packets/1")).json()
    assert packet["earlier_reports"] == []


async def test_a_subject_named_like_a_redacted_one_gets_no_other_subjects_reports(
    own_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Retention redacts a closed case's account to `redacted`; an account of that name (an
    opaque id, any string the platform gives) is not those subjects, and their references are
    not named on its packets."""
    sessions = own_sessions
    earlier = await _cases(sessions, _us_flag_about_a_uk_child(), US_REGULATED)
    later = NOW + timedelta(minutes=5)
    async with sessions() as session, session.begin():
        for to, fields in (
            (CaseStatus.SUBMITTED, {"external_reference": "NCA-2026-000999", "packet_version": 1}),
            (CaseStatus.ACKNOWLEDGED, {}),
            (CaseStatus.CLOSED, {"note": "taken on"}),
        ):
            await store.transition_case(
                session=session,
                case_id=earlier["nca"],
                to=to,
                actor="investigator:test",
                now=later,
                packets=store.CaseConfig(reporter=REPORTER, directory=uk_forces()),
                **fields,
            )
    async with sessions() as session, session.begin():
        await retention.run(
            session=session,
            now=later + retention.Periods().closed + timedelta(days=1),
            periods=retention.Periods(),
        )
        redacted = await session.get(Case, earlier["nca"])
        assert redacted is not None
        assert redacted.subject_account_id == retention.REDACTED

    flag = make_flag(
        platform={"org_id": US_REGULATED.org_id, "service": "chat", "country": "US"},
        subject={"account_id": retention.REDACTED},
        signals=[signal("coercion", 0.95)],
        child={"age_band": "13_15", "location": {"country": "GB"}},
    )
    cases = await _cases(sessions, flag, US_REGULATED)
    async with sessions() as session, session.begin():
        record = await store.packet(
            session=session,
            case_id=cases["intl:US:ncmec_cybertipline"],
            version=1,
            config=store.CaseConfig(reporter=REPORTER, directory=uk_forces()),
            now=later + retention.Periods().closed + timedelta(days=2),
        )
    assert record is not None
    assert record.body["earlier_reports"] == []


async def test_the_service_a_cybertipline_report_names_does_not_depend_on_arrival_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Two flags of one account from two services, in one batch: the report names the first
    detected one's service, whichever was stored first, so the bytes a receipt hashes are
    the bytes served."""
    named = []
    for order in (1, -1):
        account = f"acct-two-services-{uuid4().hex[:8]}"
        flags = [
            make_flag(
                platform={"org_id": "org-us", "service": service, "country": "US"},
                subject={"account_id": account},
                signals=[signal("coercion", 0.95)],
                detected_at=(NOW - timedelta(minutes=minutes)).isoformat(),
            )
            for service, minutes in (("earlier-app", 2), ("later-app", 1))
        ]
        tasks = [
            task
            for flag in flags[::order]
            for task in routed(flag).tasks
            if task.destination.mechanism == "ncmec_cybertipline"
        ]
        async with sessions() as session, session.begin():
            applied = await store.apply_tasks(session=session, tasks=tasks, now=NOW)
            named.append(await queries.service_of(session=session, case_id=applied[0].case_id))
    assert named == ["earlier-app", "earlier-app"]
