"""The case API under hostile input: no 5xx from anything, the key checked before the body is
read, bounded bodies and query strings, signed cursors, errors that quote nothing."""

import base64
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.referral import store
from services.referral.api import MAX_BODY_BYTES, create_app
from services.referral.keys import Role, create_key
from tests.factories import make_flag, signal
from tests.infra import isolated_settings
from tests.integration.test_cases_store import routed


@dataclass(frozen=True)
class Keys:
    viewer: str
    investigator: str
    admin: str

    def header(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(self, role)}"}


def _keys(tmp_path: Path) -> tuple[Path, Keys]:
    path = tmp_path / "keys"
    made = Keys(*(create_key(path, role) for role in Role))
    return path, made


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Keys, httpx.AsyncClient]]:
    path, keys = _keys(tmp_path)
    app = create_app(isolated_settings(database_url, api_keys_file=path))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
    ):
        yield keys, client


async def _ready_case(sessions: async_sessionmaker[AsyncSession]) -> UUID:
    routing = routed(make_flag(signals=[signal("coercion", 0.9)]))
    async with sessions() as session, session.begin():
        await store.record_decisions(session=session, decisions=[routing.decision])
        applied = await store.apply_tasks(
            session=session, tasks=list(routing.tasks), now=routing.decision.decided_at
        )
    return applied[0].case_id


@pytest.fixture
async def with_case(
    api: tuple[Keys, httpx.AsyncClient], sessions: async_sessionmaker[AsyncSession]
) -> tuple[Keys, httpx.AsyncClient, UUID]:
    """The API's keys and client, and a case that is ready."""
    return (*api, await _ready_case(sessions))


# --- the route x role matrix -------------------------------------------------------------------

_ANSWER = {"viewer": 403, "investigator": 200, "admin": 200}
_LIST = {"viewer": 200, "investigator": 200, "admin": 200}
_ADMIN = {"viewer": 403, "investigator": 403, "admin": 200}


async def test_every_route_answers_each_caller_as_its_role_allows(
    api: tuple[Keys, httpx.AsyncClient], sessions: async_sessionmaker[AsyncSession]
) -> None:
    keys, client = api
    case_id = await _ready_case(sessions)
    flag_id = uuid4()
    routes: list[tuple[str, str, dict[str, int]]] = [
        ("GET", "/v1/cases", _LIST),
        ("GET", f"/v1/cases/{case_id}", _ANSWER),
        ("GET", f"/v1/cases/{case_id}/packets/1", _ANSWER),
        ("GET", f"/v1/flags/{flag_id}", {**_ANSWER, "investigator": 404, "admin": 404}),
        ("GET", "/v1/breakers", _ADMIN),
    ]
    callers = {
        "no key": {},
        "malformed header": {"Authorization": "Bearer"},
        "other scheme": {"Authorization": f"Basic {keys.admin}"},
        "wrong key": {"Authorization": "Bearer csae_not_a_key"},
    }
    for method, path, by_role in routes:
        for name, headers in callers.items():
            response = await client.request(method, path, headers=headers)
            assert response.status_code == 401, (path, name)
            assert response.headers["www-authenticate"] == "Bearer"
        for role, expected in by_role.items():
            response = await client.request(method, path, headers=keys.header(role))
            assert response.status_code == expected, (path, role)

    # Writes, with a well-formed body and with malformed ones: the key and role come first.
    move = f"/v1/cases/{case_id}/transitions"
    close = "/v1/breakers/some-system/1.0/close"
    bodies: dict[str, bytes] = {
        "malformed JSON": b"{not json",
        "wrong shape": b'{"to": "nowhere", "extra": 1}',
        "empty": b"",
    }
    for path, allowed, valid in [
        (move, {"investigator", "admin"}, {"to": "dismissed", "note": "n"}),
        (close, {"admin"}, {"note": "calm again"}),
    ]:
        for name, headers in callers.items():
            for content in [json.dumps(valid).encode(), *bodies.values()]:
                response = await client.post(path, content=content, headers=headers)
                assert response.status_code == 401, (path, name, content)
        for role in ("viewer", "investigator", "admin"):
            for content in bodies.values():
                response = await client.post(path, content=content, headers=keys.header(role))
                expected = 422 if role in allowed else 403
                assert response.status_code == expected, (path, role, content)
    # The valid bodies, by the roles allowed: a move from ready to dismissed is illegal (409),
    # and there is no open breaker for that source (404).
    for role in ("investigator", "admin"):
        moved = await client.post(
            move, json={"to": "dismissed", "note": "n"}, headers=keys.header(role)
        )
        assert moved.status_code == 409, role
    closed = await client.post(close, json={"note": "calm"}, headers=keys.header("admin"))
    assert closed.status_code == 404


# --- the body is not read before the key is checked ---------------------------------------------


async def test_a_huge_body_without_a_key_is_refused_unread(
    database_url: str, tmp_path: Path
) -> None:
    path, keys = _keys(tmp_path)
    app = create_app(isolated_settings(database_url, api_keys_file=path))
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * (1 << 20), "more_body": pulled < 50}

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    def scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": f"/v1/cases/{uuid4()}/transitions",
            "raw_path": b"",
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "server": ("api", 80),
            "client": ("test", 1),
        }

    async with app.router.lifespan_context(app):
        # 50 MB announced, no key: 401, not a byte read.
        await app(scope([(b"content-length", str(50 << 20).encode())]), receive, send)
        assert (sent[0]["status"], pulled) == (401, 0)
        # With a viewer's key: 403, unread.
        sent.clear()
        viewer = [(b"authorization", f"Bearer {keys.viewer}".encode())]
        await app(scope([*viewer, (b"content-length", str(50 << 20).encode())]), receive, send)
        assert (sent[0]["status"], pulled) == (403, 0)
        # An investigator's 50 MB: 413 from the announced length, unread.
        sent.clear()
        investigator = [(b"authorization", f"Bearer {keys.investigator}".encode())]
        await app(
            scope([*investigator, (b"content-length", str(50 << 20).encode())]), receive, send
        )
        assert (sent[0]["status"], pulled) == (413, 0)
        # Chunked with no length: read only up to the cap, then 413.
        sent.clear()
        await app(scope(investigator), receive, send)
        assert sent[0]["status"] == 413
        assert pulled == 1, "one 1 MiB chunk is past the cap: nothing more is read"


# --- regressions from the outside test ----------------------------------------------------------


async def test_parameters_past_what_the_database_holds_are_refused_not_failed(
    with_case: tuple[Keys, httpx.AsyncClient, UUID],
) -> None:
    keys, client, case_id = with_case
    auth = keys.header("investigator")
    for version in ["2147483648", "0", "-1", "99999999999999999999"]:
        response = await client.get(f"/v1/cases/{case_id}/packets/{version}", headers=auth)
        assert response.status_code in (400, 404, 422), version
    for since in [
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "0.5",
        "1700000000",
        "2024-01-01T00:00:00",  # no timezone
    ]:
        response = await client.get("/v1/cases", params={"since": since}, headers=auth)
        assert response.status_code == 422, since
        assert since not in response.text
    edge = await client.get("/v1/cases", params={"since": "0001-01-01T00:00:00Z"}, headers=auth)
    assert edge.status_code == 200
    for force in ["\x00", "a\x00b", "\x07", "x" * 65, "Kent; DROP"]:
        response = await client.get("/v1/cases", params={"force": force}, headers=auth)
        assert response.status_code == 422, force
    for system in ["a%00b", "%07"]:
        response = await client.post(
            f"/v1/breakers/{system}/1/close", json={"note": "n"}, headers=keys.header("admin")
        )
        assert response.status_code in (404, 422), system
    too_big = {"to": "submitted", "external_reference": "KNT-1", "packet_version": 2**31}
    response = await client.post(f"/v1/cases/{case_id}/transitions", json=too_big, headers=auth)
    assert response.status_code == 422
    stale = {"to": "dismissed", "note": "n", "expected_updated_at": "9999-12-31T23:59:59-14:00"}
    response = await client.post(f"/v1/cases/{case_id}/transitions", json=stale, headers=auth)
    assert response.status_code == 422


async def test_a_legal_move_with_a_nul_in_its_note_is_refused_and_changes_nothing(
    with_case: tuple[Keys, httpx.AsyncClient, UUID],
) -> None:
    keys, client, case_id = with_case
    auth = keys.header("investigator")
    body = {"to": "submitted", "external_reference": "KNT-1", "packet_version": 1, "note": "a\0b"}
    response = await client.post(f"/v1/cases/{case_id}/transitions", json=body, headers=auth)
    assert response.status_code in (400, 422)
    case = (await client.get(f"/v1/cases/{case_id}", headers=auth)).json()
    assert case["status"] == "ready"


async def test_forged_and_altered_cursors_answer_400(
    api: tuple[Keys, httpx.AsyncClient], sessions: async_sessionmaker[AsyncSession]
) -> None:
    keys, client = api
    auth = keys.header("viewer")
    for _ in range(2):
        await _ready_case(sessions)
    page = (await client.get("/v1/cases", params={"limit": 1}, headers=auth)).json()
    issued = page["next_cursor"]
    assert issued is not None
    assert (
        await client.get("/v1/cases", params={"cursor": issued}, headers=auth)
    ).status_code == 200
    body, mac = issued.split(".")
    payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()

    def b64(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    some = uuid4()
    with_nul = payload.replace("|", "\x00|", 1)
    forged = [
        b64(f"0001-01-01T00:00:00+14:00|{some}"),  # the old, unsigned format
        f"{b64('created|0001-01-01T00:00:00+14:00|' + str(some))}.{mac}",  # altered, old mac
        f"{b64('created|2024-01-01T00:00:00|' + str(some))}.{mac}",  # no timezone
        f"{b64(with_nul)}.{mac}",  # a NUL
        f"{b64('anything at all')}.{mac}",
        issued[:-2] + ("AA" if not issued.endswith("AA") else "BB"),  # a bit of the mac flipped
        "x" * 60_000,  # long (httpx refuses to send 1 MB; past 4 KiB the query cap answers)
        "\x00",
        "not.a.cursor",
    ]
    for cursor in forged:
        response = await client.get("/v1/cases", params={"cursor": cursor}, headers=auth)
        assert response.status_code == 400, cursor[:80]
        assert cursor[:200] not in response.text
    overdue = await client.get(
        "/v1/cases", params={"cursor": issued, "overdue": "true"}, headers=auth
    )
    assert overdue.status_code == 400, "a cursor of one ordering is refused by the other"


async def test_errors_quote_nothing_that_was_sent(
    with_case: tuple[Keys, httpx.AsyncClient, UUID],
) -> None:
    keys, client, case_id = with_case
    auth = keys.header("investigator")
    marker = "zq-secret-text-zq"
    probes = [
        client.get("/v1/cases", params={"status": marker}, headers=auth),
        client.get(f"/v1/cases/{marker}", headers=auth),
        client.get(f"/v1/flags/{marker}", headers=auth),
        client.post(
            f"/v1/cases/{case_id}/transitions",
            json={"to": "dismissed", "note": f"data:image/png;base64,{marker}"},
            headers=auth,
        ),
        client.post(
            f"/v1/cases/{case_id}/transitions",
            json={"to": "dismissed", "note": "n", marker: 1},
            headers=auth,
        ),
        client.post(
            f"/v1/cases/{case_id}/transitions",
            content=f'{{"to": "{marker}'.encode(),
            headers={**auth, "Content-Type": "application/json"},
        ),
    ]
    for probe in probes:
        response = await probe
        assert response.status_code == 422, response.request.url
        assert marker not in response.text
        for error in response.json()["detail"]:
            assert set(error) == {"loc", "type", "msg"}


async def test_an_over_long_query_string_or_body_is_refused(
    with_case: tuple[Keys, httpx.AsyncClient, UUID],
) -> None:
    keys, client, case_id = with_case
    auth = keys.header("investigator")
    long = await client.get("/v1/cases", params={"force": "k" * 5000}, headers=auth)
    assert long.status_code == 400
    big = {"to": "dismissed", "note": "n" * (MAX_BODY_BYTES + 1)}
    response = await client.post(f"/v1/cases/{case_id}/transitions", json=big, headers=auth)
    assert response.status_code == 413
    nested = b"[" * 60_000 + b"]" * 60_000
    response = await client.post(
        f"/v1/cases/{case_id}/transitions",
        content=nested[:30_000] + nested[-30_000:],
        headers={**auth, "Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422)


async def test_an_unhandled_error_logs_its_type_and_id_and_no_values(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, keys = _keys(tmp_path)
    app = create_app(isolated_settings(database_url, api_keys_file=path))
    marker = "zq-value-zq"

    @app.get("/boom")
    async def boom(q: str) -> None:
        raise RuntimeError(f"driver said {q}")

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
    ):
        with caplog.at_level(logging.DEBUG):
            response = await client.get("/boom", params={"q": marker}, headers=keys.header("admin"))
    assert response.status_code == 500
    assert marker not in response.text
    served = [r for r in caplog.records if not r.name.startswith("httpx")]  # the client's own
    assert all(marker not in r.getMessage() and not r.exc_info for r in served)
    (record,) = [r for r in caplog.records if r.getMessage() == "request failed"]
    assert record.exc_info is None
    assert getattr(record, "error", None) == "RuntimeError"


def test_the_openapi_documents_every_answer(database_url: str, tmp_path: Path) -> None:
    app = create_app(isolated_settings(database_url, api_keys_file=tmp_path / "keys"))
    paths = app.openapi()["paths"]
    for path, methods in paths.items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in methods.items():
            documented = set(operation["responses"])
            assert {"400", "401"} <= documented, (method, path)
            if path != "/v1/cases":  # every role may list
                assert "403" in documented, (method, path)
            if method == "post":
                assert {"413", "422"} <= documented, (method, path)


# --- schemathesis against a real server ---------------------------------------------------------


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[tuple[str, Keys, dict[str, Any]]]:
    """The API on a free port, served by uvicorn in a thread of its own."""
    path, keys = _keys(tmp_path)
    app = create_app(isolated_settings(database_url, api_keys_file=path))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", keys, app.openapi()
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


EXAMPLES = 25
"""Per operation, role and mode: enough to find the classes of input that once gave 500s, small
enough that the suite stays fast."""


def _explore(
    operation: Any, headers: dict[str, str], mode: GenerationMode, base_url: str
) -> list[int]:
    """The statuses schemathesis's cases for `operation` got, `EXAMPLES` of them at most."""
    seen: list[int] = []

    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        seen.append(case.call(base_url=base_url, headers=headers).status_code)

    try:
        run()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # nothing in the operation to make invalid
    return seen


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    served: tuple[str, Keys, dict[str, Any]],
) -> None:
    base_url, keys, document = served
    schema = schemathesis.openapi.from_dict(document)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # the API's own OpenAPI is valid
        operations.append(result.ok())
    assert len(operations) >= 7
    failures: list[str] = []
    statuses: dict[int, int] = {}
    for operation in operations:
        documented = {int(status) for status in operation.definition.raw["responses"]}
        for role in ("viewer", "investigator", "admin"):
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                for status in _explore(operation, keys.header(role), mode, base_url):
                    statuses[status] = statuses.get(status, 0) + 1
                    if status >= 500 or status not in documented:
                        failures.append(f"{operation.label} {role} {mode}: {status}")
    assert failures == []
    assert sum(statuses.values()) > 200, statuses
    assert {200, 403, 404, 422} <= set(statuses), statuses
