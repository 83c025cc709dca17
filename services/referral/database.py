"""The PostgreSQL edge: engine, sessions and migrations."""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from services.referral.exceptions import ConcurrentChange

MIGRATIONS = Path(__file__).with_name("migrations")

DATA_ERRORS = ("22", "23")
"""SQLSTATE classes of an error in the data itself (data exception, integrity constraint): the
same message fails the same way every time. Every other database error is the database's
(unavailable, shutting down, a deadlock, a missing migration) and passes or needs an operator."""


def transient_database_error(error: BaseException) -> bool:
    """True for a database fault that is no message's: retry and block, never dead-letter."""
    if isinstance(error, ConcurrentChange | DisconnectionError | PoolTimeout):
        return True  # no connection free or left: the database is slow or gone
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    cause = getattr(error.orig, "__cause__", None)
    state = getattr(error.orig, "sqlstate", None) or getattr(cause, "sqlstate", None)
    if state is None:
        # No SQLSTATE: the driver refused a value before sending it (asyncpg's DataError is a
        # ValueError), or the connection failed.
        return not isinstance(cause, ValueError)
    return str(state)[:2] not in DATA_ERRORS


class JsonText(str):
    """A JSON document already serialised (by pydantic, from a validated model): stored in a
    JSONB column as it is, without building a dict and serialising it again."""

    __slots__ = ()


def _to_json(value: object) -> str:
    return value if isinstance(value, JsonText) else json.dumps(value)


CONNECT_TIMEOUT_SECONDS = 10.0
"""How long opening a connection may take (asyncpg's default is 60 s): a database that does not
answer at all fails each try soon enough for the worker's retry rounds to come round well inside
its liveness threshold (CSAE_CONSUMER_STALL_SECONDS) and Kafka's max_poll_interval."""


def new_engine(
    url: str, *, pool_size: int = 5, max_overflow: int = 10, pre_ping: bool = True
) -> AsyncEngine:
    """An engine whose pool keeps `pool_size` connections open and opens up to `max_overflow`
    more at a peak (each closed again when returned: a connection costs a few ms to open).

    `pre_ping` tests each connection as it is taken from the pool (three round trips with
    asyncpg: BEGIN, a ping, ROLLBACK), so one the database closed is replaced unseen. Without
    it, a connection found closed fails the one statement that found it, and the pool then
    replaces every connection older than that failure.
    """
    # hide_parameters: SQL errors must not carry identifiers into logs.
    return create_async_engine(
        url,
        hide_parameters=True,
        pool_pre_ping=pre_ping,
        pool_size=pool_size,
        max_overflow=max_overflow,
        json_serializer=_to_json,
        connect_args={"timeout": CONNECT_TIMEOUT_SECONDS},
    )


def new_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def one_session(url: str) -> AsyncIterator[AsyncSession]:
    """A session on an engine of its own, disposed of after: for a command that runs once."""
    engine = new_engine(url)
    try:
        async with new_sessionmaker(engine)() as session:
            yield session
    finally:
        await engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Apply the Alembic migrations up to `revision` (blocking; runs its own event loop)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, revision)
