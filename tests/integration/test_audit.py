"""The audit trail on the real PostgreSQL: reads and moves through the API make entries with the
caller's key and the ids (never packet contents); a move and its entry commit together; an
entry altered, removed or swapped in the table is named by `csae audit verify`; an export reads
back and verifies."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services import cli
from services.pipeline import logs
from services.referral import audit, store
from services.referral.enums import CaseStatus
from services.referral.models import AuditRecord, Case
from tests.factories import make_flag
from tests.integration.test_case_lifecycle import Api, _api, account, apply, police_tasks
from tests.integration.test_cases_store import routed


@pytest.fixture
async def api(own_database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async for value in _api(own_database_url, tmp_path):
        yield value


async def entries(sessions: async_sessionmaker[AsyncSession]) -> list[AuditRecord]:
    async with sessions() as session:
        return list(await session.scalars(select(AuditRecord).order_by(AuditRecord.seq)))


async def verified(sessions: async_sessionmaker[AsyncSession]) -> audit.Verified:
    async with sessions() as session:
        return await audit.verify_stored(session=session, batch=3)  # several batches


async def test_reads_and_a_move_are_recorded_with_the_key_and_ids_never_contents(
    api: Api, own_sessions: async_sessionmaker[AsyncSession]
) -> None:
    subject = account()
    flag = make_flag(subject=subject)
    police = [t for t in routed(flag).tasks if t.destination.kind.value == "police"]
    case_id = await apply(own_sessions, police, api.clock.now)
    async with own_sessions() as session, session.begin():
        await store.record_decisions(session=session, decisions=[routed(flag).decision])
    auth = api.auth

    assert (await api.client.get(f"/v1/cases/{case_id}", headers=auth)).status_code == 200
    listed = await api.client.get("/v1/cases?status=ready&limit=5", headers=api.viewer)
    assert listed.status_code == 200
    moved = await api.move(case_id, "submitted", external_reference="KNT-1", packet_version=1)
    assert moved.status_code == 200, moved.text
    packet = await api.client.get(f"/v1/cases/{case_id}/packets/1", headers=auth)
    assert packet.status_code == 200
    assert (await api.client.get(f"/v1/flags/{flag.flag_id}", headers=auth)).status_code == 200
    missing = uuid4()
    assert (await api.client.get(f"/v1/cases/{missing}", headers=auth)).status_code == 404
    refused = await api.move(case_id, "dismissed", note="not a real concern")
    assert refused.status_code == 409

    opened, *log = await entries(own_sessions)
    # The worker's own move is on the trail too, in the transaction that made it (no note).
    assert (opened.actor, opened.action, opened.outcome) == ("system", "case.system_move", "ok")
    assert (opened.case_id, opened.detail) == (case_id, {"from": None, "to": "ready"})
    assert [(e.action, e.outcome) for e in log] == [
        ("case.read", "200"),
        ("cases.list", "200"),
        ("case.transition", "200"),
        ("packet.read", "200"),
        ("flag.read", "200"),
        ("case.read", "404"),
        ("case.transition", "409"),
    ]
    async with own_sessions() as session:
        mover = await session.scalar(
            text(
                "SELECT actor FROM case_transitions WHERE case_id = :c AND to_status = 'submitted'"
            ),
            {"c": case_id, "to": "submitted"},
        )
    assert mover is not None
    assert mover.startswith("investigator:")
    assert {e.actor for e in log if e.action != "cases.list"} == {mover}
    assert log[1].actor.startswith("viewer:")
    assert [e.case_id for e in log] == [case_id, None, case_id, case_id, None, missing, case_id]
    rows = len(listed.json()["items"])
    assert log[1].detail == {
        "status": "ready",
        "limit": 5,
        "overdue": False,
        "paged": False,
        "rows": rows,
    }
    (receipt,) = moved.json()["receipts"]  # what was sent: its sha256, never its reference
    assert log[2].detail == {
        "to": "submitted",
        "from": "ready",
        "status": "submitted",
        "receipt": receipt["receipt_id"],
        "destination": "police",
        "format": "json",
        "sha256": receipt["sha256"],
    }
    assert log[3].detail == {"format": "json", "sha256": receipt["sha256"]}
    assert (log[2].packet_version, log[3].packet_version) == (1, 1)
    assert (log[4].flag_id, log[4].detail) == (flag.flag_id, {"cases": 1})
    assert log[6].detail == {"to": "dismissed"}
    assert [e.route for e in log] == [  # templates, never the raw path
        "GET /v1/cases/{case_id}",
        "GET /v1/cases",
        "POST /v1/cases/{case_id}/transitions",
        "GET /v1/cases/{case_id}/packets/{version}",
        "GET /v1/flags/{flag_id}",
        "GET /v1/cases/{case_id}",
        "POST /v1/cases/{case_id}/transitions",
    ]
    assert all(e.request_id for e in log)
    stored = json.dumps([audit.exported(e) for e in log])
    assert subject["account_id"] not in stored, "no personal data on the trail"
    assert "KNT-1" not in stored
    assert "not a real concern" not in stored
    assert (await verified(own_sessions)).broken is None


async def test_a_route_refused_to_a_key_s_role_is_recorded_without_its_path(
    api: Api, own_sessions: async_sessionmaker[AsyncSession]
) -> None:
    case_id = uuid4()
    refused = await api.client.get(f"/v1/cases/{case_id}", headers=api.viewer)
    assert refused.status_code == 403
    unknown = await api.client.get(f"/v1/cases/{case_id}", headers={"Authorization": "Bearer x"})
    assert unknown.status_code == 401  # no key: nothing to name, and not a flood to chain
    (entry,) = await entries(own_sessions)
    assert (entry.action, entry.outcome, entry.route) == (
        "access.refused",
        "403",
        "GET /v1/cases/{case_id}",  # the template: the path holds the case id asked for
    )
    assert entry.actor.startswith("viewer:")
    assert entry.request_id == refused.headers["x-request-id"]
    assert str(case_id) not in json.dumps(audit.exported(entry))
    assert (await verified(own_sessions)).broken is None


async def test_a_move_whose_audit_entry_fails_is_not_made(
    api: Api, own_sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    case_id = await apply(own_sessions, police_tasks(subject=account()), api.clock.now)

    async def broken(**_: Any) -> int:
        raise RuntimeError("audit unavailable")

    monkeypatch.setattr(audit, "record", broken)
    moved = await api.move(case_id, "submitted", external_reference="KNT-2", packet_version=1)
    assert moved.status_code == 500
    async with own_sessions() as session:
        case = await session.get(Case, case_id)
    assert case is not None
    assert case.status is CaseStatus.READY, "the move rolled back with its entry"


async def chain_of(sessions: async_sessionmaker[AsyncSession], n: int) -> None:
    at = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    for i in range(n):
        async with sessions() as session, session.begin():
            entry = audit.Entry(
                actor="investigator:k1", action="case.read", outcome="200", case_id=uuid4()
            )
            await audit.record(session=session, entry=entry, now=at + timedelta(minutes=i))


async def tamper(sessions: async_sessionmaker[AsyncSession], *statements: str) -> None:
    """Rewrite the table as a superuser can, past the append-only trigger."""
    async with sessions() as session, session.begin():
        await session.execute(text("SET LOCAL session_replication_role = replica"))
        for statement in statements:
            await session.execute(text(statement))


def first_bad(done: audit.Verified) -> int:
    assert done.broken is not None
    return done.broken.seq


async def test_the_table_refuses_update_and_delete(
    own_sessions: async_sessionmaker[AsyncSession],
) -> None:
    await chain_of(own_sessions, 2)
    for statement in (
        "UPDATE audit_log SET actor = 'x'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ):
        async with own_sessions() as session, session.begin():
            with pytest.raises(DBAPIError, match="append-only"):
                await session.execute(text(statement))


async def test_an_altered_entry_is_named(own_sessions: async_sessionmaker[AsyncSession]) -> None:
    await chain_of(own_sessions, 8)
    await tamper(own_sessions, "UPDATE audit_log SET outcome = '404' WHERE seq = 5")
    assert first_bad(await verified(own_sessions)) == 5


async def test_a_removed_entry_is_named(own_sessions: async_sessionmaker[AsyncSession]) -> None:
    await chain_of(own_sessions, 8)
    await tamper(own_sessions, "DELETE FROM audit_log WHERE seq = 4")
    done = await verified(own_sessions)
    assert first_bad(done) == 4
    assert done.broken is not None
    assert "removed" in done.broken.reason


async def test_two_swapped_entries_are_named(
    own_sessions: async_sessionmaker[AsyncSession],
) -> None:
    await chain_of(own_sessions, 8)
    await tamper(
        own_sessions,
        "UPDATE audit_log SET seq = -3 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 6",
        "UPDATE audit_log SET seq = 6 WHERE seq = -3",
    )
    assert first_bad(await verified(own_sessions)) == 3


async def test_the_command_line_verifies_and_exports_lines_that_read_back(
    own_database_url: str,
    own_sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CSAE_DATABASE_URL", own_database_url)
    monkeypatch.setattr(logs, "configure", lambda level: None)  # keep the suite's logging
    await chain_of(own_sessions, 6)
    assert await asyncio.to_thread(cli.main, ["audit", "verify"]) == 0
    capsys.readouterr()

    since = "2026-12-02T09:02:00+00:00"
    assert await asyncio.to_thread(cli.main, ["audit", "export", "--since", since]) == 0
    lines = capsys.readouterr().out.splitlines()
    back = [audit.ExportedEntry.from_json(line) for line in lines]
    stored = await entries(own_sessions)
    assert [b.seq for b in back] == [3, 4, 5, 6]
    assert [audit.exported(b) for b in back] == [audit.exported(e) for e in stored[2:]]
    done = audit.verify(back, start_seq=3, start_hash=back[0].prev_hash)
    assert done.broken is None, "an export verifies from its first entry on"

    await tamper(own_sessions, "UPDATE audit_log SET actor = 'admin:k2' WHERE seq = 2")
    assert await asyncio.to_thread(cli.main, ["audit", "verify"]) == 1
    assert "entry 2" in capsys.readouterr().err


async def test_the_cost_of_an_audited_case_read(
    api: Api, own_sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Sequential case reads, each with its audit entry (one statement: `audit_append`)."""
    case_id = await apply(own_sessions, police_tasks(subject=account()), api.clock.now)
    url = f"/v1/cases/{case_id}"
    took = []
    for _ in range(200):
        started = time.perf_counter()
        response = await api.client.get(url, headers=api.auth)
        took.append(time.perf_counter() - started)
        assert response.status_code == 200
    took.sort()
    p50, p95 = took[len(took) // 2] * 1000, took[int(len(took) * 0.95)] * 1000
    alone = []
    for _ in range(200):
        started = time.perf_counter()
        async with own_sessions() as session, session.begin():
            entry = audit.Entry(actor="investigator:k1", action="case.read", outcome="200")
            await audit.record(session=session, entry=entry, now=api.clock.now)
        alone.append(time.perf_counter() - started)
    alone.sort()
    print(
        f"audited case read: p50 {p50:.1f} ms, p95 {p95:.1f} ms over 200; the audit write "
        f"alone (own transaction): p50 {alone[100] * 1000:.1f} ms, p95 {alone[190] * 1000:.1f} ms"
    )
    assert p95 < 250, "bounded loosely: a shared CI machine; the report gives the numbers"
    reads = [e for e in await entries(own_sessions) if e.action == "case.read"]
    assert len(reads) == 400
    assert (await verified(own_sessions)).broken is None


async def test_concurrent_reads_make_one_unbroken_chain(
    api: Api, own_sessions: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await apply(own_sessions, police_tasks(subject=account()), api.clock.now)
    answers = await asyncio.gather(
        *(api.client.get(f"/v1/cases/{case_id}", headers=api.auth) for _ in range(20))
    )
    assert [a.status_code for a in answers] == [200] * 20
    done = await verified(own_sessions)
    assert done.broken is None
    assert (done.entries, done.head_seq) == (21, 21)  # the case's opening, then the reads


async def test_several_entries_at_once_chain_in_order(
    own_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """`record_many` (the worker's system moves of a batch) chains like one entry at a time."""
    now = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)
    async with own_sessions() as session, session.begin():
        await audit.record(
            session=session, entry=audit.Entry(actor="system", action="a", outcome="ok"), now=now
        )
        many = [
            audit.Entry(
                actor="system",
                action="case.system_move",
                outcome="ok",
                case_id=uuid4(),
                packet_version=k or None,
                detail={"from": None if k == 0 else "review", "to": "ready"},
            )
            for k in range(3)
        ]
        assert await audit.record_many(session=session, entries=many, now=now) == 4
        assert await audit.record_many(session=session, entries=[], now=now) == 0
    log = await entries(own_sessions)
    assert [e.seq for e in log] == [1, 2, 3, 4]
    assert [(e.case_id, e.packet_version, e.detail) for e in log[1:]] == [
        (m.case_id, m.packet_version, dict(m.detail)) for m in many
    ]
    assert (await verified(own_sessions)).broken is None
