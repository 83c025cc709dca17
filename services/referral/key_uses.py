"""When each API key was last used, without a database write per request.

Each API process notes a key's latest use in memory (`KeyUses`) and flushes what it noted to
table `api_key_uses` at most every `CSAE_API_KEY_USE_FLUSH_SECONDS`, and once more as it stops;
`csae keys list` shows it. A flush keeps the later of the stored and the flushed time, so
processes flushing in any order leave the latest use of all.
"""

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.referral.models import ApiKeyUse


class KeyUses:
    """The latest use of each key this process has seen since its last flush."""

    def __init__(self) -> None:
        self._latest: dict[str, datetime] = {}

    def seen(self, key_id: str, at: datetime) -> None:
        before = self._latest.get(key_id)
        if before is None or at > before:
            self._latest[key_id] = at

    def take(self) -> dict[str, datetime]:
        """What was seen, to flush; forgotten here (`keep` puts it back if the flush fails)."""
        taken, self._latest = self._latest, {}
        return taken

    def keep(self, uses: Mapping[str, datetime]) -> None:
        for key_id, at in uses.items():
            self.seen(key_id, at)


async def flush(*, session: AsyncSession, uses: Mapping[str, datetime]) -> None:
    """Store each key's latest use, keeping a later one already stored."""
    if not uses:
        return
    rows = [{"key_id": k, "last_used_at": at} for k, at in sorted(uses.items())]  # lock order
    upsert = insert(ApiKeyUse).values(rows)
    await session.execute(
        upsert.on_conflict_do_update(
            index_elements=[ApiKeyUse.key_id],
            set_={
                "last_used_at": func.greatest(ApiKeyUse.last_used_at, upsert.excluded.last_used_at)
            },
        )
    )


async def last_uses(*, session: AsyncSession) -> dict[str, datetime]:
    """Key id → the latest use flushed by any API process."""
    rows = await session.execute(select(ApiKeyUse.key_id, ApiKeyUse.last_used_at))
    return {row.key_id: row.last_used_at for row in rows}
