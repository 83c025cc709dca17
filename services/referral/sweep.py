"""The SLA sweep: count the cases late now, and mark each breach of a stage still waiting.

A stage done late is marked at the move that did it (`cases.mark_late`); the sweep looks only at
cases waiting past a deadline (`due_at < now`, a partial index over waiting cases), so its cost
follows the number of late open cases, not the size of the table. One sweeper at a time across
workers: the others skip the round.
"""

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.referral import Priority
from services.referral.enums import CaseStatus, Stage
from services.referral.models import Case

SWEEP_LOCK = 0x63736165_0001
"""The transaction-level advisory lock only one sweeper holds at a time."""

_WAITING = {
    Stage.REVIEW: (Case.review_breached_at, Case.review_due_priority),
    Stage.SUBMITTED: (Case.submitted_breached_at, Case.submitted_due_priority),
}
"""The stages a case can wait in (review, or ready waiting to be submitted): the mark of each
stage's breach, and the priority its deadline follows."""


@dataclass(frozen=True, slots=True)
class Sweep:
    """What one SLA sweep found: late cases now, and the breaches first seen by this sweep."""

    overdue: dict[tuple[Priority, Stage], int]
    breaches: list[tuple[Priority, Stage]]
    reviews: dict[Priority, tuple[int, float]] = field(default_factory=dict)
    """Cases waiting for a person's review, by priority: how many, and the oldest's age in
    seconds since it opened (0 when none)."""


async def sweep_sla(*, session: AsyncSession, now: datetime) -> Sweep | None:
    """Count late cases by priority and stage, and mark each new breach so it counts once.

    None when another worker is sweeping now (it holds the advisory lock until it commits).
    """
    if not await session.scalar(select(func.pg_try_advisory_xact_lock(SWEEP_LOCK))):
        return None
    breaches: list[tuple[Priority, Stage]] = []
    overdue = {(p, stage): 0 for p in Priority for stage in Stage}
    for stage, (mark, priority) in _WAITING.items():
        marked = await session.scalars(
            update(Case)
            .where(Case.due_at < now, Case.due_stage == stage.value, mark.is_(None))
            .values({mark.key: now})
            .returning(priority)
            .execution_options(synchronize_session=False)
        )
        breaches.extend((Priority(p), stage) for p in marked.all() if p is not None)
        rows = await session.execute(
            select(priority, func.count())
            .where(Case.due_at < now, Case.due_stage == stage.value)
            .group_by(priority)
        )
        for waiting_priority, count in rows.all():
            if waiting_priority is not None:  # set with the stage's deadline, always
                overdue[(Priority(waiting_priority), stage)] = count
    reviews = dict.fromkeys(Priority, (0, 0.0))
    waiting = await session.execute(
        select(Case.priority, func.count(), func.min(Case.created_at))
        .where(Case.status == CaseStatus.REVIEW.value)
        .group_by(Case.priority)
    )
    for waiting_priority, count, oldest in waiting.all():
        reviews[Priority(waiting_priority)] = (count, max((now - oldest).total_seconds(), 0.0))
    return Sweep(overdue=overdue, breaches=breaches, reviews=reviews)
