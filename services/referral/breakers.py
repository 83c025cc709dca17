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

from schemas.flag import ModerationFlag
from services.domain.breaker import BreakerSettings, Source, cooled, source_label, trips
from services.referral import audit
from services.referral.database import one_session
from services.referral.models import Breaker, SourceRate


@dataclass(frozen=True, slots=True)
class Opened:
    source: Source
    reason: str


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


async def count(
    session: AsyncSession,
    flags: Iterable[ModerationFlag],
    now: datetime,
    settings: BreakerSettings,
    shard: int = 0,
) -> set[Source]:
    """Count new flags by source and the minute they were detected (clamped to the periods the
    breaker reads, so a backlog drained late counts when it happened, not when it was stored);
    the sources. `shard` spreads the counts of several workers over rows of their own, so they
    never wait on one another's row; readers sum the shards."""
    earliest = now - settings.window - settings.baseline
    counted = Counter(
        (f.source.system, f.source.version, _minute(min(max(f.detected_at, earliest), now)))
        for f in flags
    )
    if not counted:
        return set()
    rows = [
        {"system": system, "version": version, "minute": minute, "shard": shard, "flags": n}
        for (system, version, minute), n in sorted(counted.items())
    ]
    statement = insert(SourceRate)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[
                SourceRate.system,
                SourceRate.version,
                SourceRate.minute,
                SourceRate.shard,
            ],
            set_={"flags": SourceRate.flags + statement.excluded.flags},
        ),
        rows,
    )
    return {(system, version) for system, version, _ in counted}


async def _in_window(
    session: AsyncSession, source: Source, now: datetime, settings: BreakerSettings
) -> int:
    """The source's flags detected in the last window (its whole minutes)."""
    system, version = source
    total = await session.scalar(
        select(func.coalesce(func.sum(SourceRate.flags), 0)).where(
            SourceRate.system == system,
            SourceRate.version == version,
            SourceRate.minute > _minute(now - settings.window),
        )
    )
    return int(total or 0)


async def trip(
    session: AsyncSession, sources: Iterable[Source], now: datetime, settings: BreakerSettings
) -> list[Opened]:
    """Open the breaker of each source now sending past its threshold (once: idempotent).

    A rate a person accepted when closing the source's breaker (within the baseline period)
    counts as usual: the surge they judged genuine does not open it again, ten times more does.
    """
    opened: list[Opened] = []
    for system, version in sorted(sources):
        in_window = await _in_window(session, (system, version), now, settings)
        start = now - settings.window
        usual = await session.scalar(
            select(func.coalesce(func.sum(SourceRate.flags), 0)).where(
                SourceRate.system == system,
                SourceRate.minute > _minute(start - settings.baseline),
                SourceRate.minute <= _minute(start),
            )
        )
        accepted = await session.scalar(
            select(func.coalesce(func.max(Breaker.accepted_flags), 0)).where(
                Breaker.system == system,
                Breaker.version == version,
                Breaker.closed_at > now - settings.baseline,
            )
        )
        tripped = trips(in_window, int(usual or 0), settings, accepted=int(accepted or 0))
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
    session: AsyncSession,
    source: Source,
    *,
    by: str,
    note: str,
    now: datetime,
    settings: BreakerSettings,
    accept: bool = True,
) -> Breaker | None:
    """Close a source's open breaker: who and why are kept. None when none is open. With
    `accept` (a person's close), the source's rate now is accepted as usual for the baseline
    period, so the same surge does not open it again."""
    system, version = source
    accepted = await _in_window(session, source, now, settings) if accept else 0
    return await session.scalar(
        update(Breaker)
        .where(Breaker.system == system, Breaker.version == version, Breaker.closed_at.is_(None))
        .values(closed_at=now, closed_by=by[:128], close_note=note[:1024], accepted_flags=accepted)
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
                settings=settings,
                accept=False,
            )
    await session.execute(
        delete(SourceRate).where(
            SourceRate.minute < _minute(now - settings.window - settings.baseline)
        )
    )
    return {source_label((b.system, b.version)): 1 for b in await open_now(session)}


async def run_listed(settings_url: str) -> list[Breaker]:
    """`csae breaker list`: the latest breakers, open and closed."""
    async with one_session(settings_url) as session:
        return await listed(session)


async def run_close(
    settings_url: str, source: Source, *, by: str, note: str, settings: BreakerSettings
) -> Breaker | None:
    """`csae breaker close`: close a source's open breaker, saying who and why."""
    async with one_session(settings_url) as session, session.begin():
        now = datetime.now(UTC)
        closed = await close(session, source, by=by, note=note, now=now, settings=settings)
        await audit.record(
            session=session,
            entry=audit.Entry(
                actor=by,
                action="breaker.close",
                outcome="closed" if closed is not None else "none open",
                detail={"source": source_label(source)},
            ),
            now=now,
        )
        return closed
