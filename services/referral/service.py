"""Persistence of decisions, flags, tasks, cases and packets. Every write is idempotent."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import DateTime, and_, func, literal, select, tuple_, update
from sqlalchemy import case as case_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.packets import Supplement
from schemas.referral import Decision, Priority, ReferralTask
from services.domain.deadlines import DEFAULT_DEADLINES, Deadlines
from services.domain.forces import ForceDirectory
from services.referral.enums import OPEN_STATUSES, CaseStatus, Stage
from services.referral.exceptions import Conflict, InvalidRequest, NotFound
from services.referral.lifecycle import SYSTEM_ACTOR, SYSTEM_TRANSITIONS, check_transition
from services.referral.models import (
    Case,
    CaseTransition,
    DecisionRecord,
    Flag,
    PacketRecord,
    Task,
)
from services.referral.packets import Reporter, build_packet

_ORDER = list(Priority)


@dataclass(frozen=True, slots=True)
class AppliedTask:
    """What applying one new task did, for metrics."""

    task: ReferralTask
    case_id: UUID
    status: CaseStatus
    became_ready: bool
    settled: tuple[tuple[Priority, Stage], ...] = ()
    """Breaches of the round a supplement closed, counted here before their marks reset."""


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
    deadlines: Mapping[Priority, Deadlines] = DEFAULT_DEADLINES,
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
                deadlines=deadlines,
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


def _due(task: ReferralTask, stage: Stage, deadlines: Mapping[Priority, Deadlines]) -> datetime:
    """When `stage` is due for this task's flag: its clock starts at detection."""
    allowed: timedelta = getattr(deadlines[task.priority], stage.value)
    return task.detected_at + allowed


def _target_status(current: CaseStatus | None, refer: bool) -> CaseStatus | None:
    """Where a case goes when tasks join it (None: it stays where it is). Pure."""
    if current is None:
        return CaseStatus.READY if refer else CaseStatus.REVIEW
    if current is CaseStatus.REVIEW and refer:
        return CaseStatus.READY
    if current in (CaseStatus.SUBMITTED, CaseStatus.ACKNOWLEDGED):
        return CaseStatus.READY  # new evidence on a case already sent: a supplement to send
    return None


def _first_due(
    tasks: Sequence[ReferralTask],
    deadlines: Mapping[Priority, Deadlines],
    stage_for: Callable[[ReferralTask], Stage],
) -> tuple[datetime, str]:
    """The earliest deadline among `tasks` for a stage, and the priority it follows."""
    due, task = min(
        ((_due(t, stage_for(t), deadlines), t) for t in tasks), key=lambda pair: pair[0]
    )
    return due, task.priority.value


def _set_clock(case: Case, stage: Stage, due: datetime, priority: str, *, sooner: bool) -> None:
    """Set a stage's deadline and the priority it follows; with `sooner`, only to bring it
    forward. The priority labels the stage's SLA metrics."""
    current: datetime | None = getattr(case, f"{stage.value}_due_at")
    if sooner and current is not None and current <= due:
        return
    setattr(case, f"{stage.value}_due_at", due)
    setattr(case, f"{stage.value}_due_priority", priority)


def _next_round(
    case: Case,
    unsent: Sequence[ReferralTask],
    deadlines: Mapping[Priority, Deadlines],
    *,
    already_built: bool = False,
) -> tuple[tuple[Priority, Stage], ...]:
    """Close the round that was sent and start the clocks of its supplement. Pure over the row.

    A stage of the closing round that was done late and not yet counted by a sweep is marked and
    returned, so resetting the marks for the new round never loses a breach. With
    `already_built` (a person sent an older version while a later one was built), the new
    flags were ready on time in that later version: the round has no ready clock.
    """
    settled: list[tuple[Priority, Stage]] = []
    if (
        case.ready_breached_at is None
        and case.ready_due_at is not None
        and case.ready_at is not None
        and case.ready_at > case.ready_due_at
    ):
        settled.append((Priority(case.ready_due_priority or case.priority), Stage.READY))
    if (
        case.submitted_breached_at is None
        and case.submitted_at is not None
        and case.submitted_at > case.submitted_due_at
    ):
        settled.append((Priority(case.submitted_due_priority), Stage.SUBMITTED))
    if already_built:
        case.ready_due_at = case.ready_due_priority = None
    else:
        _set_clock(
            case, Stage.READY, *_first_due(unsent, deadlines, lambda t: Stage.READY), sooner=False
        )
    # A flag only for review has not been confirmed by a person: whoever sends the supplement
    # reviews it, within the review deadline.
    submitted = _first_due(
        unsent, deadlines, lambda t: Stage.SUBMITTED if t.decision == "refer" else Stage.REVIEW
    )
    _set_clock(case, Stage.SUBMITTED, *submitted, sooner=False)
    case.ready_breached_at = case.submitted_breached_at = None
    return tuple(settled)


def _start_clocks(
    case: Case,
    tasks: Sequence[ReferralTask],
    target: CaseStatus | None,
    deadlines: Mapping[Priority, Deadlines],
) -> tuple[tuple[Priority, Stage], ...]:
    """Set the case's deadlines for the stage the new tasks put it in. Pure over the row."""
    if case.status in (CaseStatus.SUBMITTED, CaseStatus.ACKNOWLEDGED):
        return _next_round(case, tasks, deadlines)
    refer = [t for t in tasks if t.decision == "refer"]
    submitted = _first_due(tasks, deadlines, lambda t: Stage.SUBMITTED)
    _set_clock(case, Stage.SUBMITTED, *submitted, sooner=True)
    if target is CaseStatus.REVIEW or (target is None and case.status is CaseStatus.REVIEW):
        review = _first_due(tasks, deadlines, lambda t: Stage.REVIEW)
        _set_clock(case, Stage.REVIEW, *review, sooner=True)
    elif target is CaseStatus.READY and refer:
        ready = _first_due(refer, deadlines, lambda t: Stage.READY)
        _set_clock(case, Stage.READY, *ready, sooner=True)
    return ()


async def _apply_to_case(
    *,
    session: AsyncSession,
    case_key: str,
    tasks: list[ReferralTask],
    reporter: Reporter,
    directory: ForceDirectory,
    deadlines: Mapping[Priority, Deadlines],
    now: datetime,
) -> list[AppliedTask]:
    first = tasks[0]
    case = await _open_case(session=session, case_key=case_key)
    opened = case is None
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
            packet_version=0,
        )
        session.add(case)
    target = _target_status(
        None if opened else case.status, any(t.decision == "refer" for t in tasks)
    )
    case.priority = min(
        [Priority(case.priority), *(t.priority for t in tasks)], key=_ORDER.index
    ).value
    case.criteria = sorted({*case.criteria, *(c.value for t in tasks for c in t.criteria)})
    case.first_detected_at = min([case.first_detected_at, *(t.detected_at for t in tasks)])
    case.updated_at = now
    settled = _start_clocks(case, tasks, target, deadlines)
    was_ready = not opened and case.status is CaseStatus.READY
    if opened and target is not None:
        case.status = target
        case.ready_at = now if target is CaseStatus.READY else None
    # A more urgent flag can bring the deadline the case waits on forward.
    case.due_at, case.due_stage = _waiting_on(case)
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
                    "attached_version": case.packet_version,
                    "body": t.model_dump(mode="json"),
                }
                for t in tasks
            ]
        )
        .on_conflict_do_nothing()
    )
    packets = CaseConfig(reporter=reporter, directory=directory, deadlines=deadlines)
    if opened:
        if case.status is CaseStatus.READY:
            await _rebuild_packet(session=session, case=case, packets=packets, now=now)
        _log_transition(session, case, None, actor=SYSTEM_ACTOR, now=now, note="opened")
    elif target is not None:
        await _transition(
            session=session,
            case=case,
            to=target,
            actor=SYSTEM_ACTOR,
            now=now,
            packets=packets,
            by_system=True,
            note=SYSTEM_TRANSITIONS[(case.status, target)],
        )
    elif case.status is CaseStatus.READY:
        await _rebuild_packet(session=session, case=case, packets=packets, now=now)
    became_ready = not was_ready and case.status is CaseStatus.READY
    return [
        AppliedTask(t, case.case_id, case.status, became_ready, settled if i == 0 else ())
        for i, t in enumerate(tasks)
    ]


@dataclass(frozen=True, slots=True)
class CaseConfig:
    """What moving a case needs besides the case: the sender and force directory for its
    packets, and the SLA deadlines for its clocks."""

    reporter: Reporter
    directory: ForceDirectory
    deadlines: Mapping[Priority, Deadlines] = field(default_factory=lambda: DEFAULT_DEADLINES)


def _waiting_on(case: Case) -> tuple[datetime | None, str | None]:
    """The deadline the case waits on in its current state, and that stage's name."""
    if case.status is CaseStatus.REVIEW:
        return case.review_due_at, Stage.REVIEW.value
    if case.status is CaseStatus.READY:
        return case.submitted_due_at, Stage.SUBMITTED.value
    return None, None


def _log_transition(
    session: AsyncSession,
    case: Case,
    previous: CaseStatus | None,
    *,
    actor: str,
    now: datetime,
    note: str | None = None,
    external_reference: str | None = None,
) -> None:
    session.add(
        CaseTransition(
            case_id=case.case_id,
            at=now,
            actor=actor,
            from_status=previous.value if previous else None,
            to_status=case.status.value,
            external_reference=external_reference,
            note=note,
            packet_version=case.packet_version,
        )
    )


async def _transition(
    *,
    session: AsyncSession,
    case: Case,
    to: CaseStatus,
    actor: str,
    now: datetime,
    packets: CaseConfig,
    by_system: bool = False,
    external_reference: str | None = None,
    note: str | None = None,
    packet_version: int | None = None,
) -> None:
    """Every change of a case's state goes through here: checked, timestamped, logged."""
    previous = case.status
    check_transition(
        previous,
        to,
        by_system=by_system,
        external_reference=external_reference,
        note=note,
        packet_version=packet_version,
    )
    match (previous, to):
        case (CaseStatus.REVIEW, CaseStatus.READY):
            case.reviewed_at = case.ready_at = now
            case.status = to
            await _rebuild_packet(session=session, case=case, packets=packets, now=now)
        case (CaseStatus.SUBMITTED | CaseStatus.ACKNOWLEDGED, CaseStatus.READY):
            case.ready_at = now
            case.status = to
            await _rebuild_packet(session=session, case=case, packets=packets, now=now)
        case (CaseStatus.REVIEW, CaseStatus.DISMISSED):
            case.reviewed_at = case.dismissed_at = now
        case (CaseStatus.READY, CaseStatus.SUBMITTED):
            sent = packet_version or 0
            earliest = (case.submitted_version or 0) + 1
            if not earliest <= sent <= case.packet_version:
                raise InvalidRequest(
                    f"packet_version must name the version that was sent: one of "
                    f"{earliest}..{case.packet_version}"
                )
            case.submitted_at = now
            case.external_reference = external_reference
            case.submitted_version = sent
        case (CaseStatus.SUBMITTED, CaseStatus.ACKNOWLEDGED):
            case.acknowledged_at = now
            case.external_reference = external_reference or case.external_reference
        case (CaseStatus.ACKNOWLEDGED, CaseStatus.CLOSED):
            case.closed_at = now
    case.status = to
    case.updated_at = now
    case.due_at, case.due_stage = _waiting_on(case)
    _log_transition(
        session,
        case,
        previous,
        actor=actor,
        now=now,
        note=note,
        external_reference=external_reference,
    )


@dataclass(frozen=True, slots=True)
class Moved:
    """What a person's transition did."""

    case: Case
    previous: CaseStatus
    settled: tuple[tuple[Priority, Stage], ...] = ()
    """Breaches of the round closed when the version sent was not the latest."""
    ready_seconds: float | None = None
    """For a submission: how long the packet was ready before a person sent it."""


async def transition_case(
    *,
    session: AsyncSession,
    case_id: UUID,
    to: CaseStatus,
    actor: str,
    now: datetime,
    packets: CaseConfig,
    external_reference: str | None = None,
    note: str | None = None,
    packet_version: int | None = None,
    expected_updated_at: datetime | None = None,
) -> Moved:
    """A person moves a case. Locks the row meanwhile.

    `expected_updated_at` (the case's `updated_at` as the person read it) refuses the move when
    the case changed since, e.g. a flag joined a review. `packet_version` names the version a
    person sent; when a later one exists, the flags it added are not lost: the case is made
    ready again at once with a supplementary packet.
    """
    case = await session.scalar(select(Case).where(Case.case_id == case_id).with_for_update())
    if case is None:
        raise NotFound(f"no case {case_id}")
    if expected_updated_at is not None and case.updated_at != expected_updated_at:
        raise Conflict(
            f"the case changed at {case.updated_at.isoformat()}, after the version you read; "
            "read it again before moving it"
        )
    previous = case.status
    ready_since = case.ready_at
    await _transition(
        session=session,
        case=case,
        to=to,
        actor=actor,
        now=now,
        packets=packets,
        external_reference=external_reference,
        note=note,
        packet_version=packet_version,
    )
    waited = None
    if previous is CaseStatus.READY and ready_since is not None:
        waited = max((now - ready_since).total_seconds(), 0.0)
    settled: tuple[tuple[Priority, Stage], ...] = ()
    if case.status is CaseStatus.SUBMITTED and (case.submitted_version or 0) < case.packet_version:
        unsent = [
            ReferralTask.model_validate(body)
            for body in await session.scalars(
                select(Task.body).where(
                    Task.case_id == case.case_id,
                    Task.attached_version >= (case.submitted_version or 0),
                )
            )
        ]
        settled = _next_round(case, unsent, packets.deadlines, already_built=True)
        await _transition(
            session=session,
            case=case,
            to=CaseStatus.READY,
            actor=SYSTEM_ACTOR,
            now=now,
            packets=packets,
            by_system=True,
            note=f"version {case.submitted_version} was sent; later flags need a supplement",
        )
    return Moved(case, previous, settled, waited)


async def _rebuild_packet(
    *, session: AsyncSession, case: Case, packets: CaseConfig, now: datetime
) -> None:
    """Build the next packet version from every task of the case; earlier versions stay.

    Once a version has been sent, the next one is a supplement naming it and the new flags.
    """
    rows = (
        await session.execute(
            select(Task.body, Task.attached_version)
            .where(Task.case_id == case.case_id)
            .order_by(Task.received_at, Task.task_id)
        )
    ).all()
    tasks = [ReferralTask.model_validate(body) for body, _ in rows]
    supplement = None
    if case.submitted_version is not None and case.submitted_at and case.external_reference:
        sent = case.submitted_version
        supplement = Supplement(
            supplements_version=sent,
            external_reference=case.external_reference,
            submitted_at=case.submitted_at,
            new_flag_ids=list(
                dict.fromkeys(
                    t.flag_id for t, (_, at) in zip(tasks, rows, strict=True) if at >= sent
                )
            ),
        )
    version = case.packet_version + 1
    packet = build_packet(
        case_id=case.case_id,
        version=version,
        destination=tasks[0].destination,
        tasks=tasks,
        reporter=packets.reporter,
        directory=packets.directory,
        now=now,
        supplement=supplement,
    )
    session.add(
        PacketRecord(
            case_id=case.case_id,
            version=version,
            kind=packet.kind,
            built_at=now,
            supplements_version=supplement.supplements_version if supplement else None,
            body=packet.model_dump(mode="json"),
        )
    )
    case.packet_version = version


@dataclass(frozen=True, slots=True)
class Sweep:
    """What one SLA sweep found: late cases now, and the breaches first seen by this sweep."""

    overdue: dict[tuple[Priority, Stage], int]
    breaches: list[tuple[Priority, Stage]]


_WAITING_PRIORITY = case_(
    (Case.due_stage == Stage.REVIEW.value, Case.review_due_priority),
    (Case.due_stage == Stage.READY.value, Case.ready_due_priority),
    else_=Case.submitted_due_priority,
)
"""The priority the deadline a case waits on follows."""


def _breach_conditions(now: datetime) -> dict[Stage, tuple[Any, Any, Any]]:
    """Per stage: the breach mark column, the priority its deadline follows, and when the stage
    was late (done after its deadline, or still not done after it)."""
    return {
        Stage.REVIEW: (
            Case.review_breached_at,
            Case.review_due_priority,
            Case.review_due_at < func.coalesce(Case.reviewed_at, now),
        ),
        Stage.READY: (
            Case.ready_breached_at,
            Case.ready_due_priority,
            Case.ready_due_at < func.coalesce(Case.ready_at, now),
        ),
        Stage.SUBMITTED: (
            Case.submitted_breached_at,
            Case.submitted_due_priority,
            and_(
                Case.status.not_in([CaseStatus.REVIEW, CaseStatus.DISMISSED]),
                Case.submitted_due_at
                < case_(
                    (Case.status == CaseStatus.READY, literal(now, DateTime(timezone=True))),
                    else_=Case.submitted_at,
                ),
            ),
        ),
    }


async def sweep_sla(*, session: AsyncSession, now: datetime) -> Sweep:
    """Count late cases by priority and stage, and mark each new breach so it counts once.

    Marking is an UPDATE ... RETURNING under row locks, so concurrent sweeps (several workers)
    never count the same breach twice.
    """
    breaches: list[tuple[Priority, Stage]] = []
    for stage, (mark, priority, late) in _breach_conditions(now).items():
        marked = await session.scalars(
            update(Case)
            .where(mark.is_(None), late)
            .values({mark.key: now})
            .returning(priority)
            .execution_options(synchronize_session=False)
        )
        breaches.extend((Priority(p), stage) for p in marked.all())
    overdue = {(p, stage): 0 for p in Priority for stage in Stage}
    rows = await session.execute(
        select(_WAITING_PRIORITY, Case.due_stage, func.count())
        .where(Case.due_at < now)
        .group_by(_WAITING_PRIORITY, Case.due_stage)
    )
    for priority, waiting, count in rows.all():
        if waiting is not None:  # due_at is set with its stage, always
            overdue[(Priority(priority), Stage(waiting))] = count
    return Sweep(overdue=overdue, breaches=breaches)


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
    overdue_at: datetime | None = None,
    after: tuple[datetime, UUID] | None = None,
    limit: int = 50,
) -> list[Case]:
    """Cases, oldest first, after the (created_at, case_id) cursor.

    With `overdue_at`, only the cases whose current stage was due before it, the most overdue
    first, after the (due_at, case_id) cursor.
    """
    key = (Case.due_at, Case.case_id) if overdue_at is not None else (Case.created_at, Case.case_id)
    query = select(Case).order_by(*key).limit(limit)
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
    return list((await session.scalars(query)).all())


async def case_transitions(*, session: AsyncSession, case_id: UUID) -> list[CaseTransition]:
    rows = await session.scalars(
        select(CaseTransition)
        .where(CaseTransition.case_id == case_id)
        .order_by(CaseTransition.transition_id)
    )
    return list(rows.all())


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
