"""Retention: data is kept no longer than its purpose, and a legal hold stops that for a case.

Each kind of record has its period (`Periods`, from `CSAE_RETENTION_*_DAYS`; the defaults and
the reason for each are in the README):

- `no_report`: a decision that nothing was to be reported (no case, no flag body kept).
- `dismissed`: a review case a person dismissed: it referred nothing; the case, its flags'
  bodies, tasks, packets and history are deleted.
- `closed`: a referred case after it closed: the flags' bodies, tasks and packets are deleted,
  and the case is redacted (the reported account and the notes of its history removed); its
  row, status, times, the receiver's reference and its delivery receipts (version, format,
  sha256, time, actor, reference: nothing of the packet) stay, so a later request quoting the
  reference can be answered ("we referred that, on that day"). For the NCA this is our reading
  of SI 2026/268 (unverified): the information sent is kept 1 year, the NCA reference 5.
- `reference`: the redacted case and its history after closure, then deleted.

A case on legal hold (`csae cases hold`) is skipped by all of them. Every run records what it
did, by kind, in `retention_runs`. One worker runs it at a time (an advisory lock); `csae
retention run` runs it by hand, `--dry-run` counts without deleting.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import Select, String, cast, delete, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.referral import audit
from services.referral.enums import CaseStatus
from services.referral.models import (
    Case,
    CaseTransition,
    DecisionRecord,
    DeliveryReceipt,
    Flag,
    PacketRecord,
    RetentionRun,
    Task,
)

RETENTION_LOCK = 0x63736165_0002
"""The transaction-level advisory lock only one retention run holds at a time."""
REDACTED = "redacted"


@dataclass(frozen=True, slots=True)
class Periods:
    no_report: timedelta = timedelta(days=90)
    dismissed: timedelta = timedelta(days=365)
    closed: timedelta = timedelta(days=366)
    reference: timedelta = timedelta(days=5 * 365 + 2)
    """A year and five from closing, leap days included: never sooner than the NCA's periods
    from the report (our reading of SI 2026/268), however soon after it the case closed."""


@dataclass(frozen=True, slots=True)
class Done:
    """What one kind of retention did: records deleted or redacted, before `cutoff`."""

    kind: str
    cutoff: datetime
    rows: int


async def run(*, session: AsyncSession, now: datetime, periods: Periods) -> list[Done] | None:
    """Delete or redact what is due now; None when another run holds the lock."""
    if not await session.scalar(select(func.pg_try_advisory_xact_lock(RETENTION_LOCK))):
        return None
    done = [
        await _no_report(session, now - periods.no_report),
        await _dismissed(session, now - periods.dismissed),
        await _closed(session, now - periods.closed, now),
        await _references(session, now - periods.reference),
    ]
    await session.execute(
        insert(RetentionRun),
        [
            {"run_id": uuid4(), "at": now, "kind": d.kind, "cutoff": d.cutoff, "rows": d.rows}
            for d in done
        ],
    )
    # On the audit trail, in the same transaction as what it deleted: counts, never contents.
    await audit.record(
        session=session,
        entry=audit.Entry(
            actor="system",
            action="retention.run",
            outcome="done",
            detail={d.kind: d.rows for d in done},
        ),
        now=now,
    )
    return done


def _due(status: CaseStatus, since: datetime) -> Select[Any]:
    """Cases in `status` since before `since` (by the time they entered it), not on hold."""
    entered = Case.dismissed_at if status is CaseStatus.DISMISSED else Case.closed_at
    return select(Case.case_id).where(
        Case.status == status.value, entered < since, Case.legal_hold.is_(False)
    )


async def _no_report(session: AsyncSession, cutoff: datetime) -> Done:
    deleted = await session.execute(
        delete(DecisionRecord)
        .where(DecisionRecord.outcome == "none", DecisionRecord.decided_at < cutoff)
        .returning(DecisionRecord.flag_id)
    )
    return Done("no_report", cutoff, len(deleted.all()))


async def _contents(session: AsyncSession, case_ids: list[UUID]) -> None:
    """Delete the cases' packets and tasks, and the flags no other case holds."""
    await session.execute(delete(PacketRecord).where(PacketRecord.case_id.in_(case_ids)))
    flags = list(
        await session.scalars(
            delete(Task).where(Task.case_id.in_(case_ids)).returning(Task.flag_id)
        )
    )
    if flags:
        await session.execute(
            delete(Flag).where(
                Flag.flag_id.in_(set(flags)), ~exists().where(Task.flag_id == Flag.flag_id)
            )
        )


async def _delete_cases(session: AsyncSession, ids: list[UUID]) -> None:
    """Delete the cases whole: their content, history and rows."""
    if ids:
        await _contents(session, ids)
        await session.execute(delete(DeliveryReceipt).where(DeliveryReceipt.case_id.in_(ids)))
        await session.execute(delete(CaseTransition).where(CaseTransition.case_id.in_(ids)))
        await session.execute(delete(Case).where(Case.case_id.in_(ids)))


async def _dismissed(session: AsyncSession, cutoff: datetime) -> Done:
    ids = list(await session.scalars(_due(CaseStatus.DISMISSED, cutoff)))
    await _delete_cases(session, ids)
    return Done("dismissed", cutoff, len(ids))


async def _closed(session: AsyncSession, cutoff: datetime, now: datetime) -> Done:
    ids = list(
        await session.scalars(_due(CaseStatus.CLOSED, cutoff).where(Case.redacted_at.is_(None)))
    )
    if ids:
        await _contents(session, ids)
        await session.execute(
            update(CaseTransition).where(CaseTransition.case_id.in_(ids)).values(note=None)
        )
        await session.execute(
            update(Case)
            .where(Case.case_id.in_(ids))
            .values(
                subject_account_id=REDACTED,
                case_key=REDACTED + ":" + cast(Case.case_id, String),
                fired_rules={},
                redacted_at=now,
            )
        )
    return Done("closed", cutoff, len(ids))


async def _references(session: AsyncSession, cutoff: datetime) -> Done:
    ids = list(await session.scalars(_due(CaseStatus.CLOSED, cutoff)))
    await _delete_cases(session, ids)
    return Done("reference", cutoff, len(ids))


async def hold(
    *,
    session: AsyncSession,
    case_id: UUID,
    note: str | None,
    actor: str = "cli",
    now: datetime | None = None,
) -> bool:
    """Put a case on legal hold (`note`), or release it (None). False when there is no case."""
    changed = await session.execute(
        update(Case)
        .where(Case.case_id == case_id)
        .values(legal_hold=note is not None, legal_hold_note=note)
        .returning(Case.case_id)
    )
    found = changed.first() is not None
    if found:
        await audit.record(
            session=session,
            entry=audit.Entry(
                actor=actor,
                action="case.hold" if note is not None else "case.release",
                outcome="done",
                case_id=case_id,
            ),
            now=now or datetime.now(UTC),
        )
    return found
