"""Service-level deadlines per priority and stage, measured from `detected_at`. Pure."""

from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from schemas.referral import DestinationKind, Priority


class Deadlines(BaseModel):
    """How long each stage may take, from a flag's detection."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ready: timedelta
    """From detection to a packet ready to send."""
    submitted: timedelta
    """From detection to the packet sent by a person."""
    review: timedelta
    """From detection to a reviewer's decision, for review outcomes."""

    @model_validator(mode="after")
    def _ordered(self) -> "Deadlines":
        for name in ("ready", "submitted", "review"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"the {name} deadline must be positive")
        if self.ready > self.submitted:
            raise ValueError("the ready deadline must not be later than the submitted deadline")
        return self


# The design's defaults (ARCHITECTURE.md §5).
DEFAULT_DEADLINES: dict[Priority, Deadlines] = {
    Priority.P0: Deadlines(
        ready=timedelta(seconds=60), submitted=timedelta(minutes=15), review=timedelta(minutes=15)
    ),
    Priority.P1: Deadlines(
        ready=timedelta(minutes=5), submitted=timedelta(hours=24), review=timedelta(hours=4)
    ),
    Priority.P2: Deadlines(
        ready=timedelta(minutes=15), submitted=timedelta(hours=72), review=timedelta(hours=4)
    ),
    Priority.P3: Deadlines(
        ready=timedelta(hours=1), submitted=timedelta(days=7), review=timedelta(hours=4)
    ),
}


# The NCA's clocks, by its tier (our reading of SI 2026/268, unverified): "immediately" for P0
# and P1, "as soon as reasonably practicable" for P2, "without undue delay" for P3. The
# regulations give words, not hours: these are ours, tighter than the police defaults.
NCA_DEADLINES: dict[Priority, Deadlines] = {
    Priority.P0: Deadlines(
        ready=timedelta(seconds=60), submitted=timedelta(minutes=15), review=timedelta(minutes=15)
    ),
    Priority.P1: Deadlines(
        ready=timedelta(minutes=5), submitted=timedelta(hours=1), review=timedelta(hours=1)
    ),
    Priority.P2: Deadlines(
        ready=timedelta(minutes=15), submitted=timedelta(hours=24), review=timedelta(hours=4)
    ),
    Priority.P3: Deadlines(
        ready=timedelta(hours=1), submitted=timedelta(hours=72), review=timedelta(hours=4)
    ),
}


def for_destination(
    kind: DestinationKind, deadlines: Mapping[Priority, Deadlines] = DEFAULT_DEADLINES
) -> Mapping[Priority, Deadlines]:
    """The deadlines a destination's cases run on: the configured table, and for the NCA each
    stage the sooner of the configured deadline and the NCA's (`NCA_DEADLINES`)."""
    if kind is not DestinationKind.NCA:
        return deadlines
    return _sooner(tuple(deadlines.items()))


@lru_cache(maxsize=8)
def _sooner(table: tuple[tuple[Priority, Deadlines], ...]) -> Mapping[Priority, Deadlines]:
    configured = dict(table)
    return {
        priority: Deadlines(
            **{
                stage: min(getattr(configured[priority], stage), getattr(nca, stage))
                for stage in ("ready", "submitted", "review")
            }
        )
        for priority, nca in NCA_DEADLINES.items()
    }


def with_defaults(overrides: Any) -> Any:
    """Merge a partial table (`{"P0": {"ready": 30}}`) over the defaults, for configuration."""
    if not isinstance(overrides, dict):
        return overrides
    merged: dict[str, Any] = {p.value: d.model_dump() for p, d in DEFAULT_DEADLINES.items()}
    for priority, stages in overrides.items():
        key = priority.value if isinstance(priority, Priority) else priority
        if key in merged and isinstance(stages, dict):
            merged[key] = {**merged[key], **stages}
        elif isinstance(stages, Deadlines):
            merged[key] = stages.model_dump()
        else:
            merged[key] = stages  # left for validation to refuse
    return merged


def first_due_at(
    detected_at: datetime,
    priority: Priority,
    decision: str,
    deadlines: Mapping[Priority, Deadlines] = DEFAULT_DEADLINES,
) -> datetime:
    """When the first stage is due: ready for a referral, reviewed for a review."""
    table = deadlines[priority]
    return detected_at + (table.ready if decision == "refer" else table.review)
