"""The Alembic migrations build exactly the tables the models describe."""

import asyncio
from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.engine import Connection

from services.pipeline.metrics import Metrics
from services.referral.database import new_engine, new_sessionmaker, upgrade
from services.referral.models import Base
from services.referral.worker import SlaSweeper
from tests.infra import create_database, drop_database
from tests.integration.test_case_lifecycle import Clock


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection)
    return list(compare_metadata(context, Base.metadata))


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = new_engine(database_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
    finally:
        await engine.dispose()
    assert differences == []


async def test_cases_stored_before_the_lifecycle_keep_honest_clocks_after_upgrade() -> None:
    """A database from the walking skeleton (revision 0001): its cases wait on the right clock,
    and the upgrade neither invents breaches nor hides the ones still open."""
    detected = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    url = await create_database(revision="0001")
    try:
        engine = new_engine(url)
        async with engine.begin() as connection:
            # As 0001 stored them: a review case (with a ready deadline it never used) and a
            # ready case made ready 10 minutes after detection, late for its 5 minutes.
            for status, ready_at in (("review", None), ("ready", detected + timedelta(minutes=10))):
                await connection.execute(
                    text(
                        "INSERT INTO cases (case_id, case_key, destination, destination_key, "
                        "status, priority, criteria, org_id, subject_account_id, "
                        "first_detected_at, created_at, updated_at, review_due_at, ready_due_at, "
                        "submitted_due_at, ready_at, packet_version) VALUES (gen_random_uuid(), "
                        ":key, 'police', 'police:kent', :status, 'P1', '{grooming}', 'org', "
                        "'acct', :detected, :detected, :detected, :review_due, :ready_due, "
                        ":submitted_due, :ready_at, 0)"
                    ),
                    {
                        "key": f"org|acct|{status}",
                        "status": status,
                        "detected": detected,
                        "review_due": detected + timedelta(hours=4) if status == "review" else None,
                        "ready_due": detected + timedelta(minutes=5),
                        "submitted_due": detected + timedelta(hours=24),
                        "ready_at": ready_at,
                    },
                )
        await engine.dispose()
        await asyncio.to_thread(upgrade, url)
        engine = new_engine(url)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(
                    text(
                        "SELECT status, due_stage, due_at, ready_due_at FROM cases ORDER BY status"
                    )
                )
                assert [tuple(r) for r in rows] == [
                    (
                        "ready",
                        "submitted",
                        detected + timedelta(hours=24),
                        detected + timedelta(minutes=5),
                    ),
                    ("review", "review", detected + timedelta(hours=4), None),
                ]
            sessions = new_sessionmaker(engine)
            metrics = Metrics(CollectorRegistry())
            for hours in (1, 5):
                await SlaSweeper(
                    sessions=sessions,
                    metrics=metrics,
                    clock=Clock(detected + timedelta(hours=hours)),
                ).sweep_once()
            breaches = {
                stage: metrics.registry.get_sample_value(
                    "csae_sla_breaches_total", {"priority": "P1", "stage": stage}
                )
                for stage in ("review", "ready", "submitted")
            }
            assert breaches == {"review": 1.0, "ready": 0.0, "submitted": 0.0}
        finally:
            await engine.dispose()
    finally:
        await drop_database(url)
