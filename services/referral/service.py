"""Persistence of decisions, flags, tasks, cases and packets. Every write is idempotent."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

from sqlalchemy import select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.referral import Decision, Priority, ReferralTask
from services.referral.enums import OPEN_STATUSES, CaseStatus
from services.referral.models import Case, DecisionRecord, Flag, PacketRecord, Task
from services.referral.packets import Reporter, build_packet
from services.referral.sla import DEFAULT_DEADLINES
from services.router.forces import ForceDirectory

_ORDER = list(Priority)


@dataclass(frozen=True, slots=True)
class AppliedTask:
    """What applying one new task did, for metrics."""

    task: ReferralTask
    case_id: UUID
    status: CaseStatus
    became_ready: bool


async def record_decisions(*, session: AsyncSession, decisions: Sequence[Decision]) -> None:
    """Store decisions by flag id; a redelivered decision is ignored."""
    if not decisions:
        return
    rows = [
        {
            "flag_id": d.flag_id,
            "outcome": d.outcome.value,
            "priority": d.priority.value if d.priority else None,
            "criteria": [c.value for c in d.criteria],
            "immediate_danger": d.immediate_danger,
            "policy_version": d.policy_version,
            "decided_at": d.decided_at,
            "body": d.model_dump(mode="json"),
        }
        for d in {d.flag_id: d for d in decisions}.values()
    ]
    await session.execute(insert(DecisionRecord).values(rows).on_conflict_do_nothing())


async def apply_tasks(
    *,
    session: AsyncSession,
    tasks: Sequence[ReferralTask],
    reporter: Reporter,
    directory: ForceDirectory,
    now: datetime,
) -> list[AppliedTask]:
    """Attach new tasks to their open cases (opening them when needed) and rebuild packets.

    Tasks already applied are skipped, so replaying a batch changes nothing.
    """
    unique = list({t.task_id: t for t in tasks}.values())
    if not unique:
        return []
    known = set(
        (
            await session.scalars(
                select(Task.task_id).where(Task.task_id.in_([t.task_id for t in unique]))
            )
        ).all()
    )
    new = [t for t in unique if t.task_id not in known]
    if not new:
        return []
    flag_rows = [
        {
            "flag_id": t.flag.flag_id,
            "org_id": t.flag.platform.org_id,
            "source_kind": t.flag.source.kind.value,
            "detected_at": t.flag.detected_at,
            "received_at": now,
            "body": t.flag.model_dump(mode="json"),
        }
        for t in {t.flag_id: t for t in new}.values()
    ]
    await session.execute(insert(Flag).values(flag_rows).on_conflict_do_nothing())

    applied: list[AppliedTask] = []
    by_case: dict[str, list[ReferralTask]] = {}
    for task in new:
        by_case.setdefault(task.case_key, []).append(task)
    for key, case_tasks in by_case.items():
        applied.extend(
            await _apply_to_case(
                session=session,
                case_key=key,
                tasks=case_tasks,
                reporter=reporter,
                directory=directory,
                now=now,
            )
        )
    return applied


async def _open_case(*, session: AsyncSession, case_key: str) -> Case | None:
    return await session.scalar(
        select(Case)
        .where(Case.case_key == case_key, Case.status.in_(OPEN_STATUSES))
        .with_for_update()
    )


async def _apply_to_case(
    *,
    session: AsyncSession,
    case_key: str,
    tasks: list[ReferralTask],
    reporter: Reporter,
    directory: ForceDirectory,
    now: datetime,
) -> list[AppliedTask]:
    first = tasks[0]
    refer = any(t.decision == "refer" for t in tasks)
    case = await _open_case(session=session, case_key=case_key)
    was_ready = case is not None and case.status is not CaseStatus.REVIEW
    if case is None:
        case = Case(
            case_id=uuid4(),
            case_key=case_key,
            destination=first.destination.kind.value,
            destination_key=first.destination.key,
            force_id=first.destination.force_id,
            mechanism=first.destination.mechanism,
            country=first.destination.country,
            status=CaseStatus.REVIEW,
            priority=first.priority.value,
            criteria=[],
            org_id=first.flag.platform.org_id,
            subject_account_id=first.flag.subject.account_id,
            first_detected_at=min(t.detected_at for t in tasks),
            created_at=now,
            updated_at=now,
            ready_due_at=now,
            submitted_due_at=now,
            packet_version=0,
        )
        session.add(case)
    priority = min([Priority(case.priority), *(t.priority for t in tasks)], key=_ORDER.index)
    case.priority = priority.value
    case.criteria = sorted({*case.criteria, *(c.value for t in tasks for c in t.criteria)})
    case.first_detected_at = min([case.first_detected_at, *(t.detected_at for t in tasks)])
    deadlines = DEFAULT_DEADLINES[priority]
    case.ready_due_at = case.first_detected_at + deadlines.ready
    case.submitted_due_at = case.first_detected_at + deadlines.submitted
    case.updated_at = now
    if refer and case.status is CaseStatus.REVIEW:
        case.status = CaseStatus.READY
        case.ready_at = now
        case.review_due_at = None
    elif case.status is CaseStatus.REVIEW:
        case.review_due_at = case.first_detected_at + deadlines.review
    await session.flush()

    await session.execute(
        insert(Task)
        .values(
            [
                {
                    "task_id": t.task_id,
                    "case_id": case.case_id,
                    "flag_id": t.flag_id,
                    "decision": t.decision,
                    "priority": t.priority.value,
                    "routed_at": t.routed_at,
                    "received_at": now,
                    "body": t.model_dump(mode="json"),
                }
                for t in tasks
            ]
        )
        .on_conflict_do_nothing()
    )
    if case.status is not CaseStatus.REVIEW:
        await _rebuild_packet(
            session=session, case=case, reporter=reporter, directory=directory, now=now
        )
    became_ready = not was_ready and case.status is CaseStatus.READY
    return [AppliedTask(t, case.case_id, case.status, became_ready) for t in tasks]


async def _rebuild_packet(
    *,
    session: AsyncSession,
    case: Case,
    reporter: Reporter,
    directory: ForceDirectory,
    now: datetime,
) -> None:
    """Build the next packet version from every task of the case; earlier versions stay."""
    bodies = (await session.scalars(select(Task.body).where(Task.case_id == case.case_id))).all()
    tasks = [ReferralTask.model_validate(body) for body in bodies]
    version = case.packet_version + 1
    packet = build_packet(
        case_id=case.case_id,
        version=version,
        destination=tasks[0].destination,
        tasks=tasks,
        reporter=reporter,
        directory=directory,
        now=now,
    )
    session.add(
        PacketRecord(
            case_id=case.case_id,
            version=version,
            kind=packet.kind,
            built_at=now,
            body=packet.model_dump(mode="json"),
        )
    )
    case.packet_version = version


async def get_case(*, session: AsyncSession, case_id: UUID) -> Case | None:
    return await session.get(Case, case_id)


async def list_cases(
    *,
    session: AsyncSession,
    status: CaseStatus | None = None,
    destination: str | None = None,
    priority: str | None = None,
    force_id: str | None = None,
    criterion: str | None = None,
    since: datetime | None = None,
    after: tuple[datetime, UUID] | None = None,
    limit: int = 50,
) -> list[Case]:
    """Cases, newest last, after the (created_at, case_id) cursor."""
    query = select(Case).order_by(Case.created_at, Case.case_id).limit(limit)
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
        query = query.where(tuple_(Case.created_at, Case.case_id) > tuple_(*after))
    return list((await session.scalars(query)).all())


async def get_packet(*, session: AsyncSession, case_id: UUID, version: int) -> PacketRecord | None:
    return await session.get(PacketRecord, (case_id, version))


async def case_flag_ids(*, session: AsyncSession, case_id: UUID) -> list[UUID]:
    rows = await session.scalars(
        select(Task.flag_id).where(Task.case_id == case_id).order_by(Task.routed_at)
    )
    return list(dict.fromkeys(rows.all()))


async def get_decision(*, session: AsyncSession, flag_id: UUID) -> DecisionRecord | None:
    return await session.get(DecisionRecord, flag_id)


async def cases_for_flag(*, session: AsyncSession, flag_id: UUID) -> list[UUID]:
    rows = await session.scalars(select(Task.case_id).where(Task.flag_id == flag_id))
    return list(dict.fromkeys(rows.all()))
