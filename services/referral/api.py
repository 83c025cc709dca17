"""The referral API: case lookups over PostgreSQL, behind bearer keys."""

import base64
import binascii
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, ProcessCollector, make_asgi_app
from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.referral import Criterion, DestinationKind, Priority
from services.pipeline.settings import Settings
from services.referral import service
from services.referral.database import new_engine, new_sessionmaker
from services.referral.enums import CaseStatus
from services.referral.exceptions import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    ReferralError,
)
from services.referral.keys import Role, key_hash, load_keys
from services.referral.models import Case

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
    review_due_at: datetime | None
    ready_due_at: datetime
    submitted_due_at: datetime
    ready_at: datetime | None
    packet_version: int


class CaseDetail(CaseSummary):
    org_id: str
    subject_account_id: str
    flag_ids: list[UUID]
    packet_versions: list[int]


class CasePage(BaseModel):
    items: list[CaseSummary]
    next_cursor: str | None


class FlagView(BaseModel):
    flag_id: UUID
    decision: dict[str, Any]
    case_ids: list[UUID]


class Problem(BaseModel):
    detail: str


def _encode_cursor(case: Case) -> str:
    raw = f"{case.created_at.isoformat()}|{case.case_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        created, case_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(created), UUID(case_id)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("the cursor is not one this API issued") from exc


_bearer = HTTPBearer(auto_error=False)
_STATUS: dict[type[ReferralError], int] = {
    InvalidRequest: 400,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
}


def create_app(settings: Settings) -> FastAPI:
    """The API application, bound to `settings` (read once, by the caller)."""
    keys = load_keys(settings.api_keys_file)
    if not keys:
        log.warning("no API keys configured: every /v1 request will be refused")
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)

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
    ) -> Role:
        role = keys.get(key_hash(credentials.credentials)) if credentials else None
        if role is None:
            raise _UnauthorizedError
        return role

    Db = Annotated[AsyncSession, Depends(session)]  # noqa: N806 - a type alias

    def allow(*roles: Role) -> list[Any]:
        """Deny by default: only `roles` pass (401 without a key, 403 with another role)."""

        async def check(role: Annotated[Role, Depends(caller)]) -> None:
            if role not in roles:
                raise Forbidden(f"the {role.value} role may not use this route")

        return [Depends(check)]

    # Viewers see lists, which carry no personal identifiers; cases, packets and flags do.
    listing = allow(Role.VIEWER, Role.INVESTIGATOR, Role.ADMIN)
    identifying = allow(Role.INVESTIGATOR, Role.ADMIN)

    @app.exception_handler(ReferralError)
    async def referral_error(request: Request, exc: ReferralError) -> JSONResponse:
        status = _STATUS.get(type(exc), 400)
        return JSONResponse({"detail": str(exc)}, status_code=status)

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
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: str | None = None,
    ) -> CasePage:
        """Cases, oldest first, with cursor pagination."""
        after = _decode_cursor(cursor) if cursor else None
        rows = await service.list_cases(
            session=s,
            status=status,
            destination=destination.value if destination else None,
            priority=priority.value if priority else None,
            force_id=force,
            criterion=criterion.value if criterion else None,
            since=since,
            after=after,
            limit=limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return CasePage(
            items=[CaseSummary.model_validate(r) for r in rows],
            next_cursor=_encode_cursor(rows[-1]) if more and rows else None,
        )

    @app.get("/v1/cases/{case_id}", dependencies=identifying, tags=["cases"])
    async def get_case(case_id: UUID, s: Db) -> CaseDetail:
        """One case with its flags and packet versions."""
        case = await service.get_case(session=s, case_id=case_id)
        if case is None:
            raise NotFound(f"no case {case_id}")
        summary = CaseSummary.model_validate(case).model_dump()
        return CaseDetail(
            **summary,
            org_id=case.org_id,
            subject_account_id=case.subject_account_id,
            flag_ids=await service.case_flag_ids(session=s, case_id=case_id),
            packet_versions=list(range(1, case.packet_version + 1)),
        )

    @app.get("/v1/cases/{case_id}/packets/{version}", dependencies=identifying, tags=["cases"])
    async def get_packet(case_id: UUID, version: int, s: Db) -> dict[str, Any]:
        """One version of the case's packet, as JSON."""
        packet = await service.get_packet(session=s, case_id=case_id, version=version)
        if packet is None:
            raise NotFound(f"no packet version {version} for case {case_id}")
        return packet.body

    @app.get("/v1/flags/{flag_id}", dependencies=identifying, tags=["flags"])
    async def get_flag(flag_id: UUID, s: Db) -> FlagView:
        """The router's decision for a flag, no-report ones included, and the cases it joined."""
        decision = await service.get_decision(session=s, flag_id=flag_id)
        if decision is None:
            raise NotFound(f"no decision recorded for flag {flag_id}")
        return FlagView(
            flag_id=flag_id,
            decision=decision.body,
            case_ids=await service.cases_for_flag(session=s, flag_id=flag_id),
        )

    return app


class _UnauthorizedError(Exception):
    """No valid API key; answered 401 by its handler."""
