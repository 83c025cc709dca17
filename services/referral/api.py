"""The referral API: case lookups over PostgreSQL, behind bearer keys."""

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Protocol
from uuid import UUID, uuid4

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, ProcessCollector, make_asgi_app
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.base import PRINTABLE, Label
from schemas.packets import NSPCC_GUIDANCE
from schemas.referral import Criterion, DestinationKind, Priority
from services.domain.breaker import BreakerSettings
from services.pipeline import logs
from services.pipeline.metrics import Metrics, watch_event_loop
from services.pipeline.settings import Settings
from services.pipeline.startup import force_directory, organisations
from services.referral import audit, breakers, key_uses, queries, renderings, store
from services.referral.console import views as console
from services.referral.database import new_engine, new_sessionmaker
from services.referral.enums import CaseStatus
from services.referral.exceptions import (
    Forbidden,
    IllegalTransition,
    InvalidRequest,
    NotFound,
    ReferralError,
    http_status,
)
from services.referral.key_uses import KeyUses
from services.referral.keys import Keyring, Role, audit_actor
from services.referral.lifecycle import PERSON_TRANSITIONS
from services.referral.models import Breaker, Case
from services.referral.packets import Reporter
from services.referral.renderings import Format
from services.referral.requests import (
    INT32_MAX,
    NOTE_TEXT,
    Instant,
    TransitionRequest,
    no_media,
    safe_errors,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
"""A request body past this is refused (413) before it is read: a move or a close is a few
hundred bytes."""
MAX_QUERY_BYTES = 4096
"""A query string past this is refused (400): every filter and a cursor fit in a few hundred."""
MAX_CURSOR_CHARS = 256
DETAIL_PAGE = 200
"""The latest moves and flags a case read holds by default (`limit`)."""
MAX_DETAIL_PAGE = 1000
MAX_INT64 = 2**63 - 1


Text64 = Annotated[str, Field(min_length=1, max_length=64, pattern=f"^{PRINTABLE}+$")]
"""A short name from a request path: no control characters (PostgreSQL cannot store U+0000)."""


class CaseSummary(BaseModel):
    """A case without personal identifiers."""

    model_config = ConfigDict(from_attributes=True)

    case_id: UUID
    status: CaseStatus
    destination: str
    destination_key: str
    force_id: str | None
    mechanism: str | None
    country: str | None
    priority: str
    criteria: list[str]
    first_detected_at: datetime
    created_at: datetime
    updated_at: datetime
    due_at: datetime | None
    """The deadline of the stage the case waits in; None when nothing is due from us."""
    due_stage: str | None
    review_due_at: datetime | None
    ready_due_at: datetime | None
    submitted_due_at: datetime
    reviewed_at: datetime | None
    ready_at: datetime | None
    submitted_at: datetime | None
    acknowledged_at: datetime | None
    closed_at: datetime | None
    dismissed_at: datetime | None
    packet_version: int
    submitted_version: int | None


class TransitionView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    actor: str
    from_status: str | None
    to_status: str
    external_reference: str | None
    note: str | None
    packet_version: int | None


class _Move(TransitionView):
    """A move as the case read has it: with its id, which says where earlier moves begin."""

    transition_id: int


_MOVES = TypeAdapter(list[_Move])


class ReceiptView(BaseModel):
    """What was sent for the case: the version and rendering, the sha256 of its bytes as this
    API serves them (`X-Packet-SHA256`), when, by whom, and the reference that came back."""

    model_config = ConfigDict(from_attributes=True)

    receipt_id: UUID
    packet_version: int
    format: str
    sha256: str
    size: int
    destination_key: str
    sent_at: datetime
    actor: str
    external_reference: str


_RECEIPTS = TypeAdapter(list[ReceiptView])


class CaseDetail(CaseSummary):
    org_id: str
    subject_account_id: str
    external_reference: str | None
    flag_ids: list[UUID]
    packet_versions: list[int]
    allowed_transitions: list[CaseStatus]
    transitions: list[TransitionView]
    """The latest moves, at most `limit` of them, oldest first."""
    transitions_total: int
    """How many moves the case has."""
    transitions_before: int | None
    """Earlier moves exist: ask again with `transitions_before` set to this for them."""
    flags_total: int
    """How many flags the case holds (`flag_ids` lists the flags of its latest tasks)."""
    flags_offset: int | None
    """Earlier flags exist: ask again with `flags_offset` set to this for them."""
    guidance: str | None
    """For a case under review: where a reviewer unsure whether to report can get advice."""
    receipts: list[ReceiptView] = []
    """Its delivery receipts, one per submission, oldest first (the latest `limit`)."""


class BreakerClose(BaseModel):
    """Close a source's flood breaker: why (kept with the breaker, beside the key that did it)."""

    model_config = ConfigDict(extra="forbid")

    note: Annotated[
        str, Field(min_length=1, max_length=1000, pattern=NOTE_TEXT), AfterValidator(no_media)
    ]


class BreakerView(BaseModel):
    source: str
    """`system/version`."""
    opened_at: AwareDatetime
    reason: str
    closed_at: AwareDatetime | None
    closed_by: str | None
    close_note: str | None


SUMMARY_COLUMNS = tuple(getattr(Case, name) for name in CaseSummary.model_fields)
"""What a list reads of each case: the summary's columns, not the whole row."""


class CasePage(BaseModel):
    items: list[CaseSummary]
    next_cursor: str | None


class FlagView(BaseModel):
    flag_id: UUID
    decision: dict[str, Any]
    case_ids: list[UUID]


class Problem(BaseModel):
    detail: str


_CURSOR = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_FORGED = "the cursor is not one this API issued"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _Positioned(Protocol):
    """A case or a list row: what a cursor holds of it."""

    @property
    def case_id(self) -> UUID: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def due_at(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class Cursors:
    """Opaque page cursors: the position, signed (HMAC-SHA256) so only this API's are taken."""

    key: bytes

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self.key, payload, hashlib.sha256).digest()

    def encode(self, case: "_Positioned", *, by_due: bool = False) -> str:
        at = case.due_at if by_due and case.due_at is not None else case.created_at
        payload = f"{'due' if by_due else 'created'}|{at.isoformat()}|{case.case_id}".encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def decode(self, cursor: str, *, by_due: bool = False) -> tuple[datetime, UUID]:
        """The position a cursor holds; InvalidRequest (400) for any cursor this API did not
        issue, or issued for the other ordering."""
        if len(cursor) > MAX_CURSOR_CHARS or not _CURSOR.fullmatch(cursor):
            raise InvalidRequest(_FORGED)
        body, mac = cursor.split(".")
        try:
            payload, signature = _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequest(_FORGED) from exc
        if not hmac.compare_digest(signature, self._mac(payload)):
            raise InvalidRequest(_FORGED)
        try:
            kind, at, case_id = payload.decode().split("|")
            position = datetime.fromisoformat(at), UUID(case_id)
        except ValueError as exc:
            raise InvalidRequest(_FORGED) from exc
        if kind != ("due" if by_due else "created") or position[0].tzinfo is None:
            raise InvalidRequest("the cursor belongs to another listing")
        return position


@dataclass(frozen=True, slots=True)
class Caller:
    role: Role
    key_id: str
    """The first characters of the key's hash: names the key in the case history, not a person."""
    holder: str | None = None
    """Who an admin said holds the key (`csae keys create --holder`): on the audit trail only."""

    @property
    def actor(self) -> str:
        """The key, as the case history and the logs name it: never its holder."""
        return f"{self.role.value}:{self.key_id}"

    @property
    def audit_actor(self) -> str:
        """The key and, when it has one, its holder label: the audit trail's actor."""
        return audit_actor(self.actor, self.holder)


@dataclass(frozen=True, slots=True)
class Trail:
    """What an audit entry needs from the request: who asks, and the request's id."""

    actor: str
    request_id: str | None


_bearer = HTTPBearer(auto_error=False)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def app_from_environment() -> FastAPI:
    """The API for one of uvicorn's worker processes: its settings read from the environment
    (the parent's), once, in that process, and its logs set up as the parent's are."""
    settings = Settings()
    logs.configure(settings.log_level)
    return create_app(settings)


def create_app(settings: Settings, clock: Callable[[], datetime] = _utc_now) -> FastAPI:
    """The API application, bound to `settings` (read once, by the caller)."""
    keys = Keyring(settings.api_keys_file)  # re-read when the file changes: no restart
    uses = KeyUses()  # flushed every api_key_use_flush_seconds: no write per request
    if not keys.keys:
        log.warning("no API keys configured yet: /v1 requests are refused until some are")
    secret = settings.api_cursor_secret
    cursors = Cursors(
        secret.get_secret_value().encode() if secret is not None else secrets.token_bytes(32)
    )
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    metrics = Metrics(registry)
    packets = store.CaseConfig(
        reporter=Reporter(
            name=settings.org_name,
            safeguarding_contact=settings.safeguarding_contact,
            safeguarding_email=settings.safeguarding_email,
        ),
        directory=force_directory(settings),
        deadlines=settings.sla_deadlines,
        organisations=organisations(settings),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = new_engine(
            settings.database_url,
            pool_size=settings.api_db_pool_size,
            max_overflow=settings.api_db_max_overflow,
            # Three round trips a request saved; after a database restart one request per
            # process fails (500) and the pool then replaces its connections.
            pre_ping=False,
        )
        app.state.sessions = new_sessionmaker(engine)
        # Reads and their audit entry need no transaction of their own: each statement
        # commits by itself (no BEGIN and COMMIT round trips), and `audit_append` holds the
        # audit lock only for its own statement. What writes (a move, a packet built on its
        # first read, a breaker closed) takes a session of `sessions`: one transaction.
        app.state.reads = new_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"))
        pool = engine.pool
        metrics.db_pool_in_use.set_function(lambda: float(getattr(pool, "checkedout", int)()))
        metrics.db_pool_size.set_function(lambda: float(getattr(pool, "size", int)()))
        stop = asyncio.Event()
        loop_lag = asyncio.create_task(watch_event_loop(metrics, stop))
        flusher = asyncio.create_task(flush_key_uses(app.state.sessions, stop))
        try:
            yield
        finally:
            stop.set()
            await loop_lag
            await flusher  # the uses since the last flush, written as the process stops
            await engine.dispose()

    async def flush_key_uses(
        sessions: async_sessionmaker[AsyncSession], stop: asyncio.Event
    ) -> None:
        """Every `api_key_use_flush_seconds`, and once more when `stop` is set: the keys' last
        uses to the database. A failed flush keeps them for the next."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.api_key_use_flush_seconds)
            taken = uses.take()
            if not taken:
                continue
            try:
                async with sessions() as s, s.begin():
                    await key_uses.flush(session=s, uses=taken)
            except Exception as exc:  # the database is down or slow: try again next time
                uses.keep(taken)
                log.warning("API key uses not flushed", extra={"error": type(exc).__name__})

    app = FastAPI(
        title="csae-referrals case API",
        version="1",
        lifespan=lifespan,
        description="Cases, packets and decisions of the CSAE referral pipeline. Metadata only.",
    )
    app.mount("/metrics", make_asgi_app(registry=registry))

    async def session(request: Request) -> AsyncIterator[AsyncSession]:
        sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
        async with sessions() as s:
            yield s

    async def caller(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],  # for the OpenAPI
    ) -> Caller:
        """The caller `_Guard` admitted (it checks the key before the body is read)."""
        who = request.scope.get("csae.caller")
        if not isinstance(who, Caller):
            raise _UnauthorizedError
        return who

    async def read_session(request: Request) -> AsyncIterator[AsyncSession]:
        sessions: async_sessionmaker[AsyncSession] = request.app.state.reads
        async with sessions() as s:
            yield s

    Db = Annotated[AsyncSession, Depends(session)]  # noqa: N806 - a type alias
    ReadDb = Annotated[AsyncSession, Depends(read_session)]  # noqa: N806 - a type alias

    async def trail(request: Request, who: Annotated[Caller, Depends(caller)]) -> Trail:
        request_id = request.scope.get("csae.request_id")
        return Trail(who.audit_actor, request_id if isinstance(request_id, str) else None)

    Audited = Annotated[Trail, Depends(trail)]  # noqa: N806 - a type alias

    def audited(
        s: AsyncSession,
        t: Trail,
        action: str,
        route: str,
        *,
        case_id: UUID | None = None,
        packet_version: int | None = None,
        flag_id: UUID | None = None,
    ) -> AbstractAsyncContextManager[dict[str, audit.Fact]]:
        """The block's work and its audit entry, committed together (`audit.audited`)."""
        return audit.audited(
            s,
            actor=t.actor,
            action=action,
            route=route,
            request_id=t.request_id,
            clock=clock,
            case_id=case_id,
            packet_version=packet_version,
            flag_id=flag_id,
        )

    required: dict[Callable[..., Any], frozenset[Role]] = {}

    def allow(*roles: Role) -> list[Any]:
        """Deny by default: only `roles` pass (401 without a key, 403 with another role).
        `_Guard` enforces it before the body is read; the check here holds if it did not."""

        async def check(who: Annotated[Caller, Depends(caller)]) -> None:
            if who.role not in roles:
                raise Forbidden(f"the {who.role.value} role may not use this route")

        required[check] = frozenset(roles)
        return [Depends(check)]

    # Viewers see lists, which carry no personal identifiers; cases, packets and flags do.
    listing = allow(Role.VIEWER, Role.INVESTIGATOR, Role.ADMIN)
    identifying = allow(Role.INVESTIGATOR, Role.ADMIN)

    @app.exception_handler(ReferralError)
    async def referral_error(request: Request, exc: ReferralError) -> JSONResponse:
        status = http_status(exc)
        body: dict[str, Any] = {"detail": str(exc)}
        if isinstance(exc, IllegalTransition):
            body |= {"status": exc.current, "allowed": exc.allowed}
        return JSONResponse(body, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": safe_errors(exc.errors())}, status_code=422)

    @app.exception_handler(_UnauthorizedError)
    async def unauthorized(request: Request, exc: _UnauthorizedError) -> JSONResponse:
        return JSONResponse(
            {"detail": "a valid API key is required: Authorization: Bearer <key>"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"model": Problem}})
    async def readyz(s: ReadDb) -> JSONResponse:
        """The database answers."""
        try:
            await s.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means not ready
            return JSONResponse({"detail": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get(
        "/v1/cases",
        dependencies=listing,
        tags=["cases"],
        response_model=CasePage,
        responses=_answers(400, 401),
    )
    async def list_cases(
        s: ReadDb,
        t: Audited,
        status: CaseStatus | None = None,
        destination: DestinationKind | None = None,
        priority: Priority | None = None,
        force: Label | None = None,
        criterion: Criterion | None = None,
        since: Instant | None = None,
        overdue: bool = False,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: str | None = None,
    ) -> Response:
        """Cases, oldest first, with cursor pagination; with `overdue=true`, only the cases past
        the deadline of the stage they wait in, the most overdue first. A cursor is opaque and
        signed: one this API did not issue answers 400."""
        facts: dict[str, audit.Fact] = {
            "status": status.value if status else None,
            "destination": destination.value if destination else None,
            "priority": priority.value if priority else None,
            "force": force,
            "criterion": criterion.value if criterion else None,
            "since": since.isoformat() if since else None,
            "overdue": overdue,
            "limit": limit,
            "paged": cursor is not None,
        }
        async with audited(s, t, "cases.list", "GET /v1/cases") as detail:
            detail |= {k: v for k, v in facts.items() if v is not None}
            after = cursors.decode(cursor, by_due=overdue) if cursor else None
            rows = await queries.list_cases(
                session=s,
                status=status,
                destination=destination.value if destination else None,
                priority=priority.value if priority else None,
                force_id=force,
                criterion=criterion.value if criterion else None,
                since=since,
                overdue_at=clock() if overdue else None,
                after=after,
                limit=limit + 1,
                columns=SUMMARY_COLUMNS,
            )
            more = len(rows) > limit
            rows = rows[:limit]
            detail["rows"] = len(rows)
        page = CasePage(
            items=[CaseSummary.model_validate(r._asdict()) for r in rows],
            next_cursor=cursors.encode(rows[-1], by_due=overdue) if more and rows else None,
        )
        # Validated once, here, and written out by pydantic: not validated again by FastAPI.
        return Response(page.model_dump_json(), media_type="application/json")

    @app.get(
        "/v1/cases/{case_id}",
        dependencies=identifying,
        tags=["cases"],
        response_model=CaseDetail,
        responses=_answers(400, 401, 403, 404),
    )
    async def get_case(
        case_id: UUID,
        s: ReadDb,
        t: Audited,
        limit: Annotated[int, Query(ge=1, le=MAX_DETAIL_PAGE)] = DETAIL_PAGE,
        transitions_before: Annotated[int | None, Query(ge=1, le=MAX_INT64)] = None,
        flags_offset: Annotated[int, Query(ge=0, le=INT32_MAX)] = 0,
    ) -> Response:
        """One case with its flags, packet versions and moves. A case holds at most `limit` of
        its latest moves and of the flags of its latest tasks, with their totals; for earlier
        ones ask again with `transitions_before` or `flags_offset` as the answer gives them."""
        async with audited(s, t, "case.read", "GET /v1/cases/{case_id}", case_id=case_id):
            found = await queries.read_case(
                session=s,
                case_id=case_id,
                moves_before=transitions_before,
                moves_limit=limit + 1,
                flags_offset=flags_offset,
                flags_limit=limit,
            )
            if found is None:
                raise NotFound(f"no case {case_id}")
            detail = _shown(found, limit=limit, flags_offset=flags_offset)
        # Validated once, here, and written out by pydantic: not validated again by FastAPI.
        return Response(detail.model_dump_json(), media_type="application/json")

    def _shown(
        found: queries.CaseRead, *, limit: int = DETAIL_PAGE, flags_offset: int = 0
    ) -> CaseDetail:
        """The detail of a case as read (with one move past `limit`, if there is one)."""
        case = found.case
        summary = {name: getattr(case, name) for name in CaseSummary.model_fields}  # validated once
        history = _MOVES.validate_json(found.transitions)  # the database's JSON, parsed once
        earlier = history[1].transition_id if len(history) > limit else None
        history = history[-limit:]
        following = flags_offset + limit
        return CaseDetail(
            **summary,
            org_id=case.org_id,
            subject_account_id=case.subject_account_id,
            external_reference=case.external_reference,
            flag_ids=found.flag_ids,
            packet_versions=list(range(1, case.packet_version + 1)),
            allowed_transitions=list(PERSON_TRANSITIONS[case.status]),
            transitions=list[TransitionView](history),  # served as TransitionView: no id
            transitions_total=found.moves,
            transitions_before=earlier,
            flags_total=case.flag_count,
            flags_offset=following if following < found.tasks else None,
            guidance=NSPCC_GUIDANCE if case.status is CaseStatus.REVIEW else None,
            receipts=_RECEIPTS.validate_json(found.receipts),
        )

    @app.post(
        "/v1/cases/{case_id}/transitions",
        dependencies=identifying,
        tags=["cases"],
        responses=_answers(400, 401, 403, 404, 409, 413),
    )
    async def transition(
        case_id: UUID,
        request: TransitionRequest,
        who: Annotated[Caller, Depends(caller)],
        s: Db,
        t: Audited,
    ) -> CaseDetail:
        """Move a case on: approve (`ready`) or dismiss a review, record it `submitted` with the
        receiver's reference, then `acknowledged`, then `closed`. An illegal move answers 409
        naming the case's state and the moves it allows."""
        # The move and its audit entry commit together (a refused move is recorded on its own).
        route = "POST /v1/cases/{case_id}/transitions"
        async with audited(
            s, t, "case.transition", route, case_id=case_id, packet_version=request.packet_version
        ) as facts:
            facts["to"] = request.to.value
            moved = await store.transition_case(
                session=s,
                case_id=case_id,
                to=request.to,
                actor=who.actor,
                now=clock(),
                packets=packets,
                external_reference=request.external_reference,
                note=request.note,
                packet_version=request.packet_version,
                expected_updated_at=request.expected_updated_at,
                sent_format=request.format,
            )
            facts |= {"from": moved.previous.value, "status": moved.case.status.value}
            facts |= moved.receipt_facts()
        case = moved.case
        metrics.case_moved(
            priority=case.submitted_due_priority,
            ready_seconds=moved.ready_seconds,
            breaches=[(p.value, stage.value) for p, stage in moved.breaches],
            supplement_to=case.destination if moved.supplement else None,
        )
        log.info(
            "case moved",
            extra={"case_id": str(case_id), "from": moved.previous.value, "to": case.status.value},
        )
        found = await queries.read_case(
            session=s, case_id=case_id, moves_limit=DETAIL_PAGE + 1, flags_limit=DETAIL_PAGE
        )
        if found is None:  # deleted since the move committed (retention): nothing to show
            raise NotFound(f"no case {case_id}")
        return _shown(found)

    admin = allow(Role.ADMIN)

    def _breaker(b: Breaker) -> BreakerView:
        return BreakerView(
            source=f"{b.system}/{b.version}",
            opened_at=b.opened_at,
            reason=b.reason,
            closed_at=b.closed_at,
            closed_by=b.closed_by,
            close_note=b.close_note,
        )

    @app.get(
        "/v1/breakers", dependencies=admin, tags=["breakers"], responses=_answers(400, 401, 403)
    )
    async def list_breakers(s: ReadDb, t: Audited) -> list[BreakerView]:
        """The latest flood breakers, open and closed (admin)."""
        async with audited(s, t, "breakers.list", "GET /v1/breakers") as facts:
            rows = await breakers.listed(s)
            facts["rows"] = len(rows)
        return [_breaker(b) for b in rows]

    @app.post(
        "/v1/breakers/{system}/{version}/close",
        dependencies=admin,
        tags=["breakers"],
        responses=_answers(400, 401, 403, 404, 413),
    )
    async def close_breaker(
        system: Annotated[Text64, Path()],
        version: Annotated[Text64, Path()],
        request: BreakerClose,
        who: Annotated[Caller, Depends(caller)],
        s: Db,
        t: Audited,
    ) -> BreakerView:
        """Close a source's open flood breaker (admin): its referrals go out again. Who (the
        key) and why (the note) are kept with the breaker."""
        route = "POST /v1/breakers/{system}/{version}/close"
        async with audited(s, t, "breaker.close", route) as facts:
            facts["source"] = f"{system}/{version}"  # a classifier's name, not a person's
            closed = await breakers.close(
                s,
                (system, version),
                by=who.actor,
                note=request.note,
                now=clock(),
                settings=settings.breaker() or BreakerSettings(),
            )
            if closed is None:
                raise NotFound("no open breaker for that source")
        log.info("flood breaker closed", extra={"actor": who.actor})
        return _breaker(closed)

    @app.get(
        "/v1/cases/{case_id}/packets/{version}",
        dependencies=identifying,
        tags=["cases"],
        responses={
            200: {
                "content": {"application/json": {}, "text/plain": {}, "application/xml": {}},
                "headers": {
                    "X-Packet-SHA256": {
                        "description": "sha256 (hex) of the bytes served, as a delivery "
                        "receipt of this version and format records it",
                        "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    }
                },
            },
            **_answers(400, 401, 403, 404),
        },
    )
    async def get_packet(
        case_id: UUID,
        version: int,
        s: Db,
        t: Audited,
        rendering: Annotated[Format, Query(alias="format")] = "json",
    ) -> Any:
        """One version of the case's packet, as JSON, or with `format=text` as plain text to read
        down the phone or paste into a web form, or for a case to NCMEC with `format=ncmec-xml`
        as a CyberTipline report (valid against NCMEC's schema; metadata only, no files). The
        `X-Packet-SHA256` header is the sha256 of the bytes served, as a delivery receipt of
        this version and format records it."""
        held = version if 1 <= version <= INT32_MAX else None  # past it: no such version
        route = "GET /v1/cases/{case_id}/packets/{version}"
        # A version read for the first time is built and kept, in the entry's transaction.
        async with audited(
            s, t, "packet.read", route, case_id=case_id, packet_version=held
        ) as facts:
            facts["format"] = rendering
            packet = None
            if held is not None:
                packet = await store.packet(
                    session=s, case_id=case_id, version=held, config=packets, now=clock()
                )
            if packet is None:
                raise NotFound(f"no packet version {version} for case {case_id}")
            service = None
            if rendering == "ncmec-xml":  # a case not for NCMEC is refused (400), and recorded
                service = await queries.service_of(session=s, case_id=case_id)
            served = renderings.render(packet.body, rendering, service=service)
            facts["sha256"] = served.sha256
        return Response(
            served.content,
            media_type=served.media_type,
            headers={"X-Packet-SHA256": served.sha256},
        )

    @app.get(
        "/v1/flags/{flag_id}",
        dependencies=identifying,
        tags=["flags"],
        responses=_answers(400, 401, 403, 404),
    )
    async def get_flag(flag_id: UUID, s: ReadDb, t: Audited) -> FlagView:
        """The router's decision for a flag, no-report ones included, and the cases it joined."""
        async with audited(s, t, "flag.read", "GET /v1/flags/{flag_id}", flag_id=flag_id) as facts:
            decision = await queries.get_decision(session=s, flag_id=flag_id)
            if decision is None:
                raise NotFound(f"no decision recorded for flag {flag_id}")
            case_ids = await queries.cases_for_flag(session=s, flag_id=flag_id)
            facts["cases"] = len(case_ids)
        return FlagView(flag_id=flag_id, decision=decision.body, case_ids=case_ids)

    console.install(
        app,
        console.Wiring(
            keys=keys,
            clock=clock,
            packets=packets,
            metrics=metrics,
            idle=timedelta(seconds=settings.console_idle_seconds),
            lifetime=timedelta(seconds=settings.console_lifetime_seconds),
            refresh_seconds=settings.console_refresh_seconds,
        ),
    )
    app.add_middleware(
        _Guard,
        keys=keys,
        uses=uses,
        routes=lambda: app.router.routes,
        roles=required,
        clock=clock,
    )
    # Outermost, so refusals by the guard (401, 413) are counted too.
    app.add_middleware(_HttpMetrics, metrics=metrics, routes=lambda: app.router.routes)
    return app


_WHY = {
    400: "The request is malformed: a forged cursor, an over-long query string, a missing field",
    401: "No valid API key: `Authorization: Bearer <key>`",
    403: "The key's role may not use this route",
    404: "No such case, packet version, flag or breaker",
    409: "The move is illegal from the case's state, or the case changed since it was read",
    413: f"The body is larger than {MAX_BODY_BYTES} bytes",
}


def _answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route can give, for the OpenAPI."""
    return {status: {"model": Problem, "description": _WHY[status]} for status in statuses}


class _UnauthorizedError(Exception):
    """No valid API key; answered 401 by its handler."""


_AUTH_SCHEME = re.compile(rb"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9._~+/=-]{1,256})")
_UNAUTHORIZED = {"detail": "a valid API key is required: Authorization: Bearer <key>"}


class _Guard:
    """Every `/v1` request: key and role checked, then the query string and body bounded,
    before any of the body is read; and no unhandled error reaches the server's log.

    A pure ASGI middleware, so a request refused here costs nothing: a 50 MB body without a
    key is answered 401 unread. The role a route needs is read from its `allow()` dependency,
    so the route declares it once. Unhandled errors are logged by type and request id only:
    a database driver's message quotes the values it was given.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: Keyring,
        uses: KeyUses,
        routes: Callable[[], Sequence[Any]],
        roles: dict[Callable[..., Any], frozenset[Role]],
        clock: Callable[[], datetime],
    ) -> None:
        self.app = app
        self.keys = keys
        self.uses = uses
        self.clock = clock
        self.routes = routes
        self.roles = roles

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid4().hex
        scope["csae.request_id"] = request_id
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            refusal: ASGIApp | None = None
            if scope["path"].startswith("/v1/"):
                refusal, receive = await self._admit(scope, receive)
            elif scope["path"].startswith(console.PREFIX + "/"):
                # The console's pages check their session cookie themselves; its bodies (a
                # sign-in, a move) are bounded here, before they are read, as the API's are.
                refusal, receive = await _bounded(scope, receive)
            if refusal is not None:
                await refusal(scope, receive, tracked)
                return
            await self.app(scope, receive, tracked)
        except Exception as exc:  # the edge: no traceback, whose frames hold request values
            log.error(  # no exc_info on purpose: the type and the id, never the values
                "request failed", extra={"error": type(exc).__name__, "request_id": request_id}
            )
            if not started:
                body = {"detail": "internal error", "request_id": request_id}
                await JSONResponse(body, status_code=500)(scope, receive, tracked)

    async def _admit(self, scope: Scope, receive: Receive) -> tuple[ASGIApp | None, Receive]:
        """None and the body's reader when the request may go on; else the answer."""
        who = self._caller(scope)
        if who is None:
            return JSONResponse(
                _UNAUTHORIZED, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            ), receive
        scope["csae.caller"] = who
        needed, template = self._needed(scope)
        if needed is not None and who.role not in needed:
            await self._refused(scope, who, f"{scope['method']} {template}")
            return _problem(403, f"the {who.role.value} role may not use this route"), receive
        return await _bounded(scope, receive)

    async def _refused(self, scope: Scope, who: Caller, route: str) -> None:
        """A key asked for a route its role may not use: on the audit trail (`access.refused`,
        outcome 403; the route's template, never the path). Answered 403 even when the entry
        cannot be written, which is logged by error type: a refusal serves nothing."""
        request_id = scope.get("csae.request_id")
        entry = audit.Entry(
            actor=who.audit_actor,
            action="access.refused",
            outcome="403",
            route=route,
            request_id=request_id if isinstance(request_id, str) else None,
        )
        try:
            async with scope["app"].state.reads() as s:
                await audit.record(session=s, entry=entry, now=self.clock())
        except Exception as exc:  # the database down: the refusal stands, said in the log
            log.error("a refusal was not audited", extra={"error": type(exc).__name__})

    def _caller(self, scope: Scope) -> Caller | None:
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        matched = _AUTH_SCHEME.fullmatch(header) if header is not None else None
        if matched is None:
            return None
        now = self.clock()
        found = self.keys.find(matched.group(1).decode(), now)
        if found is None:
            return None
        self.uses.seen(found.key_id, now)
        return Caller(found.role, found.key_id, found.holder)

    def _needed(self, scope: Scope) -> tuple[frozenset[Role] | None, str]:
        """The roles the matching route allows (empty, deny, for a route that names none) and
        its path template."""
        for route in self.routes():
            if not isinstance(route, APIRoute):
                continue
            match, _ = route.matches(scope)
            if match is Match.FULL:
                for dependency in route.dependencies:
                    if dependency.dependency in self.roles:
                        return self.roles[dependency.dependency], route.path
                return frozenset(), route.path
        return None, "unmatched"  # no such route: the router answers 404 or 405


async def _bounded(scope: Scope, receive: Receive) -> tuple[ASGIApp | None, Receive]:
    """None and the body's reader when the query string and the body are within their caps
    (a body without a length is read up to the cap, then handed on); else the answer."""
    if len(scope.get("query_string", b"")) > MAX_QUERY_BYTES:
        return _problem(400, f"the query string is longer than {MAX_QUERY_BYTES} bytes"), receive
    if scope["method"] not in ("POST", "PUT", "PATCH"):
        return None, receive
    length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
    if length is not None:
        if not length.isdigit():
            return _problem(400, "the Content-Length header is not a number"), receive
        if int(length) > MAX_BODY_BYTES:
            return _too_large(), receive
        return None, receive
    # No length given (chunked): read at most the cap, then hand the body on.
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None, receive
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return _too_large(), receive
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return None, replay


class _HttpMetrics:
    """Counts and times every HTTP request by route template (`/v1/cases/{case_id}`, never the
    raw path, which holds identifiers), method and status; unmatched paths are `unmatched`."""

    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, routes: Callable[[], Sequence[Any]]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self._template(scope)
        method = scope["method"] if scope["method"] in _METHODS else "other"
        status = 500
        started = time.perf_counter()

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            self.metrics.http_requests.labels(route, method, str(status)).inc()
            self.metrics.http_request_seconds.labels(route, method).observe(
                time.perf_counter() - started
            )

    def _template(self, scope: Scope) -> str:
        for route in self.routes():
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return str(getattr(route, "path", "unmatched")) or "/"
        return "unmatched"


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _too_large() -> JSONResponse:
    return _problem(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
