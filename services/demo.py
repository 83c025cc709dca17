"""`csae demo`: publish the sample flags, wait for the pipeline, and print what it made."""

import asyncio
import contextlib
import sys
import time
from collections import Counter
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from sqlalchemy import select

from schemas.referral import RejectedMessage
from services.pipeline.kafka import client_options
from services.pipeline.publish import Published, publish_lines, read_lines
from services.pipeline.settings import Settings
from services.referral.database import new_engine, new_sessionmaker
from services.referral.models import Case, DecisionRecord, Task


async def _watch_dead_letters(settings: Settings, hashes: set[str], found: set[str]) -> None:
    """Add to `found` each published hash that appears on the dead-letter topic, until cancelled."""
    consumer = AIOKafkaConsumer(
        settings.topic_dlq, **client_options(settings), auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    letter = RejectedMessage.model_validate_json(record.value)
                    if letter.sha256 in hashes:
                        found.add(letter.sha256)
    finally:
        await consumer.stop()


async def run_demo(settings: Settings, path: Path, *, wait_seconds: float) -> int:
    lines = read_lines(path, fresh=True)
    started = time.monotonic()
    published = await publish_lines(settings, lines)
    deadline = started + wait_seconds
    by_id = {p.flag_id: p for p in published if p.flag_id}
    engine = new_engine(settings.database_url)
    sessions = new_sessionmaker(engine)
    try:
        refused: set[str] = set()
        watcher = asyncio.create_task(
            _watch_dead_letters(settings, {p.sha256 for p in published}, refused)
        )
        decisions: dict[str, DecisionRecord] = {}
        while time.monotonic() < deadline:
            async with sessions() as s:
                rows = await s.scalars(
                    select(DecisionRecord).where(DecisionRecord.flag_id.in_(list(by_id)))
                )
                decided = {str(d.flag_id): d for d in rows}
                tasks = await s.scalars(select(Task.flag_id).where(Task.flag_id.in_(list(by_id))))
                placed = Counter(str(flag_id) for flag_id in tasks)
            # A flag is done once every destination of its decision has its case.
            decisions = {
                flag_id: d
                for flag_id, d in decided.items()
                if placed[flag_id] == len(d.body["destinations"])
            }
            if len(decisions) + len(refused) >= len(published):
                break
            await asyncio.sleep(0.25)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        elapsed = time.monotonic() - started
        async with sessions() as s:
            joined = await s.execute(
                select(Task.flag_id, Case.case_id, Case.status, Case.destination_key)
                .join(Case, Case.case_id == Task.case_id)
                .where(Task.flag_id.in_(list(by_id)))
            )
            cases: dict[str, list[str]] = {}
            for flag_id, case_id, status, destination in joined:
                cases.setdefault(str(flag_id), []).append(
                    f"{destination} {status.value} {str(case_id)[:8]}"
                )
    finally:
        await engine.dispose()
    _print_table(published, decisions, cases, refused)
    missing = len(published) - len(decisions) - len(refused)
    print(
        f"\n{len(published)} flags published; {len(decisions)} decided, {len(refused)} refused "
        f"to {settings.topic_dlq}, in {elapsed:.1f} s"
    )
    if missing:
        print(
            f"{missing} flag(s) not yet accounted for after {wait_seconds:.0f} s", file=sys.stderr
        )
        return 1
    return 0


def _print_table(
    published: list[Published],
    decisions: dict[str, DecisionRecord],
    cases: dict[str, list[str]],
    refused: set[str],
) -> None:
    header = (
        f"{'flag':<10} {'outcome':<8} {'prio':<4} {'criteria':<22} cases (destination status id)"
    )
    print(header)
    print("-" * len(header))
    for p in published:
        short = (p.flag_id or "-")[:8]
        decision = decisions.get(p.flag_id or "")
        if decision is None:
            state = "REFUSED" if p.sha256 in refused else "pending"
            print(f"{short:<10} {state:<8}")
            continue
        criteria = ",".join(decision.criteria) or "-"
        found = "; ".join(cases.get(p.flag_id or "", [])) or "-"
        print(
            f"{short:<10} {decision.outcome:<8} {decision.priority or '-':<4} "
            f"{criteria:<22} {found}"
        )
