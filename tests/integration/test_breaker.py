"""The flood breaker on the real broker and database: a misfiring source's referrals are held
as reviews, a child in immediate danger still goes out, the alert's gauge is set, nothing is
lost, and a person's close lets the source's referrals out again."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.referral import Priority, ReferralTask
from services.domain.breaker import BreakerSettings
from services.pipeline.metrics import Metrics
from services.pipeline.settings import Settings
from services.referral import breakers, store
from services.referral.api import create_app
from services.referral.enums import CaseStatus
from services.referral.keys import Role, create_key
from services.referral.models import Case, CaseTransition, Task
from services.referral.worker import SlaSweeper
from tests.factories import make_flag, signal
from tests.infra import isolated_settings
from tests.integration.test_cases_store import routed
from tests.integration.test_worker_kafka import produce, run_worker_until
from tests.kafka_reading import wait_for_commit

FLOOD = 60
FLOOR = 30


def referral(system: str, version: str, n: int, **extra: object) -> ReferralTask:
    now = datetime.now(UTC).isoformat()
    flag = make_flag(
        detected_at=now,
        published_at=now,
        source={"system": system, "version": version, "kind": "classifier"},
        subject={"account_id": f"acct-{system}-{version}-{n}"},
        signals=[signal("grooming", 0.95, **extra)],
    )
    (task,) = [t for t in routed(flag).tasks if t.destination.kind.value == "police"]
    return task


async def test_a_misfiring_source_is_held_for_review_and_nothing_is_lost(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    guarded = settings.model_copy(
        update={"breaker_enabled": True, "breaker_min_flags": FLOOR, "breaker_factor": 10.0}
    )
    # A day of the classifier's usual rate: one flag every five minutes (from version 1.0.0).
    async with sessions() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO source_rates (system, version, minute, shard, flags) "
                "SELECT 'misfiring-clf', '1.0.0', m, 0, 1 FROM generate_series("
                "date_trunc('minute', now()) - interval '24 hours', "
                "date_trunc('minute', now()) - interval '10 minutes', interval '5 minutes') m"
            )
        )
    flood = [referral("misfiring-clf", "2.0.0", n) for n in range(FLOOD)]
    danger = referral("misfiring-clf", "2.0.0", FLOOD, immediate_danger=True)
    steady = [referral("steady-clf", "1.0.0", n) for n in range(3)]
    tasks = [*flood, danger, *steady]
    await produce(
        guarded,
        [
            (guarded.topic_referrals, t.case_key.encode(), t.model_dump_json().encode())
            for t in tasks
        ],
    )
    metrics = Metrics(CollectorRegistry())
    guarded_settings = guarded.breaker()
    assert guarded_settings is not None

    async def until_committed() -> None:
        await wait_for_commit(guarded, guarded.topic_referrals, guarded.referral_group, len(tasks))

    await run_worker_until(guarded, sessions, metrics, until_committed)

    async with sessions() as session:
        stored = set(await session.scalars(select(Task.task_id)))
        rows = await session.execute(
            select(Case.case_key, Case.status).where(Case.case_key.in_([t.case_key for t in tasks]))
        )
        status = {row.case_key: row.status for row in rows}
        notes = list(
            await session.scalars(
                select(CaseTransition.note).where(CaseTransition.note.like("%held for review%"))
            )
        )
    assert {t.task_id for t in tasks} <= stored, "nothing is lost while the breaker is open"
    held = [t for t in flood if status[t.case_key] is CaseStatus.REVIEW]
    sent = [t for t in flood if status[t.case_key] is CaseStatus.READY]
    assert len(held) + len(sent) == FLOOD
    assert len(sent) < FLOOR, "once past the floor, every referral of the source is held"
    assert held, "the breaker opened"
    assert len(notes) == len(held), "each held case says why"
    assert danger.priority is Priority.P0
    assert status[danger.case_key] is CaseStatus.READY, "a child in immediate danger goes out"
    assert all(status[t.case_key] is CaseStatus.READY for t in steady), "other sources flow"
    source = {"source": "misfiring-clf/2.0.0"}
    assert metrics.registry.get_sample_value("csae_breaker_held_total", source) == len(held)
    assert metrics.registry.get_sample_value("csae_breaker_passed_total", source) == 1

    # The alert's gauge: every worker reads the open breakers at its sweep.
    sweeper = SlaSweeper(sessions=sessions, metrics=metrics, breaker=guarded.breaker())
    await sweeper.sweep_once()
    assert metrics.registry.get_sample_value("csae_breaker_open", source) == 1

    # A person closes it, saying why: the source's referrals go out again, the alert clears.
    async with sessions() as session, session.begin():
        closed = await breakers.close(
            session,
            ("misfiring-clf", "2.0.0"),
            by="cli:test",
            note="a new model, checked",
            now=datetime.now(UTC),
            settings=guarded_settings,
        )
    assert closed is not None
    assert (closed.closed_by, closed.close_note) == ("cli:test", "a new model, checked")
    await sweeper.sweep_once()
    assert metrics.registry.get_sample_value("csae_breaker_open", source) is None
    later = referral("misfiring-clf", "2.0.0", FLOOD + 1)
    async with sessions() as session, session.begin():
        (applied,) = await store.apply_tasks(
            session=session,
            tasks=[later],
            now=datetime.now(UTC) + timedelta(seconds=1),
            breaker=guarded_settings,
        )
    assert (applied.status, applied.held) == (CaseStatus.READY, False)

    # The same surge goes on after the close: the rate the person accepted does not reopen it.
    more = [referral("misfiring-clf", "2.0.0", FLOOD + 2 + n) for n in range(FLOOD)]
    async with sessions() as session, session.begin():
        applied_more = await store.apply_tasks(
            session=session, tasks=more, now=datetime.now(UTC), breaker=guarded_settings
        )
    assert not any(a.held for a in applied_more)
    async with sessions() as session:
        assert await breakers.open_now(session) == []


async def test_only_an_admin_closes_a_breaker_through_the_api_and_it_is_kept_who_and_why(
    database_url: str, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    admin = create_key(keys, Role.ADMIN)
    investigator = create_key(keys, Role.INVESTIGATOR)
    async with sessions() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO breakers (breaker_id, system, version, opened_at, reason) "
                "VALUES (gen_random_uuid(), 'api-clf', '3.1.0', now(), 'test')"
            )
        )
    app = create_app(isolated_settings(database_url, api_keys_file=keys))
    path = "/v1/breakers/api-clf/3.1.0/close"
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            as_admin = {"Authorization": f"Bearer {admin}"}
            refused = await client.post(
                path,
                json={"note": "checked"},
                headers={"Authorization": f"Bearer {investigator}"},
            )
            assert refused.status_code == 403
            listed = await client.get("/v1/breakers", headers=as_admin)
            assert "api-clf/3.1.0" in [b["source"] for b in listed.json() if not b["closed_at"]]
            closed = await client.post(path, json={"note": "model checked"}, headers=as_admin)
            assert closed.status_code == 200, closed.text
            assert closed.json()["closed_by"].startswith("admin:")
            assert closed.json()["close_note"] == "model checked"
            again = await client.post(path, json={"note": "again"}, headers=as_admin)
            assert again.status_code == 404


async def test_a_flag_counts_once_whatever_its_destinations_and_when_it_was_detected(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Police and IWF tasks of one flag arrive in different batches: the flag counts once. A
    backlog stored late counts in the minute it was detected, so draining it trips nothing."""
    settings = BreakerSettings(min_flags=5)
    two_hours_ago = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    flag = make_flag(
        detected_at=two_hours_ago.isoformat(),
        published_at=two_hours_ago.isoformat(),
        source={"system": "hash-matcher", "version": "7.0.0", "kind": "hash_match"},
        subject={"account_id": "acct-counted-once"},
        signals=[signal("iioc", 1.0, hash_match={"list": "l", "match": "exact", "external": True})],
    )
    tasks = list(routed(flag).tasks)
    assert len({t.destination.key for t in tasks}) == 2
    for task in tasks:  # one batch per destination, as their partitions deliver them
        async with sessions() as session, session.begin():
            await store.apply_tasks(
                session=session, tasks=[task], now=datetime.now(UTC), breaker=settings
            )
    async with sessions() as session:
        rows = (
            await session.execute(
                text("SELECT minute, flags FROM source_rates WHERE system = 'hash-matcher'")
            )
        ).all()
    assert [(row.minute, row.flags) for row in rows] == [(two_hours_ago, 1)]
