"""The case rules: what a case becomes when flags join it or a person moves it. Pure.

A case is a `CaseState` (its status, clocks and counters); the functions here change it and
say what happened (a version to number, breaches to count), and the store writes the result.
No I/O, no clock reads: `now` is passed in.

Packet versions: a version is a number, not a document. It advances when flags join a case that
is ready (or become ready), once per batch of flags; the document for a version is built from
the flags attached before it the first time it is needed (read, or submitted), and never changes
after that. So a new flag costs the same on a case of ten flags as on a case of ten thousand.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from schemas.referral import Priority
from services.domain.deadlines import DEFAULT_DEADLINES, Deadlines
from services.referral.enums import CaseStatus, Stage
from services.referral.exceptions import InvalidRequest
from services.referral.lifecycle import SYSTEM_TRANSITIONS, check_transition

_ORDER = list(Priority)

Breach = tuple[Priority, Stage]


class TaskFacts(Protocol):
    """What the case rules need of a task (a `ReferralTask`, or a stored task's columns)."""

    @property
    def priority(self) -> Priority: ...
    @property
    def decision(self) -> Literal["refer", "review"]: ...
    @property
    def detected_at(self) -> datetime: ...


@dataclass(slots=True)
class CaseState:
    """The columns of a case the rules read and write (identity and destination aside)."""

    status: CaseStatus
    priority: str
    criteria: list[str]
    first_detected_at: datetime
    updated_at: datetime
    packet_version: int = 0
    """The latest version number; 0 while no packet is due (a case under review)."""
    submitted_version: int | None = None
    flag_count: int = 0
    review_due_at: datetime | None = None
    review_due_priority: str | None = None
    ready_due_at: datetime | None = None
    ready_due_priority: str | None = None
    submitted_due_at: datetime | None = None
    submitted_due_priority: str | None = None
    due_at: datetime | None = None
    due_stage: str | None = None
    reviewed_at: datetime | None = None
    ready_at: datetime | None = None
    submitted_at: datetime | None = None
    acknowledged_at: datetime | None = None
    closed_at: datetime | None = None
    dismissed_at: datetime | None = None
    external_reference: str | None = None
    review_breached_at: datetime | None = None
    ready_breached_at: datetime | None = None
    submitted_breached_at: datetime | None = None
    policy_version: str | None = None
    fired_rules: dict[str, Any] = field(default_factory=dict)
    """The escalation ledger (`escalation.Ledger`), kept by the store."""


STATE_FIELDS = tuple(f.name for f in fields(CaseState))


@dataclass(frozen=True, slots=True)
class Moved:
    """What one change of a case did: the status before (None: the case was opened), whether
    a new packet version was numbered, and the breaches to count now (each counted once)."""

    previous: CaseStatus | None
    new_version: bool
    breaches: tuple[Breach, ...]
    note: str | None = None


def _due(task: TaskFacts, stage: Stage, deadlines: Mapping[Priority, Deadlines]) -> datetime:
    """When `stage` is due for this task's flag: its clock starts at detection."""
    allowed: timedelta = getattr(deadlines[task.priority], stage.value)
    return task.detected_at + allowed


def _first_due(
    tasks: Sequence[TaskFacts],
    deadlines: Mapping[Priority, Deadlines],
    stage_for: Callable[[TaskFacts], Stage],
) -> tuple[datetime, str]:
    """The earliest deadline among `tasks` for a stage, and the priority it follows."""
    due, task = min(
        ((_due(t, stage_for(t), deadlines), t) for t in tasks), key=lambda pair: pair[0]
    )
    return due, task.priority.value


def _set_clock(
    case: CaseState, stage: Stage, due: datetime, priority: str, *, sooner: bool
) -> None:
    """Set a stage's deadline and the priority it follows; with `sooner`, only to bring it
    forward. The priority labels the stage's SLA metrics.

    A more urgent priority that keeps an earlier deadline still takes the clock over: a case
    made P0 by a late flag keeps its (earlier) deadline, now labelled P0, and a breach already
    counted at the lower priority is counted again, as P0's, so the P0 alert covers the case.
    """
    current: datetime | None = getattr(case, f"{stage.value}_due_at")
    if sooner and current is not None and current <= due:
        label: str | None = getattr(case, f"{stage.value}_due_priority")
        if label is not None and _ORDER.index(Priority(priority)) < _ORDER.index(Priority(label)):
            setattr(case, f"{stage.value}_due_priority", priority)
            setattr(case, f"{stage.value}_breached_at", None)
        return
    setattr(case, f"{stage.value}_due_at", due)
    setattr(case, f"{stage.value}_due_priority", priority)


def target_status(current: CaseStatus | None, refer: bool) -> CaseStatus | None:
    """Where a case goes when tasks join it (None: it stays where it is)."""
    if current is None:
        return CaseStatus.READY if refer else CaseStatus.REVIEW
    if current is CaseStatus.REVIEW and refer:
        return CaseStatus.READY
    if current in (CaseStatus.SUBMITTED, CaseStatus.ACKNOWLEDGED):
        return CaseStatus.READY  # new evidence on a case already sent: a supplement to send
    return None


def waiting_on(case: CaseState) -> tuple[datetime | None, str | None]:
    """The deadline the case waits on in its current state, and that stage's name."""
    if case.status is CaseStatus.REVIEW:
        return case.review_due_at, Stage.REVIEW.value
    if case.status is CaseStatus.READY:
        return case.submitted_due_at, Stage.SUBMITTED.value
    return None, None


def mark_late(case: CaseState, now: datetime) -> tuple[Breach, ...]:
    """Mark each stage that was done after its deadline and not yet counted, and return them.

    A stage still waiting past its deadline is the sweep's to find; one done late is found here,
    at the move, so the sweep never has to look at cases that are not waiting.
    """
    found: list[Breach] = []
    done = {
        Stage.REVIEW: (case.review_due_at, case.reviewed_at, case.review_due_priority),
        Stage.READY: (case.ready_due_at, case.ready_at, case.ready_due_priority),
        Stage.SUBMITTED: (
            case.submitted_due_at,
            case.submitted_at
            if case.status in (CaseStatus.SUBMITTED, CaseStatus.ACKNOWLEDGED, CaseStatus.CLOSED)
            else None,
            case.submitted_due_priority,
        ),
    }
    for stage, (due, at, priority) in done.items():
        mark = f"{stage.value}_breached_at"
        if due is not None and at is not None and at > due and getattr(case, mark) is None:
            setattr(case, mark, now)
            found.append((Priority(priority or case.priority), stage))
    return tuple(found)


def next_round(
    case: CaseState,
    unsent: Sequence[TaskFacts],
    deadlines: Mapping[Priority, Deadlines],
    *,
    now: datetime,
    already_numbered: bool = False,
) -> tuple[Breach, ...]:
    """Close the round that was sent and start the clocks of its supplement.

    A stage of the closing round that was done late and not yet counted is marked and returned,
    so resetting the marks for the new round never loses a breach. With `already_numbered` (a
    person sent an older version while a later one existed), the new flags were ready on time in
    that later version: the round has no ready clock.
    """
    settled = mark_late(case, now)
    if already_numbered:
        case.ready_due_at = case.ready_due_priority = None
    else:
        _set_clock(
            case, Stage.READY, *_first_due(unsent, deadlines, lambda t: Stage.READY), sooner=False
        )
    # A flag only for review has not been confirmed by a person: whoever sends the supplement
    # reviews it, within the review deadline.
    submitted = _first_due(
        unsent, deadlines, lambda t: Stage.SUBMITTED if t.decision == "refer" else Stage.REVIEW
    )
    _set_clock(case, Stage.SUBMITTED, *submitted, sooner=False)
    case.ready_breached_at = case.submitted_breached_at = None
    return settled


def _start_clocks(
    case: CaseState,
    tasks: Sequence[TaskFacts],
    target: CaseStatus | None,
    deadlines: Mapping[Priority, Deadlines],
    now: datetime,
) -> tuple[Breach, ...]:
    """Set the case's deadlines for the stage the new tasks put it in."""
    if case.status in (CaseStatus.SUBMITTED, CaseStatus.ACKNOWLEDGED):
        return next_round(case, tasks, deadlines, now=now)
    refer = [t for t in tasks if t.decision == "refer"]
    _set_clock(
        case, Stage.SUBMITTED, *_first_due(tasks, deadlines, lambda t: Stage.SUBMITTED), sooner=True
    )
    if target is CaseStatus.REVIEW or (target is None and case.status is CaseStatus.REVIEW):
        _set_clock(
            case, Stage.REVIEW, *_first_due(tasks, deadlines, lambda t: Stage.REVIEW), sooner=True
        )
    elif target is CaseStatus.READY and refer:
        _set_clock(
            case, Stage.READY, *_first_due(refer, deadlines, lambda t: Stage.READY), sooner=True
        )
    return ()


def open_case(tasks: Sequence[TaskFacts], now: datetime) -> CaseState:
    """A case before its first tasks join it (`join` then sets its status and clocks)."""
    return CaseState(
        status=CaseStatus.REVIEW,
        priority=tasks[0].priority.value,
        criteria=[],
        first_detected_at=min(t.detected_at for t in tasks),
        updated_at=now,
    )


def join(
    case: CaseState,
    tasks: Sequence[TaskFacts],
    criteria: Sequence[str],
    *,
    opened: bool,
    deadlines: Mapping[Priority, Deadlines] = DEFAULT_DEADLINES,
    now: datetime,
    flags: int | None = None,
) -> Moved:
    """New tasks join a case (`opened`: a case made for them). Returns what changed.

    The tasks are attached at the case's `packet_version` as it was before this call: the next
    version is the first to hold them. `flags`: how many of them are new flags (an escalation's
    task is not); all of them when not given.
    """
    previous = None if opened else case.status
    target = target_status(previous, any(t.decision == "refer" for t in tasks))
    case.priority = min(
        [Priority(case.priority), *(t.priority for t in tasks)], key=_ORDER.index
    ).value
    case.criteria = sorted({*case.criteria, *criteria})
    case.first_detected_at = min([case.first_detected_at, *(t.detected_at for t in tasks)])
    case.flag_count += len(tasks) if flags is None else flags
    case.updated_at = now
    breaches = _start_clocks(case, tasks, target, deadlines, now)
    note: str | None = None
    if opened:
        case.status = target or CaseStatus.REVIEW
        if case.status is CaseStatus.READY:
            case.ready_at = now
        note = "opened"
    elif target is not None:
        check_transition(case.status, target, by_system=True)
        note = SYSTEM_TRANSITIONS[(case.status, target)]
        _enter(case, target, now)
    new_version = case.status is CaseStatus.READY
    if new_version:
        case.packet_version += 1
    case.due_at, case.due_stage = waiting_on(case)
    return Moved(previous, new_version, breaches + mark_late(case, now), note)


def _enter(case: CaseState, to: CaseStatus, now: datetime) -> None:
    """Set the timestamps of entering `to` from the case's current status."""
    match (case.status, to):
        case (CaseStatus.REVIEW, CaseStatus.READY):
            case.reviewed_at = case.ready_at = now
        case (CaseStatus.SUBMITTED | CaseStatus.ACKNOWLEDGED, CaseStatus.READY):
            case.ready_at = now
        case (CaseStatus.REVIEW, CaseStatus.DISMISSED):
            case.reviewed_at = case.dismissed_at = now
        case (CaseStatus.READY, CaseStatus.SUBMITTED):
            case.submitted_at = now
        case (CaseStatus.SUBMITTED, CaseStatus.ACKNOWLEDGED):
            case.acknowledged_at = now
        case (CaseStatus.ACKNOWLEDGED, CaseStatus.CLOSED):
            case.closed_at = now
    case.status = to
    case.updated_at = now


def move(
    case: CaseState,
    to: CaseStatus,
    *,
    now: datetime,
    external_reference: str | None = None,
    note: str | None = None,
    packet_version: int | None = None,
) -> Moved:
    """A person moves a case: checked, timestamped; a late stage is marked.

    Submitting names the version sent, which must be one not sent before and not beyond the
    latest. Approving a review numbers the first packet version.
    """
    previous = case.status
    check_transition(
        previous,
        to,
        external_reference=external_reference,
        note=note,
        packet_version=packet_version,
    )
    if to is CaseStatus.SUBMITTED:
        sent = packet_version or 0
        earliest = (case.submitted_version or 0) + 1
        if not earliest <= sent <= case.packet_version:
            raise InvalidRequest(
                f"packet_version must name the version that was sent: one of "
                f"{earliest}..{case.packet_version}"
            )
        case.submitted_version = sent
        case.external_reference = external_reference
    elif to is CaseStatus.ACKNOWLEDGED:
        case.external_reference = external_reference or case.external_reference
    _enter(case, to, now)
    new_version = previous is CaseStatus.REVIEW and to is CaseStatus.READY
    if new_version:
        case.packet_version += 1
    case.due_at, case.due_stage = waiting_on(case)
    return Moved(previous, new_version, mark_late(case, now), note)


def resend_later_flags(
    case: CaseState,
    unsent: Sequence[TaskFacts],
    *,
    deadlines: Mapping[Priority, Deadlines],
    now: datetime,
) -> Moved:
    """After a person sent an older version than the latest, bring the case back to ready with a
    supplement of the flags that were not sent (`unsent`: those attached since that version)."""
    previous = case.status
    settled = next_round(case, unsent, deadlines, now=now, already_numbered=True)
    note = f"version {case.submitted_version} was sent; later flags need a supplement"
    check_transition(previous, CaseStatus.READY, by_system=True)
    _enter(case, CaseStatus.READY, now)
    case.packet_version += 1
    case.due_at, case.due_stage = waiting_on(case)
    return Moved(previous, True, settled + mark_late(case, now), note)


def needs_supplement(case: CaseState) -> bool:
    """True when a person sent a version older than the latest: later flags are unsent."""
    return (
        case.status is CaseStatus.SUBMITTED and (case.submitted_version or 0) < case.packet_version
    )
