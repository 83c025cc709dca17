"""The flood breaker's persistence: counts per source and minute, breakers open and closed.

The rules are `services.domain.breaker` (pure). Counting and opening happen in the worker's
batch transaction, so every worker sees the same counts and the same open breakers; the unique
index on open breakers makes opening idempotent across workers.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import uuid4

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.referral import ReferralTask
from services.domain.breaker import BreakerSettings, Source, cooled, source_label, trips
from services.referral.database import new_engine, new_sessionmaker
from services.referral.models import Breaker, SourceRate


@dataclass(frozen=True, slots=True)
class Opened:
    source: Source
    reason: str


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


async def count(session: AsyncSession, tasks: Iterable[ReferralTask], now: datetime) -> set[Source]:
    """Count each new flag that made a task once, by its source, in this minute; the sources."""
    flags = {t.flag_id: (t.flag.source.system, t.flag.source.version) for t in tasks}
    counted = Counter(flags.values())
    if not counted:
        return set()
    minute = _minute(now)
    rows = [
        {"system": system, "version": version, "minute": minute, "flags": n}
        for (system, version), n in sorted(counted.items())
    ]
    statement = insert(SourceRate)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[SourceRate.system, SourceRate.version, SourceRate.minute],
            set_={"flags": SourceRate.flags + statement.excluded.flags},
        ),
        rows,
    )
    return set(counted)


async def trip(
    session: AsyncSession, sources: Iterable[Source], now: datetime, settings: BreakerSettings
) -> list[Opened]:
    """Open the breaker of each source now sending past its threshold (once: idempotent)."""
    opened: list[Opened] = []
    for system, version in sorted(sources):
        last_close = await session.scalar(
            select(func.max(Breaker.closed_at)).where(
                Breaker.system == system, Breaker.version == version
            )
        )
        # Counted by whole minutes. After a person's close, from the next minute: the surge
        # they judged is not counted again (the rest of that minute goes uncounted).
        start = now - settings.window
        counted = SourceRate.minute >= _minute(start)
        if last_close is not None and last_close > start:
            counted = SourceRate.minute > _minute(last_close)
        in_window = await session.scalar(
            select(func.coalesce(func.sum(SourceRate.flags), 0)).where(
                SourceRate.system == system, SourceRate.version == version, counted
            )
        )
        usual = await session.scalar(
            select(func.coalesce(func.sum(SourceRate.flags), 0)).where(
                SourceRate.system == system,
                SourceRate.minute >= _minute(start - settings.baseline),
                SourceRate.minute < _minute(start),
            )
        )
        tripped = trips(int(in_window or 0), int(usual or 0), settings)
        if tripped is None:
            continue
        reason = tripped.reason(settings)
        inserted = await session.scalar(
            insert(Breaker)
            .values(
                breaker_id=uuid4(), system=system, version=version, opened_at=now, reason=reason
            )
            .on_conflict_do_nothing(
                index_elements=[Breaker.system, Breaker.version],
                index_where=Breaker.closed_at.is_(None),
            )
            .returning(Breaker.breaker_id)
        )
        if inserted is not None:
            opened.append(Opened((system, version), reason))
    return opened


async def holding(session: AsyncSession, sources: Iterable[Source]) -> frozenset[Source]:
    """The sources among `sources` whose breaker is open."""
    wanted = sorted(sources)
    if not wanted:
        return frozenset()
    rows = await session.execute(
        select(Breaker.system, Breaker.version).where(
            Breaker.closed_at.is_(None),
            Breaker.system.in_({s for s, _ in wanted}),
        )
    )
    return frozenset((system, version) for system, version in rows if (system, version) in wanted)


async def open_now(session: AsyncSession) -> list[Breaker]:
    return list(
        await session.scalars(
            select(Breaker).where(Breaker.closed_at.is_(None)).order_by(Breaker.opened_at)
        )
    )


async def listed(session: AsyncSession, *, limit: int = 100) -> list[Breaker]:
    """The latest breakers, open and closed."""
    return list(
        await session.scalars(select(Breaker).order_by(Breaker.opened_at.desc()).limit(limit))
    )


async def close(
    session: AsyncSession, source: Source, *, by: str, note: str, now: datetime
) -> Breaker | None:
    """Close a source's open breaker: who and why are kept. None when none is open."""
    system, version = source
    return await session.scalar(
        update(Breaker)
        .where(Breaker.system == system, Breaker.version == version, Breaker.closed_at.is_(None))
        .values(closed_at=now, closed_by=by[:128], close_note=note[:1024])
        .returning(Breaker)
    )


async def sweep(session: AsyncSession, now: datetime, settings: BreakerSettings) -> dict[str, int]:
    """Close breakers whose cool-down passed, forget counts older than the baseline needs, and
    say which sources are held now (label → 1)."""
    for breaker in await open_now(session):
        if cooled(breaker.opened_at, now, settings):
            await close(
                session,
                (breaker.system, breaker.version),
                by="cool-down",
                note="the configured cool-down passed",
                now=now,
            )
    await session.execute(
        delete(SourceRate).where(
            SourceRate.minute < _minute(now - settings.window - settings.baseline)
        )
    )
    return {source_label((b.system, b.version)): 1 for b in await open_now(session)}


async def run_listed(settings_url: str) -> list[Breaker]:
    """`csae breaker list`: the latest breakers, open and closed."""
    engine = new_engine(settings_url)
    try:
        async with new_sessionmaker(engine)() as session:
            return await listed(session)
    finally:
        await engine.dispose()


async def run_close(settings_url: str, source: Source, *, by: str, note: str) -> Breaker | None:
    """`csae breaker close`: close a source's open breaker, saying who and why."""
    engine = new_engine(settings_url)
    try:
        async with new_sessionmaker(engine)() as session, session.begin():
            return await close(session, source, by=by, note=note, now=datetime.now(UTC))
    finally:
        await engine.dispose()
