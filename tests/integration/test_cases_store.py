"""Cases on the real PostgreSQL: aggregation, packets, idempotent replay, review then refer."""

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.flag import ModerationFlag
from schemas.packets import PolicePacket
from schemas.referral import Outcome, Priority, ReferralTask
from services.domain.forces import uk_forces
from services.domain.policy import default_policy
from services.referral import queries, store
from services.referral.enums import CaseStatus
from services.referral.escalation import Escalator
from services.referral.models import Case, PacketRecord, Task
from services.referral.packet_text import render_text
from services.referral.packets import Reporter
from services.router.routing import Routing, route
from tests.factories import make_flag, signal

NOW = datetime(2026, 11, 26, 9, 1, tzinfo=UTC)
REPORTER = Reporter(name="Test Platform Ltd", safeguarding_contact="DSL, 020 0000 0000")
PACKETS = store.CaseConfig(reporter=REPORTER, directory=uk_forces())


def routed(flag: ModerationFlag, home_force_id: str = "kent") -> Routing:
    return route(
        flag,
        policy=default_policy(),
        directory=uk_forces(),
        home_force_id=home_force_id,
        now=NOW,
    )


async def apply(
    sessions: async_sessionmaker[AsyncSession], tasks: list[ReferralTask]
) -> list[store.AppliedTask]:
    async with sessions() as session, session.begin():
        return await store.apply_tasks(session=session, tasks=tasks, now=NOW)


async def case_state(
    sessions: async_sessionmaker[AsyncSession], case_key: str
) -> tuple[list[Case], int, int]:
    async with sessions() as session:
        cases = list(await session.scalars(select(Case).where(Case.case_key == case_key)))
        ids = [c.case_id for c in cases]
        tasks = await session.scalar(select(func.count()).where(Task.case_id.in_(ids)))
        packets = await session.scalar(
            select(func.count()).select_from(PacketRecord).where(PacketRecord.case_id.in_(ids))
        )
        return cases, tasks or 0, packets or 0


def subject(account_id: str) -> dict[str, Any]:
    return {"account_id": account_id, "ips": ["192.0.2.7"]}


async def test_flags_about_one_subject_gather_in_one_case_with_a_new_packet_each(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    first = routed(make_flag(subject=subject("acct-gather"), signals=[signal("grooming", 0.95)]))
    second = routed(make_flag(subject=subject("acct-gather"), signals=[signal("coercion", 0.9)]))
    (applied,) = await apply(sessions, list(first.tasks))
    async with sessions() as session, session.begin():
        read_early = await store.packet(
            session=session, case_id=applied.case_id, version=1, config=PACKETS, now=NOW
        )
    assert read_early is not None
    await apply(sessions, list(second.tasks))

    cases, tasks, packets = await case_state(sessions, first.tasks[0].case_key)
    assert len(cases) == 1
    case = cases[0]
    assert (case.status, case.priority, case.packet_version) == (CaseStatus.READY, "P1", 2)
    assert case.criteria == ["coercion", "grooming"]
    assert (tasks, packets) == (2, 1), "version 2 is numbered; its document is built when read"
    async with sessions() as session, session.begin():
        latest = await store.packet(
            session=session, case_id=case.case_id, version=2, config=PACKETS, now=NOW
        )
        earliest = await store.packet(
            session=session, case_id=case.case_id, version=1, config=PACKETS, now=NOW
        )
        beyond = await store.packet(
            session=session, case_id=case.case_id, version=3, config=PACKETS, now=NOW
        )
    assert latest is not None
    assert earliest is not None
    assert beyond is None
    assert len(latest.body["timeline"]) == 2
    assert earliest.body == read_early.body, "an earlier packet version never changes"
    assert len(earliest.body["timeline"]) == 1


async def test_replaying_tasks_changes_nothing(sessions: async_sessionmaker[AsyncSession]) -> None:
    routing = routed(make_flag(subject=subject("acct-replay"), signals=[signal("coercion", 0.9)]))
    first = await apply(sessions, list(routing.tasks))
    before = await case_state(sessions, routing.tasks[0].case_key)
    again = await apply(sessions, list(routing.tasks) * 2)
    after = await case_state(sessions, routing.tasks[0].case_key)

    assert len(first) == 1
    assert again == []
    assert [c.case_id for c in before[0]] == [c.case_id for c in after[0]]
    assert before[1:] == after[1:] == (1, 0)
    assert after[0][0].packet_version == 1


async def test_a_review_case_becomes_ready_when_a_referral_joins_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    review = routed(make_flag(subject=subject("acct-review"), signals=[signal("grooming", 0.7)]))
    refer = routed(make_flag(subject=subject("acct-review"), signals=[signal("grooming", 0.95)]))
    assert review.decision.outcome is Outcome.REVIEW

    await apply(sessions, list(review.tasks))
    cases, _, packets = await case_state(sessions, review.tasks[0].case_key)
    assert cases[0].status is CaseStatus.REVIEW
    assert cases[0].review_due_at is not None
    assert packets == 0, "a case under review has no packet yet"

    applied = await apply(sessions, list(refer.tasks))
    cases, tasks, packets = await case_state(sessions, review.tasks[0].case_key)
    assert [c.status for c in cases] == [CaseStatus.READY]
    assert cases[0].ready_at == NOW
    assert (tasks, packets, cases[0].packet_version) == (2, 0, 1)
    assert [a.became_ready for a in applied] == [True]


async def test_decisions_are_stored_once_for_every_outcome(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    none = routed(make_flag(signals=[signal("other", 0.99)])).decision
    refer = routed(make_flag(signals=[signal("coercion", 0.95)])).decision
    for _ in range(2):
        async with sessions() as session, session.begin():
            await store.record_decisions(session=session, decisions=[none, refer, none])
    async with sessions() as session:
        stored_none = await queries.get_decision(session=session, flag_id=none.flag_id)
        stored_refer = await queries.get_decision(session=session, flag_id=refer.flag_id)
    assert stored_none is not None
    assert stored_none.outcome == "none"
    assert stored_refer is not None
    assert stored_refer.criteria == ["coercion"]
    assert stored_refer.body["rules"][0]["rule_id"] == "coercion-high"


async def test_a_case_with_more_flags_than_a_packet_lists_keeps_its_p0_and_counts_the_rest(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    who = subject(f"acct-prolific-{uuid4().hex[:8]}")
    danger = routed(make_flag(subject=who, signals=[signal("safety", 0.9, immediate_danger=True)]))
    (first,) = [t for t in danger.tasks if t.destination.kind.value == "police"]
    later = [
        task
        for _ in range(store.PACKET_FLAGS + 60)
        for task in routed(make_flag(subject=who, signals=[signal("grooming", 0.95)])).tasks
    ]
    assert {t.case_key for t in later} == {first.case_key}
    assert {t.priority for t in later} == {Priority.P2}
    await apply(sessions, [first])
    for start in range(0, len(later), 50):
        await apply(sessions, later[start : start + 50])

    (case,), tasks, _ = await case_state(sessions, first.case_key)
    assert (tasks, case.flag_count) == (len(later) + 1, len(later) + 1)
    async with sessions() as session, session.begin():
        packet = await store.packet(
            session=session,
            case_id=case.case_id,
            version=case.packet_version,
            config=PACKETS,
            now=NOW,
        )
    assert packet is not None
    body = PolicePacket.model_validate(packet.body)
    assert len(body.timeline) == store.PACKET_FLAGS
    assert body.flags_omitted == len(later) + 1 - store.PACKET_FLAGS
    assert body.priority is Priority.P0, "the first flag's danger is not dropped from the packet"
    assert {c.value for c in body.criteria} == {"safety", "grooming"}
    text = render_text(body)
    assert text.startswith("A CHILD MAY BE IN IMMEDIATE DANGER: CALL 999 NOW.")
    assert f"{body.flags_omitted} earlier flags of this case are not listed here" in text


async def test_cases_opened_one_after_another_on_one_connection_all_open(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """After five runs a prepared statement may switch to a generic plan; opening a case must
    still match the partial unique index of open case keys."""
    tasks = [
        routed(make_flag(subject=subject(f"acct-serial-{uuid4().hex[:8]}"))).tasks[0]
        for _ in range(10)
    ]
    async with sessions() as session, session.begin():
        opened = [
            (await store.apply_tasks(session=session, tasks=[task], now=NOW))[0] for task in tasks
        ]
    assert [a.status for a in opened] == [CaseStatus.READY] * 10


async def test_a_case_that_becomes_p0_across_flags_gets_the_emergency_route_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Sextortion and self-harm about one child, on two flags from two models: the police case
    becomes P0 (its packet says so) and the police where the child is get a P0 case too; a
    redelivered flag changes nothing."""
    escalator = Escalator(default_policy(), uk_forces(), "kent")
    facts: dict[str, Any] = {
        "subject": subject("acct-escalates"),
        "child": {"age_band": "13_15", "location": {"country": "FR"}},
    }
    first = routed(make_flag(signals=[signal("coercion", 0.92)], **facts))
    second = routed(make_flag(signals=[signal("self_harm", 0.93)], **facts))

    async def apply_escalating(tasks: list[ReferralTask]) -> list[store.AppliedTask]:
        async with sessions() as session, session.begin():
            return await store.apply_tasks(
                session=session, tasks=tasks, now=NOW, escalator=escalator
            )

    await apply_escalating(list(first.tasks))
    (police_key,) = {t.case_key for t in first.tasks}
    (case,), _, _ = await case_state(sessions, police_key)
    assert (case.status, case.priority) == (CaseStatus.READY, "P1")

    applied = await apply_escalating(list(second.tasks))
    made = [a.task for a in applied if a.task.escalation is not None]
    # Both escalations fire, as they do on one flag with both signals; the P0 one also goes
    # to the police where the child is.
    assert {(t.escalation, t.destination.key, t.priority) for t in made} == {
        ("sextortion-with-self-harm", "police:kent", Priority.P0),
        ("sextortion-with-self-harm", "intl:FR:local_police", Priority.P0),
        ("sextortion-with-self-harm-cues", "police:kent", Priority.P1),
    }
    (case,), tasks, _ = await case_state(sessions, police_key)
    assert (case.status, case.priority, case.flag_count, tasks) == (CaseStatus.READY, "P0", 2, 4)
    assert case.fired_rules["sextortion-with-self-harm"]["from"] == [
        str(first.decision.flag_id),
        str(second.decision.flag_id),
    ]
    (abroad,), _, _ = await case_state(
        sessions, made[0].case_key.replace("police:kent", "intl:FR:local_police")
    )
    assert (abroad.status, abroad.priority) == (CaseStatus.READY, "P0")

    async with sessions() as session, session.begin():
        built = await store.packet(
            session=session,
            case_id=case.case_id,
            version=case.packet_version,
            config=PACKETS,
            now=NOW,
        )
    assert built is not None
    packet = PolicePacket.model_validate(built.body)
    assert packet.priority is Priority.P0
    assert render_text(packet).startswith("A CHILD MAY BE IN IMMEDIATE DANGER")

    assert await apply_escalating(list(second.tasks)) == [], "a redelivered flag changes nothing"


async def test_sextortion_at_a_hotline_and_self_harm_at_the_police_escalate_together(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A US platform: coercion goes to NCMEC, self-harm to the local police, so the two flags
    land in two cases. They are one child's facts: the subject's open cases are read together,
    and both destinations get the P0."""
    escalator = Escalator(default_policy(), uk_forces(), "kent")
    facts: dict[str, Any] = {
        "subject": subject("acct-two-destinations"),
        "platform": {"org_id": "org-us-test", "service": "chat", "country": "US"},
    }
    first = routed(make_flag(signals=[signal("coercion", 0.92)], **facts))
    second = routed(make_flag(signals=[signal("self_harm", 0.93)], **facts))
    assert {t.destination.key for t in first.tasks} == {"intl:US:ncmec_cybertipline"}
    assert {t.destination.key for t in second.tasks} == {"intl:US:local_police"}

    for routing in (first, second):
        async with sessions() as session, session.begin():
            applied = await store.apply_tasks(
                session=session, tasks=list(routing.tasks), now=NOW, escalator=escalator
            )
    made = {(a.task.destination.key, a.task.priority) for a in applied if a.task.escalation}
    assert ("intl:US:local_police", Priority.P0) in made
    assert ("intl:US:ncmec_cybertipline", Priority.P0) in made
    for key in ("intl:US:local_police", "intl:US:ncmec_cybertipline"):
        (case,), _, _ = await case_state(sessions, f"org-us-test|acct-two-destinations|{key}")
        assert (case.status, case.priority) == (CaseStatus.READY, "P0"), key
