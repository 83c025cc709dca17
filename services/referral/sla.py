"""Service-level deadlines per priority, measured from `detected_at`. Pure."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.referral import Priority


@dataclass(frozen=True, slots=True)
class Deadlines:
    ready: timedelta
    """From detection to a packet ready to send."""
    submitted: timedelta
    """From detection to the packet sent by a person."""
    review: timedelta
    """From detection to a reviewer's decision, for review outcomes."""


DEFAULT_DEADLINES: dict[Priority, Deadlines] = {
    Priority.P0: Deadlines(timedelta(seconds=60), timedelta(minutes=15), timedelta(minutes=15)),
    Priority.P1: Deadlines(timedelta(minutes=5), timedelta(hours=24), timedelta(hours=4)),
    Priority.P2: Deadlines(timedelta(minutes=15), timedelta(hours=72), timedelta(hours=4)),
    Priority.P3: Deadlines(timedelta(hours=1), timedelta(days=7), timedelta(hours=4)),
}


def first_due_at(
    detected_at: datetime,
    priority: Priority,
    decision: str,
    deadlines: dict[Priority, Deadlines] = DEFAULT_DEADLINES,
) -> datetime:
    """When the first stage is due: ready for a referral, reviewed for a review."""
    table = deadlines[priority]
    return detected_at + (table.ready if decision == "refer" else table.review)
