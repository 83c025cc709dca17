"""The Alembic migrations build exactly the tables the models describe."""

import asyncio
from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from services.referral.database import new_engine, upgrade
from services.referral.models import Base
from tests.infra import create_database, drop_database


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


async def test_cases_stored_before_the_lifecycle_wait_on_the_right_clock_after_upgrade() -> None:
    """A database from the walking skeleton (revision 0001) keeps its cases' SLA clocks."""
    url = await create_database(revision="0001")
    try:
        engine = new_engine(url)
        async with engine.begin() as connection:
            review_due_at = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)
            for status, review_due in (("review", review_due_at), ("ready", None)):
                await connection.execute(
                    text(
                        "INSERT INTO cases (case_id, case_key, destination, destination_key, "
                        "status, priority, criteria, org_id, subject_account_id, "
                        "first_detected_at, created_at, updated_at, review_due_at, ready_due_at, "
                        "submitted_due_at, packet_version) VALUES (gen_random_uuid(), :key, "
                        "'police', 'police:kent', :status, 'P1', '{grooming}', 'org', 'acct', "
                        "now(), now(), now(), CAST(:review_due AS timestamptz), now(), "
                        "'2026-11-27 09:00+00', 0)"
                    ),
                    {"key": f"org|acct|{status}", "status": status, "review_due": review_due},
                )
        await engine.dispose()
        await asyncio.to_thread(upgrade, url)
        engine = new_engine(url)
        async with engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT status, due_stage, due_at = COALESCE(review_due_at, "
                    "submitted_due_at) FROM cases ORDER BY status"
                )
            )
            assert [tuple(r) for r in rows] == [
                ("ready", "submitted", True),
                ("review", "review", True),
            ]
        await engine.dispose()
    finally:
        await drop_database(url)
