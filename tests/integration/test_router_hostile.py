"""Hostile messages between valid flags on the real broker: each hostile one gets exactly one
dead letter with a reason, nothing a sender wrote reaches anything downstream (dead letters,
decisions, referrals, the database, the logs), and every valid flag is decided and stored."""

import base64
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.referral import Decision, RejectedMessage
from services.pipeline.kafka import new_producer
from services.pipeline.metrics import Metrics
from services.pipeline.settings import Settings
from tests.factories import flag_document, signal
from tests.integration.test_worker_kafka import run_worker_until
from tests.kafka_reading import read_topic, wait_for_commit

# A JPEG's first 48 bytes (a header and the start of a quantisation table; no picture).
JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707")
JPEG += bytes(48 - len(JPEG))


def _marker(n: int) -> str:
    # Shaped like a field name on purpose: a decoder that keeps "field-like" keys would copy it.
    return f"mkr{n:03d}zq"


def _flag(**overrides: Any) -> dict[str, Any]:
    return flag_document(**{"signals": [signal("coercion", 0.9)], **overrides})


def _json(document: object) -> bytes:
    return json.dumps(document).encode()


def _username(value: str) -> bytes:
    return _json(_flag(subject={"account_id": "acct-hostile", "username": value}))


HOSTILE: list[Callable[[str], bytes]] = [
    lambda m: _json({**_flag(), m: "x"}),  # an unknown key
    lambda m: _json({**_flag(), "extra": {m: {m + "b": {m + "c": [m]}}}}),  # nested unknown keys
    lambda m: _json(_flag(subject={"account_id": "acct-1", m: m})),  # unknown key, known object
    lambda m: _json(_flag(child={"age_band": m})),  # a value outside an enum
    lambda m: _json(_flag(flag_id=m)),  # not a UUID
    lambda m: _json(_flag(platform={"org_id": "org-1", "service": "chat", "country": m})),
    lambda m: b'{"schema_version":2,' + _json(_flag(note=m))[1:],  # a duplicate key
    lambda m: _json(_flag()).replace(
        b'"subject": {', f'"subject": {{"username": "data:image/png;base64,{m}", '.encode(), 1
    ),  # a duplicate username: a data URI, then a clean one
    lambda m: _username(m + " " + base64.b64encode(b"x" + JPEG).decode()),  # one byte in
    lambda m: _username(base64.urlsafe_b64encode(b"xy" + JPEG).decode() + m),  # two bytes in
    lambda m: _username(JPEG.hex() + m),  # hex
    lambda m: _username(quote(base64.b64encode(JPEG).decode(), safe="") + m),  # percent base64
    lambda m: _username(quote("data:image/jpeg;base64,", safe="") + m),  # percent data URI
    lambda m: _json(
        _flag(
            content=[
                {
                    "content_id": "c-1",
                    "media_type": "image",
                    "hashes": {},
                    "url": "https://x.example/" + m + JPEG.decode("latin-1"),
                }
            ]
        )
    ),
    lambda m: _username(m + "\x00"),  # a NUL
    lambda m: _username(m + "\ud800"),  # a lone surrogate
    lambda m: _json(_flag(signals=[{**signal("coercion", 0.9), "label": m}])).replace(
        b"0.9", b"NaN"
    ),  # not strict JSON
    lambda m: _username(m).replace(b"acct-hostile", b"acct-\xff\xfe"),  # not UTF-8
    lambda m: _json(_flag(extra=json.loads("[" * 40 + json.dumps(m) + "]" * 40))),  # deep
    lambda m: _json([m, m]),  # not an object
    lambda m: f'{{"flag_id": "{m}"'.encode(),  # not JSON at all
]


@pytest.mark.usefixtures("router")
async def test_hostile_messages_get_one_dead_letter_each_and_leave_no_trace(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)  # what a deployment logs (aiokafka's DEBUG quotes values)
    caplog.set_level(logging.DEBUG, logger="services")
    markers = [_marker(n) for n in range(len(HOSTILE))]
    hostile = [make(marker) for make, marker in zip(HOSTILE, markers, strict=True)]
    valid = [_flag() for _ in range(len(HOSTILE) + 1)]
    values: list[bytes] = []
    hostile_offsets = []
    for i, document in enumerate(valid):
        values.append(_json(document))
        if i < len(hostile):
            hostile_offsets.append(len(values))
            values.append(hostile[i])
    assert all(marker.encode() in value for marker, value in zip(markers, hostile, strict=True))

    producer = new_producer(settings)
    await producer.start()
    try:
        for value in values:  # one partition, in order: each offset is known
            await producer.send_and_wait(settings.topic_flags, value, partition=0)
    finally:
        await producer.stop()

    async def until_stored() -> None:
        committed = await wait_for_commit(
            settings, settings.topic_flags, settings.router_group, len(values), within=60
        )
        assert committed == len(values)
        stored = await wait_for_commit(
            settings, settings.topic_decisions, settings.referral_group, len(valid), within=60
        )
        assert stored == len(valid)

    await run_worker_until(settings, sessions, Metrics(CollectorRegistry()), until_stored)

    letters = await read_topic(settings, settings.topic_dlq, len(hostile))
    records = [RejectedMessage.model_validate_json(r.value) for r in letters]
    assert sorted(r.offset for r in records) == hostile_offsets, "one dead letter each"
    assert all(r.reason for r in records)
    decisions = await read_topic(settings, settings.topic_decisions, len(valid))
    decided = {Decision.model_validate_json(r.value).flag_id for r in decisions}
    assert {str(flag_id) for flag_id in decided} == {d["flag_id"] for d in valid}
    referrals = await read_topic(settings, settings.topic_referrals, 1)

    downstream = [r.value for r in [*letters, *decisions, *referrals]]
    async with sessions() as session:
        for table in ("flags", "tasks", "decisions", "cases", "packets", "parked_messages"):
            rows = await session.execute(text(f"SELECT row_to_json(t)::text FROM {table} t"))  # noqa: S608
            downstream.extend(row[0].encode() for row in rows)
    logged = caplog.text + "".join(str(vars(record)) for record in caplog.records)
    for marker in markers:
        assert not any(marker.encode() in value for value in downstream), marker
        assert marker not in logged, marker
