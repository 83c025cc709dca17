"""The console's pages: sign-in, the queue, the case, the packet's print view and the moves.

Every page is rendered on the server (Jinja2, autoescaped); the only script is the console's
own small file (the queue's refresh, the copy and print buttons), so the Content-Security-Policy
allows no inline script or style and no image at all. Each page view and each action is an
entry on the audit trail, written as the API writes its own (`audit.audited`); a move goes
through the same transition function as `POST /v1/cases/{case_id}/transitions`.
"""

import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.base import PRINTABLE
from schemas.packets import NSPCC_GUIDANCE, Packet
from schemas.referral import Criterion, DestinationKind, FiredRule, Priority
from services.domain.countries import UK_EMERGENCY
from services.pipeline.metrics import Metrics
from services.referral import audit, queries, store
from services.referral.console import sessions
from services.referral.console.clocks import WAITING_FOR, duration, in_words, late_by
from services.referral.enums import CaseStatus
from services.referral.exceptions import (
    Conflict,
    Forbidden,
    NotFound,
    ReferralError,
    Unauthenticated,
)
from services.referral.keys import Keyring, Role, audit_actor
from services.referral.lifecycle import PERSON_TRANSITIONS
from services.referral.models import Case, Task
from services.referral.packet_text import render_text
from services.referral.renderings import Format
from services.referral.requests import TransitionRequest, safe_errors

log = logging.getLogger(__name__)

PREFIX = "/console"
HERE = Path(__file__).parent
STATIC = HERE / "static"
QUEUE_PAGE = 50
TIMELINE_LIMIT = 200
"""The latest flags (tasks) and moves a case page shows."""
MAX_FORM_FIELDS = 20

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'none'; "
    "media-src 'none'; object-src 'none'; frame-src 'none'; font-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""No inline script or style, nothing from elsewhere, and no image of any kind."""
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), clipboard-write=(self)"),
]

_packet = TypeAdapter[Packet](Packet)
_rules = TypeAdapter(list[FiredRule])
_FORCE = re.compile(f"^{PRINTABLE}{{1,64}}$")
_MOVE_WORDS = {
    CaseStatus.READY: "Approve: refer it",
    CaseStatus.DISMISSED: "Dismiss the review",
    CaseStatus.SUBMITTED: "Record it as sent",
    CaseStatus.ACKNOWLEDGED: "Record the receiver's acknowledgement",
    CaseStatus.CLOSED: "Close the case",
}


class ConsoleHeaders:
    """The console's security headers on every answer under `/console` (pages, fragments,
    static files, redirects); pages and fragments are not cached (they hold case data)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith(f"{PREFIX}/static/")

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                headers.extend(_HEADERS)
                if not static:
                    headers.append((b"cache-control", b"no-store"))
            await send(message)

        await self.app(scope, receive, secured)


@dataclass(frozen=True, slots=True)
class Wiring:
    """What the console shares with the API process it is served by."""

    keys: Keyring
    clock: Callable[[], datetime]
    packets: store.CaseConfig
    metrics: Metrics
    idle: timedelta
    lifetime: timedelta
    refresh_seconds: float


class _SignInNeeded(Exception):
    """No valid session: answered by a redirect to the sign-in page (a page) or 401 (the
    queue's refresh)."""


def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["at"] = lambda value: value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""
    return env


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    """HttpOnly, SameSite=Strict, for the console's paths only; Secure when served over TLS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _forget(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(
        name, path=PREFIX, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )


async def _form(request: Request) -> dict[str, str]:
    """The fields of a urlencoded form (the first value of each); the body was bounded by the
    API's guard before this reads it."""
    body = await request.body()
    try:
        text = body.decode("utf-8")
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[0] for name, values in fields.items() if values}


def _queue_after(value: str | None) -> queries.QueuePosition | None:
    """A queue page's position from its `after` parameter (`P1|<due_at ISO>|<case id>`)."""
    if not value:
        return None
    parts = value.split("|")
    if len(parts) != 3 or parts[0] not in Priority.__members__:
        raise ValueError("not a queue position")
    at = datetime.fromisoformat(parts[1])
    if at.tzinfo is None:
        raise ValueError("not a queue position")
    return parts[0], at, UUID(parts[2])


def console(wiring: Wiring) -> APIRouter:
    """The console's routes (under `/console`), bound to the API process's keys and clock."""
    templates = _templates()
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    clock = wiring.clock

    async def database(request: Request) -> AsyncIterator[AsyncSession]:
        made: async_sessionmaker[AsyncSession] = request.app.state.sessions
        async with made() as s:
            yield s

    Db = Annotated[AsyncSession, Depends(database)]  # noqa: N806 - a type alias

    async def signed(request: Request, s: Db) -> sessions.Signed:
        found = await sessions.find(
            session=s,
            token=request.cookies.get(sessions.COOKIE),
            keys=wiring.keys,
            now=clock(),
            idle=wiring.idle,
            lifetime=wiring.lifetime,
            # The queue's refresh keeps no one signed in: a console left open on an unattended
            # screen is signed out after the idle timeout all the same.
            touch=request.url.path != f"{PREFIX}/queue/rows",
        )
        if found is None:
            raise _SignInNeeded
        return found

    Signed = Annotated[sessions.Signed, Depends(signed)]  # noqa: N806 - a type alias

    def page(
        request: Request,
        template: str,
        status: int = 200,
        who: sessions.Signed | None = None,
        **context: Any,
    ) -> HTMLResponse:
        html = templates.get_template(template).render(
            who=who, csrf=who.csrf if who else None, prefix=PREFIX, **context
        )
        return HTMLResponse(html, status_code=status)

    def trail(
        s: AsyncSession,
        request: Request,
        actor: str,
        action: str,
        route: str,
        *,
        case_id: UUID | None = None,
        packet_version: int | None = None,
    ) -> Any:
        request_id = request.scope.get("csae.request_id")
        return audit.audited(
            s,
            actor=actor,
            action=action,
            route=route,
            request_id=request_id if isinstance(request_id, str) else None,
            clock=clock,
            case_id=case_id,
            packet_version=packet_version,
        )

    async def refused_csrf(
        s: AsyncSession, request: Request, actor: str, route: str, who: sessions.Signed | None
    ) -> HTMLResponse:
        try:
            async with trail(s, request, actor, "console.csrf", route):
                raise Forbidden("the form's CSRF token does not match")
        except Forbidden:
            pass
        log.warning("console form refused: CSRF token", extra={"route": route})
        return page(request, "refused.html", 403, who=who, title="Form refused")

    @router.get("")
    async def home() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/queue", status_code=303)

    @router.get("/sign-in")
    async def sign_in_form(request: Request, ended: str | None = None) -> HTMLResponse:
        """The sign-in form; not audited (nobody is signed in, and it shows no case data)."""
        token = sessions.new_token()
        notice = {
            "idle": "Your session ended: you were signed out after a while without activity, "
            "or your key is no longer accepted. Sign in again.",
            "out": "You are signed out.",
        }.get(ended or "")
        response = page(request, "sign_in.html", title="Sign in", form_csrf=token, notice=notice)
        _cookie(response, request, sessions.SIGN_IN_COOKIE, token, max_age=3600)
        return response

    @router.post("/sign-in")
    async def sign_in(request: Request, s: Db) -> Response:
        """An API key exchanged for a session; a wrong key is refused (401) and recorded."""
        form = await _form(request)
        route = f"POST {PREFIX}/sign-in"
        expected = request.cookies.get(sessions.SIGN_IN_COOKIE)
        if expected is None or not sessions.same(form.get("csrf"), expected):
            return await refused_csrf(s, request, "anonymous", route, None)
        now = clock()
        key = wiring.keys.find(form.get("key", "").strip(), now)
        if key is None:
            try:
                async with trail(s, request, "anonymous", "console.sign_in", route):
                    raise _BadKey
            except _BadKey:
                pass
            token = sessions.new_token()
            refused = page(
                request,
                "sign_in.html",
                401,
                title="Sign in",
                form_csrf=token,
                error="That key was not accepted: it is wrong, revoked or expired.",
            )
            _cookie(refused, request, sessions.SIGN_IN_COOKIE, token, max_age=3600)
            return refused
        actor = f"{key.role.value}:{key.key_id}"  # the logs' (the audit's carries the holder)
        async with trail(s, request, audit_actor(actor, key.holder), "console.sign_in", route):
            await sessions.prune(session=s, now=now, idle=wiring.idle, lifetime=wiring.lifetime)
            token = await sessions.start(session=s, key=key, now=now)
        response = RedirectResponse(f"{PREFIX}/queue", status_code=303)
        _cookie(
            response, request, sessions.COOKIE, token, max_age=int(wiring.lifetime.total_seconds())
        )
        _forget(response, request, sessions.SIGN_IN_COOKIE)
        log.info("console signed in", extra={"actor": actor})
        return response

    @router.post("/sign-out")
    async def sign_out(request: Request, s: Db, who: Signed) -> Response:
        form = await _form(request)
        route = f"POST {PREFIX}/sign-out"
        if not sessions.same(form.get("csrf"), who.csrf):
            return await refused_csrf(s, request, who.audit_actor, route, who)
        async with trail(s, request, who.audit_actor, "console.sign_out", route):
            await sessions.end(session=s, token=who.token)
        response = RedirectResponse(f"{PREFIX}/sign-in?ended=out", status_code=303)
        _forget(response, request, sessions.COOKIE)
        return response

    async def queue_rows(
        request: Request, s: AsyncSession, who: sessions.Signed, route: str
    ) -> dict[str, Any]:
        """The queue's rows for the request's filters, audited as a list is."""
        query = request.query_params
        errors: list[str] = []

        def chosen(name: str, kind: type[Any]) -> Any:
            value = query.get(name) or None
            if value is None:
                return None
            try:
                return kind(value)
            except ValueError:
                errors.append(f"{name}: not one of the choices")
                return None

        status = chosen("status", CaseStatus)
        destination = chosen("destination", DestinationKind)
        priority = chosen("priority", Priority)
        criterion = chosen("criterion", Criterion)
        force = (query.get("force") or "").strip() or None
        if force is not None and not _FORCE.fullmatch(force):
            errors.append("force: at most 64 printable characters")
            force = None
        try:
            after = _queue_after(query.get("after"))
        except ValueError:
            errors.append("after: not a position this console gave")
            after = None
        filters = {
            "status": status.value if status else None,
            "destination": destination.value if destination else None,
            "priority": priority.value if priority else None,
            "criterion": criterion.value if criterion else None,
            "force": force,
        }
        rows: list[Any] = []
        async with trail(s, request, who.audit_actor, "cases.list", route) as facts:
            facts |= {k: v for k, v in filters.items() if v is not None}
            facts["paged"] = after is not None
            if errors:
                raise _InvalidFilter("; ".join(errors))
            found = await queries.queue(
                session=s,
                status=status,
                destination=filters["destination"],
                priority=filters["priority"],
                force_id=force,
                criterion=filters["criterion"],
                after=after,
                limit=QUEUE_PAGE + 1,
                columns=QUEUE_COLUMNS,
            )
            rows = list(found[:QUEUE_PAGE])
            facts["rows"] = len(rows)
        now = clock()
        shown = []
        for row in rows:
            late = late_by(row.due_at, now)
            shown.append(
                {
                    "row": row,
                    "clock": in_words(row.status, row.due_at, now),
                    "late": duration(late) if late is not None else None,
                }
            )
        more = len(found) > QUEUE_PAGE
        chosen_filters = {k: v for k, v in filters.items() if v}
        next_page = None
        if more and rows:
            last = rows[-1]
            position = f"{last.priority}|{last.due_at.isoformat()}|{last.case_id}"
            next_page = urlencode(chosen_filters | {"after": position})
        return {
            "rows": shown,
            "filters": filters,
            "query": urlencode(chosen_filters),
            "next_page": next_page,
            "paged": after is not None,
            "updated": now,
        }

    @router.get("/queue")
    async def queue(request: Request, s: Db, who: Signed) -> HTMLResponse:
        """Cases waiting on a person, most urgent first; refreshes itself."""
        try:
            listed = await queue_rows(request, s, who, f"GET {PREFIX}/queue")
        except _InvalidFilter as exc:
            return page(request, "refused.html", 400, who=who, title="Bad filter", why=str(exc))
        return page(
            request,
            "queue.html",
            who=who,
            title="Queue",
            statuses=[CaseStatus.REVIEW, CaseStatus.READY],
            destinations=list(DestinationKind),
            priorities=list(Priority),
            criteria=list(Criterion),
            refresh_ms=int(wiring.refresh_seconds * 1000),
            **listed,
        )

    @router.get("/queue/rows")
    async def queue_fragment(request: Request, s: Db, who: Signed) -> HTMLResponse:
        """The queue's table body alone, for the page's refresh."""
        try:
            listed = await queue_rows(request, s, who, f"GET {PREFIX}/queue/rows")
        except _InvalidFilter as exc:
            return HTMLResponse(str(exc), status_code=400)
        return page(request, "queue_rows.html", who=who, **listed)

    async def case_view(s: AsyncSession, case: Case, now: datetime) -> dict[str, Any]:
        """What the case page shows of a case (the latest packet built if nobody read it)."""
        packet_text = None
        packet = None
        if case.packet_version >= 1:
            record = await store.packet(
                session=s,
                case_id=case.case_id,
                version=case.packet_version,
                config=wiring.packets,
                now=now,
            )
            if record is not None:
                packet = _packet.validate_python(record.body)
                packet_text = render_text(packet)
        tasks = await queries.case_tasks(session=s, case_id=case.case_id, limit=TIMELINE_LIMIT)
        moves = await queries.case_transitions(
            session=s, case_id=case.case_id, limit=TIMELINE_LIMIT
        )
        emergency = None
        if case.priority == Priority.P0.value:
            if packet_text is not None:
                emergency = packet_text.split("\n\n", 1)[0]
            else:
                emergency = (
                    f"A CHILD MAY BE IN IMMEDIATE DANGER: CALL {UK_EMERGENCY} NOW "
                    "(or the emergency number where the child is)."
                )
        return {
            "case": case,
            "clock": in_words(case.status, case.due_at, now),
            "late": case.due_at is not None and case.due_at <= now,
            "waiting_for": WAITING_FOR.get(case.status),
            "emergency": emergency,
            "packet": packet,
            "packet_text": packet_text,
            "timeline": [_flag_entry(t) for t in tasks],
            "flags_total": case.flag_count,
            "moves": moves,
            "moves_total": await queries.count_transitions(session=s, case_id=case.case_id),
            "allowed": [(to, _MOVE_WORDS[to]) for to in PERSON_TRANSITIONS[case.status]],
            "guidance": NSPCC_GUIDANCE if case.status is CaseStatus.REVIEW else None,
            "versions": list(range(1, case.packet_version + 1)),
        }

    async def show_case(
        request: Request,
        s: AsyncSession,
        who: sessions.Signed,
        case_id: UUID,
        *,
        status: int = 200,
        **extra: Any,
    ) -> HTMLResponse:
        route = f"GET {PREFIX}/cases/{{case_id}}"
        try:
            async with trail(
                s, request, who.audit_actor, "case.read", route, case_id=case_id
            ) as facts:
                if who.role is Role.VIEWER:
                    raise Forbidden("the viewer role sees lists only")
                case = await queries.get_case(session=s, case_id=case_id)
                if case is None:
                    raise NotFound(f"no case {case_id}")
                shown = await case_view(s, case, clock())
                facts["packet_shown"] = case.packet_version or None
        except Forbidden:
            return page(
                request,
                "refused.html",
                403,
                who=who,
                title="Not for this role",
                why="A viewer key sees the queue, without identifiers; opening a case needs an "
                "investigator key.",
            )
        except NotFound:
            return page(request, "refused.html", 404, who=who, title="No such case")
        moved = request.query_params.get("moved")
        done = next((st for st in CaseStatus if st.value == moved), None)
        return page(
            request,
            "case.html",
            status,
            who=who,
            title=f"Case {str(case_id)[:8]}",
            moved=done,
            **shown,
            **extra,
        )

    @router.get("/cases/{case_id}")
    async def case_page(case_id: UUID, request: Request, s: Db, who: Signed) -> HTMLResponse:
        """A case: the emergency call first for a P0, its clocks, moves, packet and flags."""
        return await show_case(request, s, who, case_id)

    @router.get("/cases/{case_id}/packets/{version}/print")
    async def print_view(
        case_id: UUID, version: int, request: Request, s: Db, who: Signed
    ) -> HTMLResponse:
        """A packet version alone, laid out for paper."""
        route = f"GET {PREFIX}/cases/{{case_id}}/packets/{{version}}/print"
        held = version if 1 <= version <= 2**31 - 1 else None
        try:
            async with trail(
                s,
                request,
                who.audit_actor,
                "packet.read",
                route,
                case_id=case_id,
                packet_version=held,
            ) as facts:
                facts["format"] = "print"
                if who.role is Role.VIEWER:
                    raise Forbidden("the viewer role sees lists only")
                record = None
                if held is not None:
                    record = await store.packet(
                        session=s,
                        case_id=case_id,
                        version=held,
                        config=wiring.packets,
                        now=clock(),
                    )
                if record is None:
                    raise NotFound(f"no packet version {version} for case {case_id}")
                text = render_text(_packet.validate_python(record.body))
        except Forbidden:
            return page(request, "refused.html", 403, who=who, title="Not for this role")
        except NotFound:
            return page(request, "refused.html", 404, who=who, title="No such packet")
        return page(
            request,
            "print.html",
            who=who,
            title=f"Packet version {version} of case {str(case_id)[:8]}",
            case_id=case_id,
            version=version,
            packet_text=text,
        )

    @router.post("/cases/{case_id}/transitions")
    async def move(case_id: UUID, request: Request, s: Db, who: Signed) -> Response:
        """A move from the case page's forms, through the API's own transition function."""
        form = await _form(request)
        route = f"POST {PREFIX}/cases/{{case_id}}/transitions"
        if not sessions.same(form.get("csrf"), who.csrf):
            return await refused_csrf(s, request, who.audit_actor, route, who)
        entered = {k: v for k, v in form.items() if k != "csrf"}
        fields: dict[str, Any] = {
            k: v.strip() for k, v in entered.items() if k in _MOVE_FIELDS and v.strip()
        }
        try:
            asked = TransitionRequest.model_validate(fields)
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}"
                for e in safe_errors(exc.errors())
            ]
            return await show_case(
                request, s, who, case_id, status=400, problems=problems, entered=entered
            )
        try:
            async with trail(
                s,
                request,
                who.audit_actor,
                "case.transition",
                route,
                case_id=case_id,
                packet_version=asked.packet_version,
            ) as facts:
                facts["to"] = asked.to.value
                if who.role is Role.VIEWER:
                    raise Forbidden("the viewer role may not move cases")
                moved = await store.transition_case(
                    session=s,
                    case_id=case_id,
                    to=asked.to,
                    actor=who.actor,
                    now=clock(),
                    packets=wiring.packets,
                    external_reference=asked.external_reference,
                    note=asked.note,
                    packet_version=asked.packet_version,
                    expected_updated_at=asked.expected_updated_at,
                    # What the console shows and copies is the packet's text: a submission's
                    # receipt keeps the sha256 of those bytes.
                    sent_format=_sent_format(asked),
                )
                facts |= {"from": moved.previous.value, "status": moved.case.status.value}
                facts |= moved.receipt_facts()
        except Conflict as exc:
            return await show_case(
                request,
                s,
                who,
                case_id,
                status=409,
                conflict=str(exc),
                entered=entered,
            )
        except ReferralError as exc:
            return await show_case(
                request, s, who, case_id, status=400, problems=[str(exc)], entered=entered
            )
        wiring.metrics.case_moved(
            priority=moved.case.submitted_due_priority,
            ready_seconds=moved.ready_seconds,
            breaches=[(p.value, stage.value) for p, stage in moved.breaches],
            supplement_to=moved.case.destination if moved.supplement else None,
        )
        log.info(
            "case moved",
            extra={
                "case_id": str(case_id),
                "from": moved.previous.value,
                "to": moved.case.status.value,
            },
        )
        return RedirectResponse(f"{PREFIX}/cases/{case_id}?moved={asked.to.value}", status_code=303)

    return router


def _sent_format(asked: TransitionRequest) -> Format | None:
    if asked.to is CaseStatus.SUBMITTED and asked.format is None:
        return "text"
    return asked.format


class _BadKey(Unauthenticated):
    """A sign-in with a key that is not valid (recorded as 401)."""


class _InvalidFilter(ReferralError):
    """A queue filter that is not one of the choices (recorded as 400)."""


_MOVE_FIELDS = frozenset(TransitionRequest.model_fields)
QUEUE_COLUMNS = tuple(
    getattr(Case, name)
    for name in (
        "case_id",
        "status",
        "priority",
        "destination",
        "destination_key",
        "force_id",
        "criteria",
        "first_detected_at",
        "due_at",
        "due_stage",
    )
)
"""What the queue reads of a case: no personal identifier, for any role."""


def _flag_entry(task: Task) -> Mapping[str, Any]:
    """A flag as routed onto the case: when, how urgent, the decision and the rules that fired
    with the conditions each met."""
    body = task.body
    return {
        "flag_id": task.flag_id,
        "routed_at": task.routed_at,
        "priority": task.priority,
        "decision": task.decision,
        "criteria": body.get("criteria", []),
        "escalation": body.get("escalation"),
        "held": body.get("held"),
        "rules": _rules.validate_python(body.get("rules", [])),
    }


def install(app: FastAPI, wiring: Wiring) -> None:
    """Serve the console from `app`: its pages, its static files, its headers, and the way
    back to the sign-in page when a session has ended."""
    app.include_router(console(wiring))
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="console-static")

    @app.exception_handler(_SignInNeeded)
    async def sign_in_needed(request: Request, exc: _SignInNeeded) -> Response:
        if request.url.path == f"{PREFIX}/queue/rows":
            return Response("signed out", status_code=401, media_type="text/plain")
        ended = "?ended=idle" if sessions.COOKIE in request.cookies else ""
        response = RedirectResponse(f"{PREFIX}/sign-in{ended}", status_code=303)
        _forget(response, request, sessions.COOKIE)
        return response

    app.add_middleware(ConsoleHeaders)
