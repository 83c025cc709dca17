"""The console's sessions, CSRF checks, roles and audit trail over the real PostgreSQL (the
browser tests in tests/e2e/test_console_browser.py drive the same pages in Chromium)."""

import asyncio
import hashlib
import html
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.referral import audit, queries, store
from services.referral.api import MAX_BODY_BYTES, create_app
from services.referral.console.sessions import COOKIE, token_hash
from services.referral.console.views import QUEUE_PAGE
from services.referral.enums import CaseStatus
from services.referral.keys import Role, create_key, key_hash, revoke_key
from services.referral.models import AuditRecord, CaseTransition, ConsoleSession
from tests.factories import make_flag, signal
from tests.infra import isolated_settings
from tests.integration.test_cases_store import NOW, PACKETS, routed

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


@asynccontextmanager
async def _serve(
    database_url: str, tmp_path: Path, base: str, holder: str | None = None
) -> AsyncIterator[Console]:
    """An API process (in this one) with an investigator key (held by `holder`) and a viewer
    key, on a clock the test sets; its console reached at `base`."""
    keys = tmp_path / "keys"
    investigator = create_key(keys, Role.INVESTIGATOR, holder=holder)
    viewer = create_key(keys, Role.VIEWER)
    now = [datetime.now(UTC)]
    settings = isolated_settings(database_url, api_keys_file=keys, console_idle_seconds=600)
    app = create_app(settings, clock=lambda: now[0])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base) as client:
            yield Console(client, keys, investigator, viewer, now)


@pytest.fixture
async def console(database_url: str, tmp_path: Path) -> AsyncIterator[Console]:
    async with _serve(database_url, tmp_path, "http://console") as served:
        yield served


async def _case(
    sessions: async_sessionmaker[AsyncSession],
    *,
    signals: list[dict[str, object]] | None = None,
    **flag: object,
) -> UUID:
    """A case from one synthetic flag (a coercion referral to Kent Police unless told)."""
    account = f"acct-console-{uuid4().hex[:8]}"
    made = routed(
        make_flag(
            subject={"account_id": account},
            signals=signals or [signal("coercion", 0.9)],
            **flag,
        )
    )
    async with sessions() as session, session.begin():
        await store.record_decisions(session=session, decisions=[made.decision])
        applied = await store.apply_tasks(
            session=session, tasks=list(made.tasks), now=made.decision.decided_at
        )
    return applied[0].case_id


REVIEW: dict[str, Any] = {
    "signals": [signal("grooming", 0.5)],
    "source": {"system": "report-intake", "version": "1.0.0", "kind": "user_report"},
}
"""A flag the default policy sends for a person's review."""
DANGER: dict[str, Any] = {"signals": [signal("grooming", 0.9, immediate_danger=True)]}


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
    token = console.csrf(page)
    altered = token[:-1] + ("1" if token[-1] == "0" else "0")  # one character off, always
    for csrf in (None, "", "not-the-token", altered):
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


async def test_an_idle_session_is_signed_out_and_deleted(
    console: Console, sessions: async_sessionmaker[AsyncSession]
) -> None:
    signed = await console.sign_in(console.investigator)
    token = signed.cookies[COOKIE]
    console.clock[0] += timedelta(seconds=599)
    assert (await console.client.get("/console/queue")).status_code == 200  # seen: clock reset
    console.clock[0] += timedelta(seconds=599)
    assert (await console.client.get("/console/queue")).status_code == 200
    console.clock[0] += timedelta(seconds=601)
    ended = await console.client.get("/console/queue")
    assert (ended.status_code, ended.headers["location"]) == (303, "/console/sign-in?ended=idle")
    async with sessions() as session:
        assert await session.get(ConsoleSession, token_hash(token)) is None
    console.client.cookies.set(COOKIE, token, path="/console")
    refresh = await console.client.get("/console/queue/rows")
    assert refresh.status_code == 401  # the queue's script goes back to the sign-in page
    notice = await console.client.get("/console/sign-in?ended=idle")
    assert "signed out after a while without activity" in notice.text


async def test_the_queue_refreshing_itself_keeps_no_one_signed_in(console: Console) -> None:
    await console.sign_in(console.investigator)
    console.clock[0] += timedelta(seconds=400)
    assert (await console.client.get("/console/queue/rows")).status_code == 200
    console.clock[0] += timedelta(seconds=400)  # 800 s since the last page a person opened
    assert (await console.client.get("/console/queue/rows")).status_code == 401


async def test_revoking_the_key_ends_its_sessions(console: Console) -> None:
    await console.sign_in(console.investigator)
    assert (await console.client.get("/console/queue")).status_code == 200
    # Revoked as of the app's own clock (the test sets it; it stands still meanwhile).
    revoke_key(console.keys, key_hash(console.investigator)[:12], at=console.clock[0])
    deadline = time.monotonic() + 15  # the keyring re-reads its file within 2 s
    while (answer := await console.client.get("/console/queue")).status_code == 200:
        assert time.monotonic() < deadline, "a revoked key's session still worked after 15 s"
        await asyncio.sleep(0.2)
    assert answer.headers["location"].startswith("/console/sign-in")


async def test_the_session_cookie_is_secure_under_tls(database_url: str, tmp_path: Path) -> None:
    async with _serve(database_url, tmp_path, "https://console") as tls:
        signed = await tls.sign_in(tls.investigator)
    cookies = signed.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith(COOKIE + "="))
    assert "Secure" in session
    assert "HttpOnly" in session


async def test_console_bodies_are_bounded_before_they_are_read(console: Console) -> None:
    form = await console.client.get("/console/sign-in")
    big = {"csrf": console.csrf(form), "key": "k" * (MAX_BODY_BYTES + 10)}
    assert (await console.client.post("/console/sign-in", data=big)).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(80):
            yield b"k" * 1024

    chunked = await console.client.post(
        "/console/sign-in",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert chunked.status_code == 413
    await console.sign_in(console.investigator)
    moved = await console.client.post(
        f"/console/cases/{uuid4()}/transitions", data={"note": "n" * (MAX_BODY_BYTES + 1)}
    )
    assert moved.status_code == 413


async def test_a_viewer_sees_the_queue_without_identifiers_and_no_case(
    console: Console, sessions: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await _case(sessions, **DANGER)
    async with sessions() as session:
        account = (await queries.get_case(session=session, case_id=case_id)).subject_account_id  # type: ignore[union-attr]
    await console.sign_in(console.viewer)
    queue = await console.client.get("/console/queue?priority=P0")
    assert queue.status_code == 200
    assert str(case_id)[:8] in queue.text
    assert account not in queue.text
    assert f"/console/cases/{case_id}" not in queue.text  # no link to what it may not open
    for path in (f"/console/cases/{case_id}", f"/console/cases/{case_id}/packets/1/print"):
        refused = await console.client.get(path)
        assert refused.status_code == 403, path
        assert account not in refused.text
    page = await console.client.get("/console/queue")
    moved = await console.client.post(
        f"/console/cases/{case_id}/transitions",
        data={
            "csrf": console.csrf(page),
            "to": "submitted",
            "external_reference": "X-1",
            "packet_version": "1",
        },
    )
    assert moved.status_code == 403
    async with sessions() as session:
        still = await queries.get_case(session=session, case_id=case_id)
    assert still is not None
    assert still.status.value == "ready"


async def test_the_queue_puts_p0_first_and_marks_how_late(
    console: Console, sessions: async_sessionmaker[AsyncSession]
) -> None:
    force = f"test-force-{uuid4().hex[:6]}"
    later = await _case(sessions, signals=[signal("coercion", 0.9)])
    first = await _case(sessions, **DANGER)
    async with sessions() as session, session.begin():
        for case_id in (later, first):
            case = await queries.get_case(session=session, case_id=case_id)
            assert case is not None
            case.force_id = force  # both in a force of their own, for this test's filter
    await console.sign_in(console.investigator)
    console.clock[0] = NOW + timedelta(minutes=29)  # 30 minutes after the flags' detection
    queue = await console.client.get(f"/console/queue?force={force}")
    assert queue.status_code == 200
    assert queue.text.index(str(first)[:8]) < queue.text.index(str(later)[:8])
    # The P0 was due to be sent 15 minutes after detection: 30 minutes on it is 15 min late.
    assert "Overdue by 15 min" in queue.text
    assert "ready: 15 min late" in queue.text
    assert "ready: due in 23 h 30 min" in queue.text  # the P1: 24 hours to send it
    rows = await console.client.get(f"/console/queue/rows?force={force}&priority=P1")
    assert str(later)[:8] in rows.text
    assert str(first)[:8] not in rows.text
    bad = await console.client.get("/console/queue?priority=P9")
    assert bad.status_code == 400


async def test_a_review_is_approved_or_dismissed_with_its_reason(
    console: Console, sessions: async_sessionmaker[AsyncSession]
) -> None:
    approve, dismiss = await _case(sessions, **REVIEW), await _case(sessions, **REVIEW)
    await console.sign_in(console.investigator)
    page = await console.client.get(f"/console/cases/{dismiss}")
    assert "0808 800 5000" in page.text  # the NSPCC Helpline, for a reviewer unsure
    assert "No packet yet" in page.text
    form = _form(page.text, "dismissed")
    unreasoned = await console.client.post(
        f"/console/cases/{dismiss}/transitions", data=form | {"note": " "}
    )
    assert unreasoned.status_code == 400
    assert "requires a note giving the reason" in unreasoned.text
    dismissed = await console.client.post(
        f"/console/cases/{dismiss}/transitions",
        data=form | {"note": "a misread of an ordinary chat"},
        follow_redirects=True,
    )
    assert "Done: the case moved to dismissed." in dismissed.text
    assert "a misread of an ordinary chat" in dismissed.text  # in the history
    page = await console.client.get(f"/console/cases/{approve}")
    approved = await console.client.post(
        f"/console/cases/{approve}/transitions",
        data=_form(page.text, "ready"),
        follow_redirects=True,
    )
    assert "Done: the case moved to ready." in approved.text
    assert "Packet version 1" in approved.text


async def test_a_move_someone_made_first_is_explained_and_keeps_what_was_typed(
    console: Console, sessions: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await _case(sessions)
    await console.sign_in(console.investigator)
    page = await console.client.get(f"/console/cases/{case_id}")
    form = _form(page.text, "submitted")
    async with sessions() as session, session.begin():  # a colleague, through the API
        await store.transition_case(
            session=session,
            case_id=case_id,
            to=CaseStatus.SUBMITTED,
            actor="investigator:colleague",
            now=datetime.now(UTC),
            packets=PACKETS,
            external_reference="KNT-FIRST",
            packet_version=1,
        )
    late = await console.client.post(
        f"/console/cases/{case_id}/transitions",
        data=form | {"external_reference": "KNT-SECOND"},
    )
    assert late.status_code == 409
    assert "Someone else moved this case first" in late.text
    assert "It is now <strong>submitted</strong>" in late.text
    assert "investigator:colleague" in late.text
    assert '<pre class="typed">KNT-SECOND</pre>' in late.text  # not lost, though moot now
    async with sessions() as session:
        case = await queries.get_case(session=session, case_id=case_id)
    assert case is not None
    assert case.external_reference == "KNT-FIRST"
    entries = await _entries(
        sessions, lambda a: (a.case_id == case_id) & (a.action == "case.transition")
    )
    assert [e.outcome for e in entries] == ["409"]


async def test_every_page_view_and_move_is_on_the_audit_trail(
    console: Console, sessions: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await _case(sessions)
    await console.sign_in(console.investigator)
    await console.client.get("/console/queue")
    page = await console.client.get(f"/console/cases/{case_id}")
    await console.client.get(f"/console/cases/{case_id}/packets/1/print")
    await console.client.post(
        f"/console/cases/{case_id}/transitions",
        data=_form(page.text, "submitted") | {"external_reference": "KNT-2026-77"},
    )
    await console.client.post("/console/sign-out", data={"csrf": console.csrf(page)})
    actor = f"investigator:{key_hash(console.investigator)[:12]}"
    # The case's own entries from the worker (opened, ready) are the system's, not the console's.
    entries = await _entries(sessions, lambda a: (a.case_id == case_id) & (a.actor == actor))
    assert [(e.action, e.route, e.outcome) for e in entries] == [
        ("case.read", "GET /console/cases/{case_id}", "200"),
        ("packet.read", "GET /console/cases/{case_id}/packets/{version}/print", "200"),
        ("case.transition", "POST /console/cases/{case_id}/transitions", "200"),
    ]
    # What was sent: the text the console shows, hashed as the API serves it for that version.
    served = await console.client.get(
        f"/v1/cases/{case_id}/packets/1?format=text",
        headers={"Authorization": f"Bearer {console.investigator}"},
    )
    receipt = entries[2].detail.pop("receipt")
    assert UUID(receipt)
    assert entries[2].detail == {
        "to": "submitted",
        "from": "ready",
        "status": "submitted",
        "destination": "police",
        "format": "text",
        "sha256": hashlib.sha256(served.content).hexdigest(),
    }
    assert "KNT-2026-77" not in str([e.detail for e in entries])  # no reference in the trail
    mine = await _entries(sessions, lambda a: a.actor == actor)
    assert {"console.sign_in", "cases.list", "console.sign_out"} <= {e.action for e in mine}
    async with sessions() as session:
        verified = await audit.verify_stored(session=session)
    assert verified.broken is None


async def test_the_audit_trail_names_the_console_key_and_its_holder_the_history_the_key(
    database_url: str, tmp_path: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await _case(sessions)
    async with _serve(database_url, tmp_path, "http://console", holder="Desk 9") as console:
        await console.sign_in(console.investigator)
        page = await console.client.get(f"/console/cases/{case_id}")
        moved = await console.client.post(
            f"/console/cases/{case_id}/transitions",
            data=_form(page.text, "submitted") | {"external_reference": "KNT-2026-78"},
        )
        assert moved.status_code == 303
    key = f"investigator:{key_hash(console.investigator)[:12]}"
    entries = await _entries(sessions, lambda a: a.actor == f"{key} (Desk 9)")
    assert {"console.sign_in", "case.read", "case.transition"} <= {e.action for e in entries}
    async with sessions() as session:
        history = set(
            await session.scalars(
                select(CaseTransition.actor).where(CaseTransition.case_id == case_id)
            )
        )
    assert key in history  # the move, by the key alone: the holder is for the audit only
    assert not [actor for actor in history if "Desk 9" in actor]


async def test_pages_are_served_under_a_strict_policy_with_no_inline_code(
    console: Console, sessions: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await _case(sessions, **DANGER)
    sign_in = await console.client.get("/console/sign-in")
    await console.sign_in(console.investigator)
    pages = [sign_in]
    for path in (
        "/console/queue",
        f"/console/cases/{case_id}",
        f"/console/cases/{case_id}/packets/1/print",
    ):
        pages.append(await console.client.get(path))
    for page in pages:
        assert page.status_code == 200
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy
        assert "img-src 'none'" in policy
        assert "unsafe-inline" not in policy
        assert page.headers["cache-control"] == "no-store"
        assert '<html lang="en">' in page.text
        assert "<img" not in page.text
        assert " style=" not in page.text
        assert "<style" not in page.text
        assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", page.text))
    danger = pages[2].text
    assert danger.index("A CHILD MAY BE IN IMMEDIATE DANGER: CALL 999 NOW.") < danger.index(
        "Moves you can make now"
    )
    for asset, kind in (("console.css", "text/css"), ("console.js", "javascript")):
        served = await console.client.get(f"/console/static/{asset}")
        assert served.status_code == 200
        assert kind in served.headers["content-type"]
        assert "img-src 'none'" in served.headers["content-security-policy"]


def _form(page: str, to: str) -> dict[str, str]:
    """The fields of the case page's form for the move to `to`, as the browser would send."""
    start = page.index(f'id="move-{to}"')
    form = page[start : page.index("</form>", start)]
    fields = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', form))
    return {k: html.unescape(v) for k, v in fields.items()}


async def test_a_session_works_on_every_api_process(database_url: str, tmp_path: Path) -> None:
    async with (
        _serve(database_url, tmp_path / "a", "http://console") as first,
        _serve(database_url, tmp_path / "b", "http://console") as second,
    ):
        # Both processes read one keys file, as behind one address.
        second.keys.write_text(first.keys.read_text())
        second_app = second.client
        signed = await first.sign_in(first.investigator)
        token = signed.cookies[COOKIE]
        second_app.cookies.set(COOKIE, token, path="/console")
        deadline = time.monotonic() + 15  # the second keyring re-reads its file within 2 s
        while (queue := await second_app.get("/console/queue")).status_code != 200:
            assert time.monotonic() < deadline, "the other process did not know the session"
            await asyncio.sleep(0.2)
        out = await second_app.post("/console/sign-out", data={"csrf": second.csrf(queue)})
        assert out.status_code == 303
        ended = await first.client.get("/console/queue")
        assert ended.status_code == 303  # signed out there: signed out here too
        assert ended.headers["location"].startswith("/console/sign-in")


async def test_the_queue_pages_through_every_waiting_case_once(
    console: Console, sessions: async_sessionmaker[AsyncSession]
) -> None:
    force = f"test-force-{uuid4().hex[:6]}"
    made = {await _case(sessions) for _ in range(QUEUE_PAGE + 3)}
    async with sessions() as session, session.begin():
        for case_id in made:
            case = await queries.get_case(session=session, case_id=case_id)
            assert case is not None
            case.force_id = force
    await console.sign_in(console.investigator)
    first = await console.client.get(f"/console/queue?force={force}")
    shown = re.findall(r'href="/console/cases/([0-9a-f-]{36})"', first.text)
    assert len(shown) == QUEUE_PAGE
    after = re.search(r'href="/console/queue\?([^"]+)">Next page', first.text)
    assert after is not None
    second = await console.client.get(f"/console/queue?{html.unescape(after.group(1))}")
    rest = re.findall(r'href="/console/cases/([0-9a-f-]{36})"', second.text)
    assert len(rest) == 3
    assert "Next page" not in second.text
    assert {UUID(c) for c in shown + rest} == made
    forged = await console.client.get(f"/console/queue?force={force}&after=P1|yesterday|x")
    assert forged.status_code == 400
