"""Reads of cases, flags and decisions for the API. No writes."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Row, func, select, tuple_
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


def _totals(case_id: UUID) -> tuple[Any, Any]:
    """How many moves and tasks a case has, as subqueries (index-only on (case_id,
    transition_id) and (case_id, routed_at))."""
    moves = (
        select(func.count()).select_from(CaseTransition).where(CaseTransition.case_id == case_id)
    )
    tasks = select(func.count()).select_from(Task).where(Task.case_id == case_id)
    return moves.scalar_subquery(), tasks.scalar_subquery()


async def get_case(*, session: AsyncSession, case_id: UUID) -> tuple[Case, int, int] | None:
    """A case, with how many moves and tasks it has: one query."""
    moves, tasks = _totals(case_id)
    row = (await session.execute(select(Case, moves, tasks).where(Case.case_id == case_id))).first()
    return None if row is None else (row[0], int(row[1]), int(row[2]))


async def case_totals(*, session: AsyncSession, case_id: UUID) -> tuple[int, int]:
    """How many moves and tasks a case has: one query."""
    row = (await session.execute(select(*_totals(case_id)))).one()
    return int(row[0]), int(row[1])


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
    key = (Case.due_at, Case.case_id) if overdue_at is not None else (Case.created_at, Case.case_id)
    query = select(*columns).order_by(*key).limit(limit)
    if overdue_at is not None:
        query = query.where(Case.due_at < overdue_at)
    if force_id is not None:
        query = query.where(Case.force_id == force_id)
    if criterion is not None:
        query = query.where(Case.criteria.contains([criterion]))
    if since is not None:
        query = query.where(Case.created_at >= since)
    if status is not None:
        query = query.where(Case.status == status)
    if destination is not None:
        query = query.where(Case.destination == destination)
    if priority is not None:
        query = query.where(Case.priority == priority)
    if after is not None:
        query = query.where(tuple_(*key) > tuple_(*after))
    return (await session.execute(query)).all()


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


async def case_flag_ids(
    *, session: AsyncSession, case_id: UUID, offset: int = 0, limit: int | None = None
) -> list[UUID]:
    """The flags of a case's tasks, oldest first; with `limit`, the flags of the latest `limit`
    tasks after skipping the latest `offset` (still oldest first). Served by (case_id,
    routed_at)."""
    query = select(Task.flag_id).where(Task.case_id == case_id)
    if limit is None:
        rows = (await session.scalars(query.order_by(Task.routed_at))).all()
    else:
        page = query.order_by(Task.routed_at.desc(), Task.task_id.desc())
        rows = list(reversed((await session.scalars(page.offset(offset).limit(limit))).all()))
    return list(dict.fromkeys(rows))


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


async def case_receipts(
    *, session: AsyncSession, case_id: UUID, limit: int
) -> Sequence[DeliveryReceipt]:
    """A case's delivery receipts, oldest first (the latest `limit` of them)."""
    rows = await session.scalars(
        select(DeliveryReceipt)
        .where(DeliveryReceipt.case_id == case_id)
        .order_by(DeliveryReceipt.sent_at.desc(), DeliveryReceipt.receipt_id)
        .limit(limit)
    )
    return list(rows)[::-1]


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
