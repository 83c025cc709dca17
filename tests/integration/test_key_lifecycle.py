"""Key changes reach every API process without a restart: two apps share one keys file. A key's
last use is flushed from memory, not written per request; its holder is on the audit trail."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.cli import parser
from services.pipeline.settings import Settings
from services.referral import audit
from services.referral.api import create_app
from services.referral.key_uses import last_uses
from services.referral.keys import KEYS_RELOAD_SECONDS, Role, create_key, key_hash
from services.referral.models import AuditRecord
from tests.infra import isolated_settings

POLL_LIMIT = KEYS_RELOAD_SECONDS + 3.0


@pytest.fixture
async def two_apps(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Settings, list[httpx.AsyncClient]]]:
    """Two API processes' apps on one keys file (holding one key at start)."""
    path = tmp_path / "keys"
    create_key(path, Role.ADMIN, holder="setup")
    settings = isolated_settings(database_url, api_keys_file=path)
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url="http://api")
            clients.append(await stack.enter_async_context(client))
        yield settings, clients


async def _cli(settings: Settings, *argv: str) -> int:
    """`csae keys ...`, in a thread (as from a shell: `keys list` runs its own event loop)."""
    args = parser().parse_args(["keys", *argv])
    code: int = await asyncio.to_thread(args.handler, settings, args)
    return code


async def _statuses(clients: list[httpx.AsyncClient], key: str) -> list[int]:
    auth = {"Authorization": f"Bearer {key}"}
    return [(await c.get("/v1/cases?limit=1", headers=auth)).status_code for c in clients]


async def _until(clients: list[httpx.AsyncClient], key: str, status: int) -> float:
    """Seconds until every app answers `key` with `status` (polled, bounded)."""
    started = time.monotonic()
    while (await _statuses(clients, key)) != [status] * len(clients):
        elapsed = time.monotonic() - started
        assert elapsed < POLL_LIMIT, f"not every process answers {status} after {elapsed:.1f}s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_a_new_key_is_accepted_and_a_revoked_one_refused_by_both_processes(
    two_apps: tuple[Settings, list[httpx.AsyncClient]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings, clients = two_apps
    assert settings.api_keys_file is not None
    capsys.readouterr()
    assert await _cli(settings, "create", "--role", "viewer", "--holder", "analyst 7") == 0
    key = capsys.readouterr().out.strip()
    accepted = await _until(clients, key, 200)

    assert await _cli(settings, "revoke", key_hash(key)[:12]) == 0
    refused = await _until(clients, key, 401)
    assert accepted <= KEYS_RELOAD_SECONDS + 1
    assert refused <= KEYS_RELOAD_SECONDS + 1

    capsys.readouterr()
    assert await _cli(settings, "list") == 0
    listed = capsys.readouterr().out
    row = next(line for line in listed.splitlines() if line.startswith(key_hash(key)[:12]))
    assert "refused" in row
    assert "analyst 7" in row
    assert key not in listed


async def test_rotation_swaps_keys_in_both_processes(
    two_apps: tuple[Settings, list[httpx.AsyncClient]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings, clients = two_apps
    capsys.readouterr()
    assert await _cli(settings, "create", "--role", "investigator") == 0
    old = capsys.readouterr().out.strip()
    await _until(clients, old, 200)
    assert await _cli(settings, "rotate", key_hash(old)[:12]) == 0
    new = capsys.readouterr().out.strip()
    await _until(clients, new, 200)
    assert await _statuses(clients, old) == [401, 401]


async def test_an_expired_key_is_refused_at_its_expiry(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "keys"
    now = [datetime.now(UTC)]
    key = create_key(path, Role.VIEWER, expires=now[0] + timedelta(hours=1), now=now[0])
    app = create_app(isolated_settings(database_url, api_keys_file=path), clock=lambda: now[0])
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c,
    ):
        assert await _statuses([c], key) == [200]
        now[0] += timedelta(hours=1)
        assert await _statuses([c], key) == [401]


async def _stored_uses(sessions: async_sessionmaker[AsyncSession]) -> dict[str, datetime]:
    async with sessions() as session:
        return await last_uses(session=session)


async def test_last_use_is_kept_in_memory_and_flushed_not_written_per_request(
    own_database_url: str,
    own_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "keys"
    key = create_key(path, Role.VIEWER, holder="desk 4")
    unused = create_key(path, Role.VIEWER)
    now = [datetime(2026, 12, 1, 9, 0, tzinfo=UTC)]
    settings = isolated_settings(
        own_database_url, api_keys_file=path, api_key_use_flush_seconds=3600
    )
    app = create_app(settings, clock=lambda: now[0])
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c,
    ):
        for _ in range(5):
            assert await _statuses([c], key) == [200]
            now[0] += timedelta(minutes=1)
        assert await _stored_uses(own_sessions) == {}, "a use is not written per request"
    # The process stopping flushes what it saw: the latest use.
    assert await _stored_uses(own_sessions) == {
        key_hash(key)[:12]: datetime(2026, 12, 1, 9, 4, tzinfo=UTC)
    }

    capsys.readouterr()
    assert await _cli(settings, "list") == 0
    rows = {line[:12]: line for line in capsys.readouterr().out.splitlines()}
    assert "2026-12-01T09:04:00+00:00" in rows[key_hash(key)[:12]]
    assert "2026-12-01T09:04" not in rows[key_hash(unused)[:12]]


async def test_last_use_is_flushed_while_the_api_runs(
    own_database_url: str, own_sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    path = tmp_path / "keys"
    key = create_key(path, Role.VIEWER)
    settings = isolated_settings(
        own_database_url, api_keys_file=path, api_key_use_flush_seconds=0.1
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c,
    ):
        assert await _statuses([c], key) == [200]
        deadline = time.monotonic() + 10
        while key_hash(key)[:12] not in await _stored_uses(own_sessions):
            assert time.monotonic() < deadline, "the last use was never flushed"
            await asyncio.sleep(0.05)


async def test_the_audit_trail_names_the_key_and_its_holder(
    own_database_url: str, own_sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    path = tmp_path / "keys"
    held = create_key(path, Role.VIEWER, holder="Safeguarding desk 4")
    bare = create_key(path, Role.VIEWER)
    app = create_app(isolated_settings(own_database_url, api_keys_file=path))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c,
    ):
        assert await _statuses([c], held) == [200]
        assert await _statuses([c], bare) == [200]
    async with own_sessions() as session:
        actors = list(await session.scalars(select(AuditRecord.actor).order_by(AuditRecord.seq)))
        assert (await audit.verify_stored(session=session)).broken is None
    assert actors == [
        f"viewer:{key_hash(held)[:12]} (Safeguarding desk 4)",
        f"viewer:{key_hash(bare)[:12]}",
    ]


async def test_a_holder_label_is_bounded(database_url: str, tmp_path: Path) -> None:
    settings = isolated_settings(database_url, api_keys_file=tmp_path / "keys")
    assert await _cli(settings, "create", "--role", "viewer", "--holder", "x" * 65) != 0
    assert await _cli(settings, "create", "--role", "viewer", "--holder", "a\tb") != 0
    assert await _cli(settings, "create", "--role", "viewer", "--holder", "x" * 64) == 0
