"""Retention with an injected clock: what is past its period is deleted or redacted, a legal
hold stops it, and every run says what it did."""

from datetime import timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.referral import audit, retention, store
from services.referral.enums import CaseStatus
from services.referral.models import (
    AuditRecord,
    Case,
    CaseTransition,
    DecisionRecord,
    DeliveryReceipt,
    Flag,
    PacketRecord,
    RetentionRun,
    Task,
)
from tests.factories import make_flag, signal
from tests.integration.test_cases_store import NOW, PACKETS, routed

PERIODS = retention.Periods()


async def open_case(
    sessions: async_sessionmaker[AsyncSession], account: str, **flag: Any
) -> tuple[UUID, UUID]:
    routing = routed(make_flag(subject={"account_id": account}, **flag))
    (task,) = [t for t in routing.tasks if t.destination.kind.value == "police"]
    async with sessions() as session, session.begin():
        await store.record_decisions(session=session, decisions=[routing.decision])
        (applied,) = await store.apply_tasks(session=session, tasks=[task], now=NOW)
    return applied.case_id, task.flag_id


async def move(
    sessions: async_sessionmaker[AsyncSession], case_id: UUID, to: CaseStatus, **fields: Any
) -> None:
    async with sessions() as session, session.begin():
        await store.transition_case(
            session=session,
            case_id=case_id,
            to=to,
            actor="investigator:test",
            now=NOW + timedelta(minutes=5),
            packets=PACKETS,
            **fields,
        )


async def referred_and_closed(sessions: async_sessionmaker[AsyncSession], account: str) -> UUID:
    case_id, _ = await open_case(sessions, account, signals=[signal("coercion", 0.9)])
    async with sessions() as session, session.begin():  # the packet a person read and sent
        await store.packet(session=session, case_id=case_id, version=1, config=PACKETS, now=NOW)
    await move(
        sessions,
        case_id,
        CaseStatus.SUBMITTED,
        external_reference="KNT-RETAIN-1",
        packet_version=1,
    )
    await move(sessions, case_id, CaseStatus.ACKNOWLEDGED)
    await move(sessions, case_id, CaseStatus.CLOSED, note="force took it on (marker-note)")
    return case_id


async def test_retention_deletes_and_redacts_what_is_due_and_a_hold_stops_it(
    own_sessions: async_sessionmaker[AsyncSession],
) -> None:
    sessions = own_sessions
    dismissed, dismissed_flag = await open_case(
        sessions, "acct-retain-review", signals=[signal("grooming", 0.7)]
    )
    await move(sessions, dismissed, CaseStatus.DISMISSED, note="not a concern")
    closed = await referred_and_closed(sessions, "acct-retain-closed")
    held = await referred_and_closed(sessions, "acct-retain-held")
    none = routed(make_flag(signals=[signal("other", 0.9)]))
    async with sessions() as session, session.begin():
        await store.record_decisions(session=session, decisions=[none.decision])
        assert await retention.hold(session=session, case_id=held, note="court order 123")

    # Within every period: nothing changes.
    async with sessions() as session, session.begin():
        done = await retention.run(session=session, now=NOW + timedelta(days=30), periods=PERIODS)
    assert done is not None
    assert [d.rows for d in done] == [0, 0, 0, 0]

    # A year and a day on: the no-report decision, the dismissed review and the closed case's
    # content go; the held case stays whole.
    later = NOW + PERIODS.closed + timedelta(days=1)
    async with sessions() as session, session.begin():
        done = await retention.run(session=session, now=later, periods=PERIODS)
    assert done is not None
    assert {d.kind: d.rows for d in done} == {
        "no_report": 1,
        "dismissed": 1,
        "closed": 2 - 1,
        "reference": 0,
    }
    async with sessions() as session:
        assert await session.get(DecisionRecord, none.decision.flag_id) is None
        assert await session.get(Case, dismissed) is None
        assert await session.get(Flag, dismissed_flag) is None
        redacted = await session.get(Case, closed)
        assert redacted is not None
        assert (redacted.subject_account_id, redacted.external_reference) == (
            "redacted",
            "KNT-RETAIN-1",
        )
        assert "acct-retain-closed" not in redacted.case_key
        receipt = await session.scalar(
            select(DeliveryReceipt).where(DeliveryReceipt.case_id == closed)
        )
        assert receipt is not None, "what was sent and its reference stay with the reference"
        assert (receipt.external_reference, receipt.packet_version) == ("KNT-RETAIN-1", 1)
        for case_id, tasks in ((closed, 0), (held, 1)):
            count = await session.scalar(select(func.count()).where(Task.case_id == case_id))
            assert count == tasks
        assert await session.scalar(select(func.count()).where(PacketRecord.case_id == closed)) == 0
        notes = list(
            await session.scalars(
                select(CaseTransition.note).where(CaseTransition.case_id == closed)
            )
        )
        assert notes
        assert all(note is None for note in notes)
        kept = await session.get(Case, held)
        assert kept is not None
        assert kept.subject_account_id == "acct-retain-held"

    # Five years on, the reference goes too; released, the held case follows the rules again.
    async with sessions() as session, session.begin():
        assert await retention.hold(session=session, case_id=held, note=None)
        done = await retention.run(
            session=session, now=NOW + PERIODS.reference + timedelta(days=1), periods=PERIODS
        )
    assert done is not None
    assert {d.kind: d.rows for d in done}["reference"] == 2
    async with sessions() as session:
        assert await session.get(Case, closed) is None
        assert await session.get(Case, held) is None
        receipts = select(func.count()).where(DeliveryReceipt.case_id.in_([closed, held]))
        assert await session.scalar(receipts) == 0
        runs = await session.scalar(select(func.count()).select_from(RetentionRun))
        on_trail = list(
            await session.scalars(
                select(AuditRecord.action)
                .where(AuditRecord.action.in_(["retention.run", "case.hold", "case.release"]))
                .order_by(AuditRecord.seq)
            )
        )
        verified = await audit.verify_stored(session=session)
    assert runs == 12, "every run records each kind"
    assert on_trail == [
        "case.hold",
        "retention.run",
        "retention.run",
        "case.release",
        "retention.run",
    ], "holds and runs are on the audit trail, in order"
    assert verified.broken is None
