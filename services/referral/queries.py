"""Reads of cases, flags and decisions for the API. No writes."""

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, Row, Select, Text, Uuid, bindparam, cast, func, select, tuple_
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from services.referral.enums import CaseStatus
from services.referral.models import (
    Case,
    CaseTransition,
    DecisionRecord,
    DeliveryReceipt,
    Flag,
    Task,
)


@dataclass(frozen=True, slots=True)
class CaseRead:
    """A case as its detail shows it, read in one query."""

    case: Case
    moves: int
    """How many moves the case has."""
    tasks: int
    """How many tasks the case has."""
    transitions: str
    """Its latest moves (at most the limit asked plus one, to tell whether earlier ones
    exist), oldest first, as a JSON array (`at` in ISO 8601, UTC): validated from the
    database's text by pydantic at once, not parsed into Python first."""
    flag_ids: list[UUID]
    """The flags of its latest tasks, oldest first, each once."""
    receipts: str
    """Its latest delivery receipts (at most the moves' limit), oldest first, as a JSON array
    (`sent_at` in ISO 8601, UTC)."""


_UTC_ISO = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'
_CASE_ID = bindparam("case_id", type_=Uuid())
_LAST_MOVE = 2**63 - 1
"""`moves_before` when none is given: past every move."""


def _json_array(aggregated: Any) -> Any:
    """A `json_agg` as JSON text, `[]` when it aggregated nothing: validated by pydantic
    straight from the text, never parsed into Python first."""
    return select(cast(func.coalesce(aggregated, func.json_build_array()), Text)).scalar_subquery()


def _latest_moves() -> Any:
    """The latest `:moves_limit` moves before `:moves_before`, as one JSON array, oldest first."""
    t = CaseTransition
    rows = (
        select(t)
        .where(t.case_id == _CASE_ID, t.transition_id < bindparam("moves_before"))
        .order_by(t.transition_id.desc())
        .limit(bindparam("moves_limit"))
        .subquery()
    )
    move = func.json_build_object(
        "transition_id", rows.c.transition_id,
        "at", func.to_char(func.timezone("UTC", rows.c.at), _UTC_ISO),
        "actor", rows.c.actor,
        "from_status", rows.c.from_status,
        "to_status", rows.c.to_status,
        "external_reference", rows.c.external_reference,
        "note", rows.c.note,
        "packet_version", rows.c.packet_version,
    )  # fmt: skip
    return _json_array(func.json_agg(aggregate_order_by(move, rows.c.transition_id), type_=JSON))


def _latest_flags() -> Any:
    """The flags of the latest `:flags_limit` tasks after the latest `:flags_offset`, oldest
    first."""
    rows = (
        select(Task.flag_id, Task.routed_at, Task.task_id)
        .where(Task.case_id == _CASE_ID)
        .order_by(Task.routed_at.desc(), Task.task_id.desc())
        .offset(bindparam("flags_offset"))
        .limit(bindparam("flags_limit"))
        .subquery()
    )
    flags = func.array_agg(aggregate_order_by(rows.c.flag_id, rows.c.routed_at, rows.c.task_id))
    return select(flags).scalar_subquery()


def _latest_receipts() -> Any:
    """The latest `:moves_limit` delivery receipts, as one JSON array, oldest first. Served by
    (case_id, sent_at)."""
    r = DeliveryReceipt
    rows = (
        select(r)
        .where(r.case_id == _CASE_ID)
        .order_by(r.sent_at.desc(), r.receipt_id)
        .limit(bindparam("moves_limit"))
        .subquery()
    )
    receipt = func.json_build_object(
        "receipt_id", rows.c.receipt_id,
        "packet_version", rows.c.packet_version,
        "format", rows.c.format,
        "sha256", rows.c.sha256,
        "size", rows.c.size,
        "destination_key", rows.c.destination_key,
        "sent_at", func.to_char(func.timezone("UTC", rows.c.sent_at), _UTC_ISO),
        "actor", rows.c.actor,
        "external_reference", rows.c.external_reference,
    )  # fmt: skip
    return _json_array(
        func.json_agg(
            aggregate_order_by(receipt, rows.c.sent_at, rows.c.receipt_id.desc()), type_=JSON
        )
    )


_CASE_READ = select(
    Case,
    # How many moves and tasks (index-only on (case_id, transition_id) and (case_id, routed_at)).
    select(func.count())
    .select_from(CaseTransition)
    .where(CaseTransition.case_id == _CASE_ID)
    .scalar_subquery(),
    select(func.count()).select_from(Task).where(Task.case_id == _CASE_ID).scalar_subquery(),
    _latest_moves(),
    _latest_flags(),
    _latest_receipts(),
).where(Case.case_id == _CASE_ID)
"""Built once: a statement built per request costs more CPU than the query takes."""


async def get_case(*, session: AsyncSession, case_id: UUID) -> Case | None:
    return await session.get(Case, case_id)


async def case_transitions(
    *, session: AsyncSession, case_id: UUID, before: int | None = None, limit: int | None = None
) -> list[CaseTransition]:
    """A case's moves, oldest first; with `limit`, only the latest `limit` (before the move
    `before`, when given), still oldest first. Served by (case_id, transition_id)."""
    query = select(CaseTransition).where(CaseTransition.case_id == case_id)
    if before is not None:
        query = query.where(CaseTransition.transition_id < before)
    if limit is None:
        return list((await session.scalars(query.order_by(CaseTransition.transition_id))).all())
    rows = await session.scalars(query.order_by(CaseTransition.transition_id.desc()).limit(limit))
    return list(reversed(rows.all()))


async def count_transitions(*, session: AsyncSession, case_id: UUID) -> int:
    """How many moves a case has (index-only on (case_id, transition_id))."""
    total = await session.scalar(
        select(func.count()).select_from(CaseTransition).where(CaseTransition.case_id == case_id)
    )
    return int(total or 0)


async def read_case(
    *,
    session: AsyncSession,
    case_id: UUID,
    moves_before: int | None = None,
    moves_limit: int = 200,
    flags_offset: int = 0,
    flags_limit: int = 200,
) -> CaseRead | None:
    """A case with its totals, its latest moves and the flags of its latest tasks: one query
    (one round trip), each part served by an index ((case_id, transition_id), (case_id,
    routed_at))."""
    values = {
        "case_id": case_id,
        "moves_before": _LAST_MOVE if moves_before is None else moves_before,
        "moves_limit": moves_limit,
        "flags_offset": flags_offset,
        "flags_limit": flags_limit,
    }
    row = (await session.execute(_CASE_READ, values)).first()
    if row is None:
        return None
    case, move_count, task_count, transitions, flag_ids, receipts = row
    return CaseRead(
        case,
        int(move_count),
        int(task_count),
        transitions,
        list(dict.fromkeys(flag_ids or ())),
        receipts,
    )


async def list_cases(
    *,
    session: AsyncSession,
    status: CaseStatus | None = None,
    destination: str | None = None,
    priority: str | None = None,
    force_id: str | None = None,
    criterion: str | None = None,
    since: datetime | None = None,
    overdue_at: datetime | None = None,
    after: tuple[datetime, UUID] | None = None,
    limit: int = 50,
    columns: Sequence[InstrumentedAttribute[Any]] = (),
) -> Sequence[Row[Any]]:
    """Cases, oldest first, after the (created_at, case_id) cursor: rows of `columns` only (no
    ORM objects: a page is read, validated and written out, never changed).

    With `overdue_at`, only the cases whose current stage was due before it, the most overdue
    first, after the (due_at, case_id) cursor. Each filter has an index ending with the order
    (migration 0008), so a page stops after `limit` rows.
    """
    given: dict[str, object] = {
        "overdue_at": overdue_at,
        "force_id": force_id,
        "criterion": None if criterion is None else [criterion],
        "since": since,
        "status": status,
        "destination": destination,
        "priority": priority,
    }
    values: dict[str, object] = {k: v for k, v in given.items() if v is not None}
    if after is not None:
        values |= {"after_at": after[0], "after_id": after[1]}
    query = _listing(tuple(c.key for c in columns), frozenset(values))
    rows: Sequence[Row[Any]] = (await session.execute(query, {**values, "limit": limit})).all()
    return rows


_FILTERS: dict[str, Any] = {
    "overdue_at": lambda: Case.due_at < bindparam("overdue_at"),
    "force_id": lambda: Case.force_id == bindparam("force_id"),
    "criterion": lambda: Case.criteria.contains(bindparam("criterion")),
    "since": lambda: Case.created_at >= bindparam("since"),
    "status": lambda: Case.status == bindparam("status"),
    "destination": lambda: Case.destination == bindparam("destination"),
    "priority": lambda: Case.priority == bindparam("priority"),
}


@functools.lru_cache(maxsize=512)
def _listing(columns: tuple[str, ...], given: frozenset[str]) -> Select[Any]:
    """The list's statement for the filters given, built once per combination (at most a few
    hundred): a statement built per request costs more CPU than the query takes."""
    overdue = "overdue_at" in given
    key = (Case.due_at, Case.case_id) if overdue else (Case.created_at, Case.case_id)
    query = select(*(getattr(Case, name) for name in columns))
    for name, condition in _FILTERS.items():
        if name in given:
            query = query.where(condition())
    if "after_at" in given:
        query = query.where(tuple_(*key) > tuple_(bindparam("after_at"), bindparam("after_id")))
    return query.order_by(*key).limit(bindparam("limit"))


async def get_decision(*, session: AsyncSession, flag_id: UUID) -> DecisionRecord | None:
    return await session.get(DecisionRecord, flag_id)


async def cases_for_flag(*, session: AsyncSession, flag_id: UUID) -> list[UUID]:
    rows = await session.scalars(select(Task.case_id).where(Task.flag_id == flag_id))
    return list(dict.fromkeys(rows.all()))


async def service_of(*, session: AsyncSession, case_id: UUID) -> str | None:
    """The platform service a case's flags came from (its first flag's), for reports that name
    it; None when the case has no flag. Flags stored in one batch are ordered by detection, then
    id: a report, and the receipt hashing it, must name the same service every time."""
    service = await session.scalar(
        select(Flag.body["platform"]["service"].astext)
        .join(Task, Task.flag_id == Flag.flag_id)
        .where(Task.case_id == case_id)
        .order_by(Task.received_at, Flag.detected_at, Flag.flag_id)
        .limit(1)
    )
    return str(service) if service is not None else None


QueuePosition = tuple[str, datetime, UUID]
"""Where a queue page ends: (priority, due_at, case_id)."""


async def queue(
    *,
    session: AsyncSession,
    status: CaseStatus | None = None,
    destination: str | None = None,
    priority: str | None = None,
    force_id: str | None = None,
    criterion: str | None = None,
    after: QueuePosition | None = None,
    limit: int = 50,
    columns: Sequence[InstrumentedAttribute[Any]] = (),
) -> Sequence[Row[Any]]:
    """The cases waiting on a person (under review, or ready to send), most urgent first: by
    priority (P0 first), then by deadline (the most overdue, then the least time left), after
    the (priority, due_at, case_id) position. Served by the partial (priority, due_at,
    case_id) index over waiting cases (migration 0008)."""
    key = (Case.priority, Case.due_at, Case.case_id)
    query = select(*columns).where(Case.due_at.is_not(None)).order_by(*key).limit(limit)
    if status is not None:
        query = query.where(Case.status == status)
    if destination is not None:
        query = query.where(Case.destination == destination)
    if priority is not None:
        query = query.where(Case.priority == priority)
    if force_id is not None:
        query = query.where(Case.force_id == force_id)
    if criterion is not None:
        query = query.where(Case.criteria.contains([criterion]))
    if after is not None:
        query = query.where(tuple_(*key) > tuple_(*after))
    return (await session.execute(query)).all()


async def case_tasks(*, session: AsyncSession, case_id: UUID, limit: int) -> list[Task]:
    """The latest `limit` tasks of a case (its flags as routed, with the rules that fired),
    oldest first. Served by (case_id, routed_at)."""
    rows = await session.scalars(
        select(Task)
        .where(Task.case_id == case_id)
        .order_by(Task.routed_at.desc(), Task.task_id.desc())
        .limit(limit)
    )
    return list(reversed(rows.all()))
