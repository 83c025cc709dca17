"""Key changes reach every API process without a restart: two apps share one keys file."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from services.cli import parser
from services.pipeline.settings import Settings
from services.referral.api import create_app
from services.referral.keys import KEYS_RELOAD_SECONDS, Role, create_key, key_hash
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


def _cli(settings: Settings, *argv: str) -> int:
    args = parser().parse_args(["keys", *argv])
    code: int = args.handler(settings, args)
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
    assert _cli(settings, "create", "--role", "viewer", "--holder", "analyst 7") == 0
    key = capsys.readouterr().out.strip()
    accepted = await _until(clients, key, 200)

    assert _cli(settings, "revoke", key_hash(key)[:12]) == 0
    refused = await _until(clients, key, 401)
    assert accepted <= KEYS_RELOAD_SECONDS + 1
    assert refused <= KEYS_RELOAD_SECONDS + 1

    capsys.readouterr()
    assert _cli(settings, "list") == 0
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
    assert _cli(settings, "create", "--role", "investigator") == 0
    old = capsys.readouterr().out.strip()
    await _until(clients, old, 200)
    assert _cli(settings, "rotate", key_hash(old)[:12]) == 0
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
