"""The router against the real broker: decisions, tasks and dead letters, offsets after acks."""

import json
from uuid import UUID

from schemas.referral import Decision, ReferralTask, RejectedMessage
from services.pipeline.kafka import new_producer
from services.pipeline.metrics import Metrics
from services.pipeline.settings import Settings
from tests.factories import flag_document, image, signal
from tests.kafka_reading import read_topic, wait_for_commit

MARKER = "PAYLOAD-MARKER-7f3a"


async def publish(settings: Settings, values: list[bytes]) -> None:
    producer = new_producer(settings)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(settings.topic_flags, value)
    finally:
        await producer.stop()


async def test_router_routes_flags_and_dead_letters_bad_ones_without_their_bytes(
    settings: Settings, router: Metrics
) -> None:
    refer = flag_document(
        source={"system": "hash-matcher", "version": "2", "kind": "hash_match"},
        signals=[
            signal(
                "iioc",
                1.0,
                hash_match={"list": "synthetic-list", "match": "exact", "external": True},
            )
        ],
        content=[image(public=True)],
    )
    none = flag_document(signals=[signal("other", 0.99)])
    media = flag_document(
        subject={"account_id": "acct-x", "username": f"data:image/png;base64,{MARKER}"}
    )
    extra = flag_document(note=MARKER)
    bad_json = f'{{"flag_id": "{MARKER}"'.encode()
    oversized = json.dumps(flag_document(padding="x" * settings.max_flag_bytes)).encode()
    values = [
        json.dumps(refer).encode(),
        bad_json,
        json.dumps(media).encode(),
        json.dumps(none).encode(),
        json.dumps(extra).encode(),
        oversized,
    ]
    await publish(settings, values)

    decisions = [
        Decision.model_validate_json(r.value)
        for r in await read_topic(settings, settings.topic_decisions, 2)
    ]
    task_records = await read_topic(settings, settings.topic_referrals, 2)
    tasks = [ReferralTask.model_validate_json(r.value) for r in task_records]
    letters = await read_topic(settings, settings.topic_dlq, 4)

    by_flag = {str(d.flag_id): d for d in decisions}
    assert by_flag[refer["flag_id"]].outcome == "refer"
    assert by_flag[none["flag_id"]].outcome == "none"
    assert {t.destination.key for t in tasks} == {"police:metropolitan", "iwf"}
    assert all(t.flag_id == UUID(refer["flag_id"]) for t in tasks)
    assert {r.key for r in task_records} == {t.case_key.encode() for t in tasks}

    records = [RejectedMessage.model_validate_json(r.value) for r in letters]
    reasons = sorted(r.reason.value for r in records)
    assert reasons == ["embedded_media", "invalid", "invalid_json", "oversized"]
    assert all(MARKER.encode() not in letter.value for letter in letters)
    for record in records:
        assert record.topic == settings.topic_flags
        assert record.consumer_group == settings.router_group
        assert record.errors
    sizes = {r.reason.value: r.size for r in records}
    assert sizes["oversized"] == len(oversized)
    assert sizes["invalid_json"] == len(bad_json)
    flag_ids = {r.reason.value: r.flag_id for r in records}
    assert flag_ids["embedded_media"] == UUID(media["flag_id"])
    assert flag_ids["invalid"] == UUID(extra["flag_id"])

    # Offsets were committed past every message, the bad ones included: nothing is re-read.
    committed = await wait_for_commit(
        settings, settings.topic_flags, settings.router_group, len(values)
    )
    assert committed == len(values)
    rejected = router.registry.get_sample_value("csae_router_flags_total", {"outcome": "rejected"})
    assert rejected == 4
