"""The audit trail: every read and write of case data, each entry hash-chained with the last.

One chain, serialised by a transaction-level advisory lock: an entry takes the next sequence
number and the last entry's hash (in the database, by `audit_append`: one round trip), so a
gap, an edit or a swap breaks the chain where it happened.
An entry holds who, what, when, the route, ids, a list's filter and row count and the outcome;
never packet contents nor personal data.
"""

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import DateTime, Text, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from services.referral.exceptions import ReferralError, http_status
from services.referral.models import AuditRecord

AUDIT_LOCK = 0x63736165_0003
"""The advisory lock that serialises appends to the chain (held until the transaction ends;
taken by the database function `audit_append`, migration 0011, which repeats it)."""
GENESIS = "0" * 64
"""The predecessor hash of the first entry."""

Fact = str | int | bool | None


@dataclass(frozen=True, slots=True)
class Entry:
    """What happened, before it takes its place in the chain."""

    actor: str
    action: str
    outcome: str
    route: str | None = None
    request_id: str | None = None
    case_id: UUID | None = None
    packet_version: int | None = None
    flag_id: UUID | None = None
    detail: Mapping[str, Fact] = field(default_factory=dict)


class Chained(Protocol):
    """An entry as stored (an `AuditRecord`, or a line of an export read back)."""

    @property
    def seq(self) -> int: ...

    @property
    def at(self) -> datetime: ...

    @property
    def actor(self) -> str: ...

    @property
    def action(self) -> str: ...

    @property
    def route(self) -> str | None: ...

    @property
    def request_id(self) -> str | None: ...

    @property
    def case_id(self) -> UUID | None: ...

    @property
    def packet_version(self) -> int | None: ...

    @property
    def flag_id(self) -> UUID | None: ...

    @property
    def detail(self) -> Mapping[str, Any]: ...

    @property
    def outcome(self) -> str: ...

    @property
    def prev_hash(self) -> str: ...

    @property
    def hash(self) -> str: ...


def _instant(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _fields(seq: int, at: datetime, entry: Entry | Chained) -> dict[str, Any]:
    return {
        "seq": seq,
        "at": _instant(at),
        "actor": entry.actor,
        "action": entry.action,
        "route": entry.route,
        "request_id": entry.request_id,
        "case_id": None if entry.case_id is None else str(entry.case_id),
        "packet_version": entry.packet_version,
        "flag_id": None if entry.flag_id is None else str(entry.flag_id),
        "detail": dict(entry.detail),
        "outcome": entry.outcome,
    }


def canonical(seq: int, at: datetime, entry: Entry | Chained) -> bytes:
    """The entry's canonical JSON: sorted keys, no spaces, UTC time to the microsecond."""
    body = _fields(seq, at, entry)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(previous: str, body: bytes) -> str:
    """sha256 over the predecessor's hash and the entry's canonical JSON."""
    return hashlib.sha256(previous.encode() + b"\n" + body).hexdigest()


_SEQ_LAST = ',"seq":'
"""Where the canonical JSON ends: `seq` sorts last of an entry's keys."""


def unnumbered(at: datetime, entry: Entry) -> str:
    """The entry's canonical JSON up to its sequence number, which the database appends under
    the audit lock: `unnumbered(at, e) + f"{seq}}}"` is `canonical(seq, at, e)`."""
    body = canonical(0, at, entry).decode()
    if not body.endswith(_SEQ_LAST + "0}"):  # a new key sorting after `seq` would break this
        raise AssertionError("the audit entry's canonical JSON no longer ends with its seq")
    return body[: -len("0}")]


_APPEND_MANY = text(
    "SELECT audit_append(:at, :actor, :action, :route, :request_id, :case_id, "
    ":packet_version, :flag_id, :detail, :outcome, :body)"
).bindparams(
    bindparam("at", type_=DateTime(timezone=True)),
    *(
        bindparam(name, type_=ARRAY(Text()))
        for name in (
            "actor", "action", "route", "request_id", "case_id", "packet_version", "flag_id",
            "detail", "outcome", "body",
        )
    ),
)  # fmt: skip


def _text(value: object) -> str | None:
    return None if value is None else str(value)


async def record(*, session: AsyncSession, entry: Entry, now: datetime) -> int:
    """Append `entry` in the session's transaction, in one round trip; its sequence number.

    The database function `audit_append` (migration 0011) takes the audit lock until the
    transaction ends, numbers the entry and chains its hash: call it last, just before the
    commit.
    """
    return await record_many(session=session, entries=[entry], now=now)


async def record_many(*, session: AsyncSession, entries: Sequence[Entry], now: datetime) -> int:
    """Append `entries`, in order, in the session's transaction and one round trip; the last
    sequence number, or 0 when there are none. As `record`: call it last, before the commit."""
    if not entries:
        return 0
    seq = await session.scalar(
        _APPEND_MANY,
        {
            "at": now,
            "actor": [e.actor for e in entries],
            "action": [e.action for e in entries],
            "route": [e.route for e in entries],
            "request_id": [e.request_id for e in entries],
            "case_id": [_text(e.case_id) for e in entries],
            "packet_version": [_text(e.packet_version) for e in entries],
            "flag_id": [_text(e.flag_id) for e in entries],
            "detail": [json.dumps(dict(e.detail)) for e in entries],
            "outcome": [e.outcome for e in entries],
            "body": [unnumbered(now, e) for e in entries],
        },
    )
    return int(seq)


@asynccontextmanager
async def audited(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    route: str,
    request_id: str | None,
    clock: Callable[[], datetime],
    case_id: UUID | None = None,
    packet_version: int | None = None,
    flag_id: UUID | None = None,
) -> AsyncIterator[dict[str, Fact]]:
    """Record what the block did on the audit trail, then commit: its writes and the entry
    together. A refusal (404, 409...) rolls the block back and is recorded on its own, with the
    HTTP status it answers. The caller adds facts (a list's filter and row count) to the dict
    it is given."""
    detail: dict[str, Fact] = {}

    async def write(outcome: int) -> None:
        entry = Entry(
            actor=actor,
            action=action,
            outcome=str(outcome),
            route=route,
            request_id=request_id,
            case_id=case_id,
            packet_version=packet_version,
            flag_id=flag_id,
            detail=detail,
        )
        await record(session=session, entry=entry, now=clock())
        await session.commit()

    try:
        yield detail
    except ReferralError as exc:
        await session.rollback()
        await write(http_status(exc))
        raise
    await write(200)


@dataclass(frozen=True, slots=True)
class Break:
    """The first entry where the chain does not hold, and why."""

    seq: int
    reason: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Verified:
    entries: int
    head_seq: int
    head_hash: str
    broken: Break | None


def verify(
    entries: Iterable[Chained], *, start_seq: int = 1, start_hash: str = GENESIS
) -> Verified:
    """Walk entries in stored order (by `seq`); the first that was altered, removed or reordered.

    An altered entry's hash no longer matches its contents; a removed one leaves a gap in the
    numbers (or a successor whose `prev_hash` names a hash no longer there); two swapped entries
    each carry a hash made for another position. Removing the newest entries leaves no gap:
    compare the head printed here with one kept elsewhere (the SIEM's export).
    """
    expected, previous, count = start_seq, start_hash, 0
    for e in entries:
        if e.seq != expected:
            gone = f"entries {expected}..{e.seq - 1}" if e.seq > expected + 1 else f"{expected}"
            why = f"entry {gone} removed" if e.seq > expected else f"out of order after {expected}"
            return Verified(count, expected - 1, previous, Break(expected, why))
        if chain_hash(e.prev_hash, canonical(e.seq, e.at, e)) != e.hash:
            return Verified(
                count,
                expected - 1,
                previous,
                Break(e.seq, "its hash does not match its contents (altered or moved)"),
            )
        if e.prev_hash != previous:
            return Verified(
                count,
                expected - 1,
                previous,
                Break(e.seq, "it does not follow the entry before it (one removed or reordered)"),
            )
        expected, previous, count = expected + 1, e.hash, count + 1
    return Verified(count, expected - 1, previous, None)


async def _batches(
    *, session: AsyncSession, after: int = 0, batch: int = 5000
) -> AsyncIterator[list[AuditRecord]]:
    """Every entry past `after` by sequence number, in batches (memory stays flat)."""
    while True:
        rows = list(
            await session.scalars(
                select(AuditRecord)
                .where(AuditRecord.seq > after)
                .order_by(AuditRecord.seq)
                .limit(batch)
            )
        )
        if rows:
            yield rows
        if len(rows) < batch:
            return
        after = rows[-1].seq
        session.expunge_all()


async def verify_stored(*, session: AsyncSession, batch: int = 5000) -> Verified:
    """`verify` over the whole stored chain, a batch at a time."""
    total, seq, head = 0, 1, GENESIS
    async for rows in _batches(session=session, batch=batch):
        done = verify(rows, start_seq=seq, start_hash=head)
        total += done.entries
        if done.broken is not None:
            return Verified(total, done.head_seq, done.head_hash, done.broken)
        seq, head = done.head_seq + 1, done.head_hash
    return Verified(total, seq - 1, head, None)


def exported(e: Chained) -> dict[str, Any]:
    """An entry as one JSON object for a SIEM: every field, the hashes included."""
    return _fields(e.seq, e.at, e) | {"prev_hash": e.prev_hash, "hash": e.hash}


@dataclass(frozen=True, slots=True)
class ExportedEntry:
    """A line of an export read back: verifiable with `verify` from its first entry."""

    seq: int
    at: datetime
    actor: str
    action: str
    route: str | None
    request_id: str | None
    case_id: UUID | None
    packet_version: int | None
    flag_id: UUID | None
    detail: Mapping[str, Any]
    outcome: str
    prev_hash: str
    hash: str

    @classmethod
    def from_json(cls, line: str) -> "ExportedEntry":
        d = json.loads(line)
        return cls(
            seq=int(d["seq"]),
            at=datetime.fromisoformat(d["at"]),
            actor=d["actor"],
            action=d["action"],
            route=d["route"],
            request_id=d["request_id"],
            case_id=None if d["case_id"] is None else UUID(d["case_id"]),
            packet_version=d["packet_version"],
            flag_id=None if d["flag_id"] is None else UUID(d["flag_id"]),
            detail=d["detail"],
            outcome=d["outcome"],
            prev_hash=d["prev_hash"],
            hash=d["hash"],
        )


async def export(*, session: AsyncSession, since: datetime) -> AsyncIterator[dict[str, Any]]:
    """The entries from `since` on, by sequence number, as JSON-ready objects."""
    first = await session.scalar(
        select(AuditRecord.seq).where(AuditRecord.at >= since).order_by(AuditRecord.seq).limit(1)
    )
    if first is None:
        return
    async for rows in _batches(session=session, after=first - 1):
        for row in rows:
            yield exported(row)
