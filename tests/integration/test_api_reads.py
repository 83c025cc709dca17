"""Case reads stay bounded: a case with many moves and flags gives its latest, with totals and
the position of the earlier ones."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.referral import store
from services.referral.api import create_app
from services.referral.keys import Role, create_key
from tests.factories import make_flag, signal
from tests.infra import isolated_settings
from tests.integration.test_cases_store import routed

MOVES = 25
EXTRA_FLAGS = 12


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    keys = tmp_path / "keys"
    key = create_key(keys, Role.INVESTIGATOR)
    app = create_app(isolated_settings(database_url, api_keys_file=keys))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api",
            headers={"Authorization": f"Bearer {key}"},
        ) as client,
    ):
        yield client


async def busy_case(sessions: async_sessionmaker[AsyncSession]) -> UUID:
    """A case with MOVES more moves (notes 0..MOVES-1) and EXTRA_FLAGS more flags and tasks."""
    refer = routed(
        make_flag(
            subject={"account_id": f"acct-{uuid4().hex[:8]}"}, signals=[signal("coercion", 0.9)]
        )
    )
    async with sessions() as session, session.begin():
        await store.record_decisions(session=session, decisions=[refer.decision])
        applied = await store.apply_tasks(
            session=session, tasks=list(refer.tasks), now=refer.decision.decided_at
        )
        case_id = applied[0].case_id
        await session.execute(
            text(
                "INSERT INTO case_transitions (case_id, at, actor, from_status, to_status, note) "
                "SELECT :c, now(), 'system', 'ready', 'ready', 'move ' || (j - 1) "
                "FROM generate_series(1, :n) AS j ORDER BY j"
            ),
            {"c": case_id, "n": MOVES},
        )
        await session.execute(
            text(
                "INSERT INTO flags (flag_id, org_id, source_kind, detected_at, received_at, body) "
                "SELECT md5(:c || j)::uuid, org_id, source_kind, detected_at, received_at, body "
                "FROM flags, generate_series(1, :n) AS j WHERE flag_id = :f"
            ),
            {"c": str(case_id), "n": EXTRA_FLAGS, "f": refer.decision.flag_id},
        )
        await session.execute(
            text(
                "INSERT INTO tasks (task_id, case_id, flag_id, decision, priority, routed_at, "
                "received_at, body, attached_version) "
                "SELECT gen_random_uuid(), case_id, md5(:c || j)::uuid, decision, priority, "
                "routed_at + j * interval '1 second', received_at, body, attached_version "
                "FROM tasks, generate_series(1, :n) AS j WHERE case_id = :cid"
            ),
            {"c": str(case_id), "n": EXTRA_FLAGS, "cid": case_id},
        )
    return case_id


async def read(client: httpx.AsyncClient, case_id: UUID, **params: Any) -> dict[str, Any]:
    answer = await client.get(f"/v1/cases/{case_id}", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_a_case_read_holds_the_latest_moves_and_pages_back_to_the_first(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await busy_case(sessions)
    whole = await read(client, case_id)
    total = whole["transitions_total"]
    assert total == len(whole["transitions"]) == MOVES + 1  # the opening move and MOVES
    assert whole["transitions_before"] is None

    notes: list[str | None] = []
    page = await read(client, case_id, limit=10)
    assert [t["note"] for t in page["transitions"]][-1] == f"move {MOVES - 1}"  # latest last
    while True:
        assert len(page["transitions"]) <= 10
        assert page["transitions_total"] == total
        notes = [t["note"] for t in page["transitions"]] + notes
        if page["transitions_before"] is None:
            break
        page = await read(client, case_id, limit=10, transitions_before=page["transitions_before"])
    assert notes == [t["note"] for t in whole["transitions"]]


async def test_a_case_read_holds_the_flags_of_its_latest_tasks_and_pages_back(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await busy_case(sessions)
    whole = await read(client, case_id)
    assert len(whole["flag_ids"]) == EXTRA_FLAGS + 1
    assert whole["flags_offset"] is None
    seen: list[str] = []
    page = await read(client, case_id, limit=5)
    assert page["flag_ids"] == whole["flag_ids"][-5:]
    while True:
        seen = page["flag_ids"] + seen
        if page["flags_offset"] is None:
            break
        page = await read(client, case_id, limit=5, flags_offset=page["flags_offset"])
    assert seen == whole["flag_ids"]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 1001},
        {"transitions_before": 0},
        {"transitions_before": 2**63},
        {"flags_offset": -1},
        {"flags_offset": 2**31},
    ],
)
async def test_a_case_read_refuses_positions_out_of_range(
    client: httpx.AsyncClient, params: dict[str, int]
) -> None:
    answer = await client.get(f"/v1/cases/{uuid4()}", params=params)
    assert answer.status_code == 422
