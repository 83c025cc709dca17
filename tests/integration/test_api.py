"""The case API over the real PostgreSQL: auth, lookups, pagination, not-found."""

from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
import xmlschema
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.referral import store
from services.referral.api import create_app
from services.referral.keys import Role, create_key
from tests.factories import make_flag, signal
from tests.infra import isolated_settings
from tests.integration.test_cases_store import NOW, routed

NCMEC_XSD = Path(__file__).parents[2] / "schemas" / "external" / "ncmec" / "cyber_tipline.xsd"


@pytest.fixture
async def key_and_client(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    keys = tmp_path / "keys"
    key = create_key(keys, Role.INVESTIGATOR)
    app = create_app(isolated_settings(database_url, api_keys_file=keys))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield key, client


async def test_every_v1_route_needs_a_valid_key(
    key_and_client: tuple[str, httpx.AsyncClient],
) -> None:
    _, client = key_and_client
    some = uuid4()
    for path in [
        "/v1/cases",
        f"/v1/cases/{some}",
        f"/v1/cases/{some}/packets/1",
        f"/v1/flags/{some}",
    ]:
        missing = await client.get(path)
        wrong = await client.get(path, headers={"Authorization": "Bearer csae_not_a_key"})
        assert (missing.status_code, wrong.status_code) == (401, 401), path
        assert missing.headers["www-authenticate"] == "Bearer"
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200


async def test_cases_packets_and_flags_can_be_looked_up(
    key_and_client: tuple[str, httpx.AsyncClient], sessions: async_sessionmaker[AsyncSession]
) -> None:
    key, client = key_and_client
    auth = {"Authorization": f"Bearer {key}"}
    account = f"acct-api-{uuid4().hex[:6]}"
    refer = routed(make_flag(subject={"account_id": account}, signals=[signal("coercion", 0.9)]))
    none = routed(make_flag(signals=[signal("other", 0.9)]))
    async with sessions() as session, session.begin():
        await store.record_decisions(session=session, decisions=[refer.decision, none.decision])
        applied = await store.apply_tasks(
            session=session,
            tasks=list(refer.tasks),
            now=refer.decision.decided_at,
        )
    case_id = applied[0].case_id

    detail = (await client.get(f"/v1/cases/{case_id}", headers=auth)).json()
    assert detail["status"] == "ready"
    assert detail["force_id"] == "kent"
    assert detail["subject_account_id"] == account
    assert detail["flag_ids"] == [str(refer.decision.flag_id)]
    assert detail["packet_versions"] == [1]

    packet = (await client.get(f"/v1/cases/{case_id}/packets/1", headers=auth)).json()
    assert packet["kind"] == "police"
    assert packet["authority"]["name"] == "Kent Police"
    assert packet["subject"]["account_id"] == account

    flag = (await client.get(f"/v1/flags/{refer.decision.flag_id}", headers=auth)).json()
    assert flag["decision"]["outcome"] == "refer"
    assert flag["case_ids"] == [str(case_id)]
    (fired,) = flag["decision"]["rules"]  # explainable: the rule, what held, the policy version
    assert (fired["rule_id"], fired["matched"][-1]) == (
        "coercion-high",
        "signals[0].confidence>=0.8",
    )
    assert flag["decision"]["policy_version"] == refer.decision.policy_version
    no_report = (await client.get(f"/v1/flags/{none.decision.flag_id}", headers=auth)).json()
    assert (no_report["decision"]["outcome"], no_report["case_ids"]) == ("none", [])

    listed = (await client.get("/v1/cases", headers=auth, params={"status": "ready"})).json()
    assert str(case_id) in [c["case_id"] for c in listed["items"]]
    assert all("subject_account_id" not in c for c in listed["items"])
    for params, present in [
        ({"force": "kent", "criterion": "coercion", "priority": "P1"}, True),
        ({"force": "kent", "criterion": "grooming"}, False),
        ({"destination": "iwf"}, False),
        ({"since": "2099-01-01T00:00:00Z"}, False),
    ]:
        page = (await client.get("/v1/cases", headers=auth, params=params)).json()
        assert (str(case_id) in [c["case_id"] for c in page["items"]]) is present, params
    bad = await client.get("/v1/cases", headers=auth, params={"priority": "P9"})
    assert bad.status_code == 422

    for missing in [
        f"/v1/cases/{uuid4()}",
        f"/v1/cases/{case_id}/packets/2",
        f"/v1/flags/{uuid4()}",
    ]:
        assert (await client.get(missing, headers=auth)).status_code == 404, missing


async def test_case_list_pages_with_a_cursor_and_refuses_a_forged_one(
    key_and_client: tuple[str, httpx.AsyncClient], sessions: async_sessionmaker[AsyncSession]
) -> None:
    key, client = key_and_client
    auth = {"Authorization": f"Bearer {key}"}
    for _ in range(3):
        routing = routed(make_flag(signals=[signal("safety", 0.95)]))
        async with sessions() as session, session.begin():
            await store.apply_tasks(
                session=session,
                tasks=list(routing.tasks),
                now=routing.decision.decided_at,
            )
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/cases", headers=auth, params=params)).json()
        seen.extend(c["case_id"] for c in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) >= 3
    forged = await client.get("/v1/cases", headers=auth, params={"cursor": "bm90LWEtY3Vyc29y"})
    assert forged.status_code == 400


async def test_a_viewer_sees_lists_but_nothing_that_identifies_a_person(
    database_url: str, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    viewer = create_key(keys, Role.VIEWER)
    app = create_app(isolated_settings(database_url, api_keys_file=keys))
    auth = {"Authorization": f"Bearer {viewer}"}
    some = uuid4()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
    ):
        assert (await client.get("/v1/cases", headers=auth)).status_code == 200
        for path in [f"/v1/cases/{some}", f"/v1/cases/{some}/packets/1", f"/v1/flags/{some}"]:
            assert (await client.get(path, headers=auth)).status_code == 403, path


async def test_a_case_to_ncmec_reads_as_a_cybertipline_report_valid_against_ncmecs_schema(
    key_and_client: tuple[str, httpx.AsyncClient], sessions: async_sessionmaker[AsyncSession]
) -> None:
    key, client = key_and_client
    auth = {"Authorization": f"Bearer {key}"}
    us = routed(
        make_flag(
            platform={"org_id": "org-us-api", "service": "video", "country": "US"},
            subject={"account_id": f"acct-ncmec-{uuid4().hex[:6]}", "ips": ["192.0.2.44"]},
            signals=[signal("coercion", 0.9, label="sextortion_threat")],
        )
    )
    uk = routed(make_flag(signals=[signal("coercion", 0.9)]))
    async with sessions() as session, session.begin():
        (to_ncmec,) = await store.apply_tasks(session=session, tasks=list(us.tasks), now=NOW)
        (to_police,) = await store.apply_tasks(session=session, tasks=list(uk.tasks), now=NOW)
    assert to_ncmec.task.destination.key == "intl:US:ncmec_cybertipline"

    path = f"/v1/cases/{to_ncmec.case_id}/packets/1"
    report = await client.get(path, headers=auth, params={"format": "ncmec-xml"})
    assert report.status_code == 200, report.text
    assert report.headers["content-type"].startswith("application/xml")
    xmlschema.XMLSchema(str(NCMEC_XSD)).validate(report.content)
    assert b"<incidentType>Online Enticement of Children for Sexual Acts</incidentType>" in (
        report.content
    )
    assert b"<sextortion" in report.content
    assert b"video" in report.content, "the service the flags came from is named"

    police = await client.get(
        f"/v1/cases/{to_police.case_id}/packets/1", headers=auth, params={"format": "ncmec-xml"}
    )
    assert police.status_code == 400, "a case to a UK force is not an NCMEC report"
