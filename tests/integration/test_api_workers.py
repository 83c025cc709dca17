"""Several API worker processes on one port (`CSAE_API_WORKERS`): a real `csae referral api`
with two workers. A cursor one worker issued works on the other (one signing key for all,
though none is configured), and a key made while they run is accepted by each without a
restart. And the API's pool, without pre-ping, recovers from connections the database closed."""

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from benchmarks.pipeline import free_port
from services.referral.api import create_app
from services.referral.keys import Role, create_key
from tests.infra import isolated_settings
from tests.integration.test_case_lifecycle import account, apply, police_tasks

WORKERS = 2
FRESH = 40
"""Requests each on a connection of its own, sent at once: the kernel hands them to either
worker (one worker alone would pass whatever the others hold)."""


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


@pytest.fixture
async def served(
    own_database_url: str, own_sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> AsyncIterator[tuple[str, Path, str, asyncio.subprocess.Process]]:
    for _ in range(3):
        await apply(own_sessions, police_tasks(subject=account()), datetime.now(UTC))
    keys = tmp_path / "keys"
    key = create_key(keys, Role.INVESTIGATOR, holder="workers test")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "CSAE_API_CURSOR_SECRET"},
        "CSAE_DATABASE_URL": own_database_url,
        "CSAE_API_KEYS_FILE": str(keys),
        "CSAE_API_WORKERS": str(WORKERS),
        "CSAE_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("csae")), "referral", "api", "--port", str(port), env=env
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(base_url=base) as probe:
            while True:
                assert process.returncode is None, "the API exited"
                assert time.monotonic() < deadline, "the API did not start"
                try:
                    if (await probe.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        yield base, keys, key, process
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=30)


async def _fresh(base: str, path: str, key: str, count: int = FRESH) -> list[int]:
    """`count` requests at once, each on a new connection."""

    async def one() -> int:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            answer = await client.get(path, headers={"Authorization": f"Bearer {key}"})
            return answer.status_code

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def test_two_workers_share_cursors_and_see_a_new_key(
    served: tuple[str, Path, str, asyncio.subprocess.Process],
) -> None:
    base, keys, key, process = served
    deadline = time.monotonic() + 30
    while len(_children(process.pid)) < WORKERS:  # workers start after the port answers
        assert time.monotonic() < deadline, f"fewer than {WORKERS} worker processes"
        await asyncio.sleep(0.1)

    async with httpx.AsyncClient(base_url=base) as client:
        auth = {"Authorization": f"Bearer {key}"}
        first = (await client.get("/v1/cases?limit=1", headers=auth)).json()
    cursor = first["next_cursor"]
    assert cursor is not None
    assert await _fresh(base, f"/v1/cases?limit=1&cursor={cursor}", key) == [200] * FRESH

    new = create_key(keys, Role.VIEWER, holder="made while running")
    deadline = time.monotonic() + 10
    while (statuses := await _fresh(base, "/v1/cases?limit=1", new)) != [200] * FRESH:
        assert time.monotonic() < deadline, f"a worker still refuses the new key: {statuses}"
        await asyncio.sleep(0.2)


async def test_connections_the_database_closed_are_replaced_after_one_failure(
    own_database_url: str, own_sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """The API's pool does not pre-ping (three round trips a request): after the database
    closes its connections, the one request that finds out fails, and every later one is
    served on a new connection."""
    keys = tmp_path / "keys"
    key = create_key(keys, Role.VIEWER)
    app = create_app(isolated_settings(own_database_url, api_keys_file=keys))
    auth = {"Authorization": f"Bearer {key}"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c,
    ):
        warm = await asyncio.gather(*(c.get("/v1/cases?limit=1", headers=auth) for _ in range(6)))
        assert [a.status_code for a in warm] == [200] * 6  # several pooled connections
        async with own_sessions() as session:
            closed = await session.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        assert (closed or 0) >= 2
        statuses = [(await c.get("/v1/cases?limit=1", headers=auth)).status_code for _ in range(8)]
    assert statuses[0] in (200, 500)
    assert statuses[1:] == [200] * 7, statuses
