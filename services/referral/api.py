"""The referral API: case lookups over PostgreSQL, behind bearer keys."""

import base64
import binascii
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, ProcessCollector, make_asgi_app
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.media import embedded_media
from schemas.packets import NSPCC_GUIDANCE, ExternalReference, Packet
from schemas.referral import Criterion, DestinationKind, Priority
from services.domain.breaker import BreakerSettings
from services.domain.forces import uk_forces
from services.pipeline.metrics import Metrics
from services.pipeline.settings import Settings
from services.pipeline.startup import organisations
from services.referral import breakers, queries, store
from services.referral.database import new_engine, new_sessionmaker
from services.referral.enums import CaseStatus
from services.referral.exceptions import (
    Conflict,
    Forbidden,
    IllegalTransition,
    InvalidRequest,
    NotFound,
    ReferralError,
)
from services.referral.keys import Role, key_hash, load_keys
from services.referral.lifecycle import PERSON_TRANSITIONS
from services.referral.models import Breaker, Case
from services.referral.packet_text import render_text
from services.referral.packets import Reporter

log = logging.getLogger(__name__)


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


class CaseDetail(CaseSummary):
    org_id: str
    subject_account_id: str
    external_reference: str | None
    flag_ids: list[UUID]
    packet_versions: list[int]
    allowed_transitions: list[CaseStatus]
    transitions: list[TransitionView]
    guidance: str | None
    """For a case under review: where a reviewer unsure whether to report can get advice."""


def _no_media(value: str) -> str:
    reason = embedded_media(value)
    if reason is not None:
        raise ValueError(f"looks like embedded media ({reason}); this field is text only")
    return value


_NOTE_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]+$"
"""A person's note: any text but control characters (tabs and line breaks are fine)."""


class TransitionRequest(BaseModel):
    """Move a case on: `submitted` needs the receiver's reference, `dismissed` a note."""

    model_config = ConfigDict(extra="forbid")

    to: CaseStatus
    external_reference: Annotated[ExternalReference, AfterValidator(_no_media)] | None = None
    packet_version: int | None = Field(default=None, ge=1)
    """Required for `submitted`: the packet version that was sent. When a later version exists,
    the flags it added come back at once as a supplementary packet."""
    expected_updated_at: AwareDatetime | None = None
    """The case's `updated_at` as read: the move is refused (409) if the case changed since."""
    note: (
        Annotated[
            str,
            Field(min_length=1, max_length=1000, pattern=_NOTE_TEXT),
            AfterValidator(_no_media),
        ]
        | None
    ) = None


class BreakerClose(BaseModel):
    """Close a source's flood breaker: why (kept with the breaker, beside the key that did it)."""

    model_config = ConfigDict(extra="forbid")

    note: Annotated[
        str, Field(min_length=1, max_length=1000, pattern=_NOTE_TEXT), AfterValidator(_no_media)
    ]


class BreakerView(BaseModel):
    source: str
    """`system/version`."""
    opened_at: AwareDatetime
    reason: str
    closed_at: AwareDatetime | None
    closed_by: str | None
    close_note: str | None


class CasePage(BaseModel):
    items: list[CaseSummary]
    next_cursor: str | None


class FlagView(BaseModel):
    flag_id: UUID
    decision: dict[str, Any]
    case_ids: list[UUID]


class Problem(BaseModel):
    detail: str


def _encode_cursor(case: Case, *, by_due: bool = False) -> str:
    at = case.due_at if by_due and case.due_at is not None else case.created_at
    raw = f"{at.isoformat()}|{case.case_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        created, case_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(created), UUID(case_id)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("the cursor is not one this API issued") from exc


@dataclass(frozen=True, slots=True)
class Caller:
    role: Role
    key_id: str
    """The first characters of the key's hash: names the key in the case history, not a person."""

    @property
    def actor(self) -> str:
        return f"{self.role.value}:{self.key_id}"


_packet = TypeAdapter[Packet](Packet)
_bearer = HTTPBearer(auto_error=False)
_STATUS: dict[type[ReferralError], int] = {
    InvalidRequest: 400,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(settings: Settings, clock: Callable[[], datetime] = _utc_now) -> FastAPI:
    """The API application, bound to `settings` (read once, by the caller)."""
    keys = load_keys(settings.api_keys_file)
    if not keys:
        log.warning("no API keys configured: every /v1 request will be refused")
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    metrics = Metrics(registry)
    packets = store.CaseConfig(
        reporter=Reporter(
            name=settings.org_name,
            safeguarding_contact=settings.safeguarding_contact,
            safeguarding_email=settings.safeguarding_email,
        ),
        directory=uk_forces(),
        deadlines=settings.sla_deadlines,
        organisations=organisations(settings),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = new_engine(settings.database_url)
        app.state.sessions = new_sessionmaker(engine)
        try:
            yield
        finally:
            await engine.dispose()

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
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Caller:
        hashed = key_hash(credentials.credentials) if credentials else ""
        role = keys.get(hashed)
        if role is None:
            raise _UnauthorizedError
        return Caller(role, hashed[:12])

    Db = Annotated[AsyncSession, Depends(session)]  # noqa: N806 - a type alias

    def allow(*roles: Role) -> list[Any]:
        """Deny by default: only `roles` pass (401 without a key, 403 with another role)."""

        async def check(who: Annotated[Caller, Depends(caller)]) -> None:
            if who.role not in roles:
                raise Forbidden(f"the {who.role.value} role may not use this route")

        return [Depends(check)]

    # Viewers see lists, which carry no personal identifiers; cases, packets and flags do.
    listing = allow(Role.VIEWER, Role.INVESTIGATOR, Role.ADMIN)
    identifying = allow(Role.INVESTIGATOR, Role.ADMIN)

    @app.exception_handler(ReferralError)
    async def referral_error(request: Request, exc: ReferralError) -> JSONResponse:
        status = next((_STATUS[k] for k in type(exc).__mro__ if k in _STATUS), 400)
        body: dict[str, Any] = {"detail": str(exc)}
        if isinstance(exc, IllegalTransition):
            body |= {"status": exc.current, "allowed": exc.allowed}
        return JSONResponse(body, status_code=status)

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
    async def readyz(s: Db) -> JSONResponse:
        """The database answers."""
        try:
            await s.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means not ready
            return JSONResponse({"detail": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/v1/cases", dependencies=listing, tags=["cases"])
    async def list_cases(
        s: Db,
        status: CaseStatus | None = None,
        destination: DestinationKind | None = None,
        priority: Priority | None = None,
        force: str | None = None,
        criterion: Criterion | None = None,
        since: AwareDatetime | None = None,
        overdue: bool = False,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: str | None = None,
    ) -> CasePage:
        """Cases, oldest first, with cursor pagination; with `overdue=true`, only the cases past
        the deadline of the stage they wait in, the most overdue first."""
        after = _decode_cursor(cursor) if cursor else None
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
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return CasePage(
            items=[CaseSummary.model_validate(r) for r in rows],
            next_cursor=_encode_cursor(rows[-1], by_due=overdue) if more and rows else None,
        )

    @app.get("/v1/cases/{case_id}", dependencies=identifying, tags=["cases"])
    async def get_case(case_id: UUID, s: Db) -> CaseDetail:
        """One case with its flags and packet versions."""
        case = await queries.get_case(session=s, case_id=case_id)
        if case is None:
            raise NotFound(f"no case {case_id}")
        return await _detail(s, case)

    async def _detail(s: AsyncSession, case: Case) -> CaseDetail:
        summary = CaseSummary.model_validate(case).model_dump()
        history = await queries.case_transitions(session=s, case_id=case.case_id)
        return CaseDetail(
            **summary,
            org_id=case.org_id,
            subject_account_id=case.subject_account_id,
            external_reference=case.external_reference,
            flag_ids=await queries.case_flag_ids(session=s, case_id=case.case_id),
            packet_versions=list(range(1, case.packet_version + 1)),
            allowed_transitions=list(PERSON_TRANSITIONS[case.status]),
            transitions=[TransitionView.model_validate(t) for t in history],
            guidance=NSPCC_GUIDANCE if case.status is CaseStatus.REVIEW else None,
        )

    @app.post(
        "/v1/cases/{case_id}/transitions",
        dependencies=identifying,
        tags=["cases"],
        responses={400: {"model": Problem}, 404: {"model": Problem}, 409: {"model": Problem}},
    )
    async def transition(
        case_id: UUID,
        request: TransitionRequest,
        who: Annotated[Caller, Depends(caller)],
        s: Db,
    ) -> CaseDetail:
        """Move a case on: approve (`ready`) or dismiss a review, record it `submitted` with the
        receiver's reference, then `acknowledged`, then `closed`. An illegal move answers 409
        naming the case's state and the moves it allows."""
        async with s.begin():
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
            )
        case = moved.case
        if moved.ready_seconds is not None:
            metrics.stage_seconds.labels("ready_to_submitted", case.submitted_due_priority).observe(
                moved.ready_seconds
            )
        for priority, stage in moved.breaches:
            metrics.sla_breaches.labels(priority.value, stage.value).inc()
        log.info(
            "case moved",
            extra={"case_id": str(case_id), "from": moved.previous.value, "to": case.status.value},
        )
        return await _detail(s, case)

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

    @app.get("/v1/breakers", dependencies=admin, tags=["breakers"])
    async def list_breakers(s: Db) -> list[BreakerView]:
        """The latest flood breakers, open and closed (admin)."""
        return [_breaker(b) for b in await breakers.listed(s)]

    @app.post(
        "/v1/breakers/{system}/{version}/close",
        dependencies=admin,
        tags=["breakers"],
        responses={404: {"model": Problem}},
    )
    async def close_breaker(
        system: Annotated[str, Path(max_length=64)],
        version: Annotated[str, Path(max_length=64)],
        request: BreakerClose,
        who: Annotated[Caller, Depends(caller)],
        s: Db,
    ) -> BreakerView:
        """Close a source's open flood breaker (admin): its referrals go out again. Who (the
        key) and why (the note) are kept with the breaker."""
        async with s.begin():
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
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def get_packet(
        case_id: UUID,
        version: int,
        s: Db,
        rendering: Annotated[Literal["json", "text"], Query(alias="format")] = "json",
    ) -> Any:
        """One version of the case's packet, as JSON, or with `format=text` as plain text to read
        down the phone or paste into a web form."""
        if not 1 <= version <= 2**31 - 1:
            raise NotFound(f"no packet version {version} for case {case_id}")
        async with s.begin():  # a version read for the first time is built and kept
            packet = await store.packet(
                session=s, case_id=case_id, version=version, config=packets, now=clock()
            )
        if packet is None:
            raise NotFound(f"no packet version {version} for case {case_id}")
        if rendering == "text":
            return PlainTextResponse(render_text(_packet.validate_python(packet.body)))
        return packet.body

    @app.get("/v1/flags/{flag_id}", dependencies=identifying, tags=["flags"])
    async def get_flag(flag_id: UUID, s: Db) -> FlagView:
        """The router's decision for a flag, no-report ones included, and the cases it joined."""
        decision = await queries.get_decision(session=s, flag_id=flag_id)
        if decision is None:
            raise NotFound(f"no decision recorded for flag {flag_id}")
        return FlagView(
            flag_id=flag_id,
            decision=decision.body,
            case_ids=await queries.cases_for_flag(session=s, flag_id=flag_id),
        )

    return app


class _UnauthorizedError(Exception):
    """No valid API key; answered 401 by its handler."""
