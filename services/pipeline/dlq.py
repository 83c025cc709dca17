"""Dead-letter records: why a message was refused, never the message itself."""

import logging
from datetime import datetime

from schemas.referral import RejectedMessage
from services.pipeline.decode import Refusal
from services.pipeline.kafka import Record

log = logging.getLogger(__name__)


def dead_letter(record: Record, refusal: Refusal, *, group: str, now: datetime) -> RejectedMessage:
    """The DLQ record for a refused message, and a log line that carries no payload."""
    log.warning(
        "message refused",
        extra={
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "reason": refusal.reason.value,
            "flag_id": refusal.flag_id,
            "size": refusal.size,
        },
    )
    return RejectedMessage(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        size=refusal.size,
        sha256=refusal.sha256,
        flag_id=refusal.flag_id,
        reason=refusal.reason,
        errors=list(refusal.errors),
        consumer_group=group,
        rejected_at=now,
    )
