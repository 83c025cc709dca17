"""The console's sessions, CSRF checks, roles and audit trail over the real PostgreSQL (the
browser tests in tests/e2e/test_console_browser.py drive the same pages in Chromium)."""

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.referral import store
from services.referral.api import create_app
from services.referral.console.sessions import COOKIE, token_hash
from services.referral.keys import Role, create_key
from services.referral.models import AuditRecord, ConsoleSession
from tests.factories import make_flag, signal
from tests.infra import isolated_settings
from tests.integration.test_cases_store import routed

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Console:
    client: httpx.AsyncClient
    keys: Path
    investigator: str
    viewer: str
    clock: list[datetime]

    async def sign_in(self, key: str) -> httpx.Response:
        form = await self.client.get("/console/sign-in")
        token = _CSRF.search(form.text)
        assert token is not None
        return await self.client.post("/console/sign-in", data={"csrf": token.group(1), "key": key})

    def csrf(self, page: httpx.Response) -> str:
        found = _CSRF.search(page.text)
        assert found is not None, page.text[:500]
        return found.group(1)


@pytest.fixture
async def console(database_url: str, tmp_path: Path) -> AsyncIterator[Console]:
    keys = tmp_path / "keys"
    investigator = create_key(keys, Role.INVESTIGATOR)
    viewer = create_key(keys, Role.VIEWER)
    now = [datetime.now(UTC)]
    settings = isolated_settings(database_url, api_keys_file=keys, console_idle_seconds=600)
    app = create_app(settings, clock=lambda: now[0])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
            yield Console(client, keys, investigator, viewer, now)


async def _case(sessions: async_sessionmaker[AsyncSession], **flag: object) -> UUID:
    account = f"acct-console-{uuid4().hex[:8]}"
    made = routed(
        make_flag(subject={"account_id": account}, signals=[signal("coercion", 0.9)], **flag)
    )
    async with sessions() as session, session.begin():
        await store.record_decisions(session=session, decisions=[made.decision])
        applied = await store.apply_tasks(
            session=session, tasks=list(made.tasks), now=made.decision.decided_at
        )
    return applied[0].case_id


async def _entries(
    sessions: async_sessionmaker[AsyncSession], where: Callable[[type[AuditRecord]], object]
) -> list[AuditRecord]:
    async with sessions() as session:
        return list(await session.scalars(select(AuditRecord).where(where(AuditRecord))))  # type: ignore[arg-type]


async def test_sign_in_makes_a_strict_http_only_session_stored_hashed(
    console: Console, sessions: async_sessionmaker[AsyncSession]
) -> None:
    signed = await console.sign_in(console.investigator)
    assert (signed.status_code, signed.headers["location"]) == (303, "/console/queue")
    cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith(COOKIE + "="))
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP here; see the TLS test below
    token = cookie.split(";")[0].split("=", 1)[1]
    async with sessions() as session:
        stored = await session.get(ConsoleSession, token_hash(token))
        raw = await session.scalar(select(func.count()).where(ConsoleSession.token_hash == token))
    assert stored is not None
    assert stored.role == "investigator"
    assert console.investigator not in stored.key_hash
    assert raw == 0  # the token itself is stored nowhere
    queue = await console.client.get("/console/queue")
    assert queue.status_code == 200
    assert "Queue: cases waiting on a person" in queue.text


async def test_a_wrong_key_is_refused_and_recorded(
    console: Console, sessions: async_sessionmaker[AsyncSession]
) -> None:
    refused = await console.sign_in("csae_not_a_key")
    assert refused.status_code == 401
    assert "That key was not accepted" in refused.text
    assert COOKIE not in refused.cookies
    unsigned = await console.client.get("/console/queue")
    assert (unsigned.status_code, unsigned.headers["location"]) == (303, "/console/sign-in")
    entries = await _entries(
        sessions, lambda a: (a.action == "console.sign_in") & (a.outcome == "401")
    )
    assert entries
    assert all(e.actor == "anonymous" for e in entries)


async def test_every_console_form_needs_its_csrf_token(
    console: Console, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # Sign-in without the token its form set in a cookie
    form = await console.client.get("/console/sign-in")
    assert form.status_code == 200
    forged = await console.client.post(
        "/console/sign-in", data={"csrf": "0" * 43, "key": console.investigator}
    )
    assert forged.status_code == 403
    assert COOKIE not in forged.cookies
    await console.sign_in(console.investigator)
    case_id = await _case(sessions)
    page = await console.client.get(f"/console/cases/{case_id}")
    assert page.status_code == 200
    fields = {"to": "submitted", "external_reference": "KNT-1", "packet_version": "1"}
    for csrf in (None, "", "not-the-token", console.csrf(page)[:-1] + "0"):
        refused = await console.client.post(
            f"/console/cases/{case_id}/transitions",
            data=fields | ({"csrf": csrf} if csrf is not None else {}),
        )
        assert refused.status_code == 403, csrf
        assert "CSRF" in refused.text
    after = await console.client.get(f"/console/cases/{case_id}")
    assert "· ready" in after.text  # nothing moved
    signed_out = await console.client.post("/console/sign-out", data={"csrf": "x"})
    assert signed_out.status_code == 403
    refusals = await _entries(sessions, lambda a: a.action == "console.csrf")
    assert len(refusals) >= 6
    assert {e.outcome for e in refusals} == {"403"}
