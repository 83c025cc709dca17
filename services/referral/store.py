"""Persistence of decisions, flags, tasks, cases, packets and parked messages.

Every write is idempotent, and a task has exactly one effect under any interleaving of workers:
the open cases a batch touches are locked (in case-key order, so two workers never deadlock)
before the batch checks which of its tasks are already stored, and a case is opened by an insert
that the open-case-key index makes unique. The case rules themselves are `cases`, which is pure.
"""

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, cast
from uuid import UUID, uuid4

from sqlalchemy import String, Table, and_, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.flag import ModerationFlag
from schemas.packets import EarlierReport, Supplement
from schemas.referral import Criterion, Decision, DestinationKind, Priority, ReferralTask
from services.domain import breaker as flood
from services.domain.breaker import BreakerSettings, Source, source_label
from services.domain.deadlines import DEFAULT_DEADLINES, Deadlines, for_destination
from services.domain.forces import ForceDirectory
from services.domain.organisations import Organisations
from services.referral import audit, breakers, cases, escalation, queries, renderings
from services.referral.cases import Breach, CaseState
from services.referral.database import JsonText
from services.referral.enums import OPEN_STATUSES, CaseStatus
from services.referral.escalation import Escalator
from services.referral.exceptions import ConcurrentChange, Conflict, InvalidRequest, NotFound
from services.referral.lifecycle import SYSTEM_ACTOR
from services.referral.models import (
    OPEN_CASE_PREDICATE,
    STATUTORY_PREDICATE,
    Base,
    Case,
    CaseTransition,
    DecisionRecord,
    DeliveryReceipt,
    Flag,
    PacketRecord,
    ParkedMessage,
    Task,
)
from services.referral.ncmec_xml import NCMEC_MECHANISM, is_report_id
from services.referral.packets import Reporter, Totals, build_packet
from services.referral.renderings import Format

log = logging.getLogger(__name__)

PACKET_FLAGS = 200
"""A packet lists at most this many flags, the latest; it counts the rest. The case API lists
every flag."""

_CASE_COLUMNS = [getattr(Case, name) for name in cases.STATE_FIELDS]

Subject = tuple[str, str]
"""A reported account: (organisation id, account id)."""


@dataclass(frozen=True, slots=True)
class CaseConfig:
    """What moving a case needs besides the case: the sender and force directory for its
    packets, and the SLA deadlines for its clocks."""

    reporter: Reporter
    """Who sends a packet when `organisations` does not list the case's organisation."""
    directory: ForceDirectory
    deadlines: Mapping[Priority, Deadlines] = field(default_factory=lambda: DEFAULT_DEADLINES)
    organisations: Organisations | None = None

    def reporter_for(self, org_id: str) -> Reporter:
        """The organisation a case's packets come from: its directory entry."""
        entry = self.organisations.find(org_id) if self.organisations else None
        if entry is None:
            return self.reporter
        return Reporter(
            name=entry.name,
            safeguarding_contact=entry.safeguarding_contact,
            safeguarding_email=entry.safeguarding_email,
        )


_SENT = (CaseStatus.SUBMITTED, CaseStatus.ACKNOWLEDGED)
"""A case in these was sent: new flags on it make a supplementary packet."""


@dataclass(frozen=True, slots=True)
class AppliedTask:
    """What applying one new task did, for metrics."""

    task: ReferralTask
    case_id: UUID
    status: CaseStatus
    became_ready: bool
    breaches: tuple[Breach, ...] = ()
    """Breaches found by this change of the case (listed on its first task only)."""
    held: bool = False
    """A referral held as a review: its source's flood breaker is open."""
    passed: bool = False
    """A child in immediate danger, sent although its source's flood breaker is open."""
    supplement: bool = False
    """This task's case had been sent and is ready again with a supplementary packet (on the
    case's first task of the batch only, so a supplement is counted once)."""


async def enable_durable_commit(session: AsyncSession) -> None:
    """Make this transaction's commit wait for its WAL on disk, whatever the server's default:
    offsets committed after it then never outrun the data (`SET LOCAL`: this transaction only)."""
    await session.execute(text("SET LOCAL synchronous_commit = on"))


async def record_decisions(*, session: AsyncSession, decisions: Sequence[Decision]) -> None:
    """Store decisions by flag id; a redelivered decision is ignored."""
    if not decisions:
        return
    rows = [
        {
            "flag_id": d.flag_id,
            "outcome": d.outcome.value,
            "priority": d.priority.value if d.priority else None,
            "criteria": [c.value for c in d.criteria],
            "immediate_danger": d.immediate_danger,
            "policy_version": d.policy_version,
            "decided_at": d.decided_at,
            "body": JsonText(d.model_dump_json()),
        }
        for d in sorted({d.flag_id: d for d in decisions}.values(), key=lambda d: d.flag_id)
    ]
    await session.execute(insert(_table(DecisionRecord)).on_conflict_do_nothing(), rows)


def _table(model: type[Base]) -> Table:
    """A model's table, for Core inserts of many rows (no ORM bookkeeping per row)."""
    return cast(Table, model.__table__)


def _columns(state: CaseState) -> dict[str, Any]:
    """The state as column values (shallow: `dataclasses.asdict` deep-copies, at a cost)."""
    return {name: getattr(state, name) for name in cases.STATE_FIELDS}


def _state(row: Any) -> CaseState:
    """The case rules' view of a case row (a locked row, or a `Case`)."""
    return CaseState(**{name: getattr(row, name) for name in cases.STATE_FIELDS})


async def _lock_open_cases(
    session: AsyncSession, keys: Sequence[str], subjects: Collection[Subject] = ()
) -> dict[str, Any]:
    """The open cases for `keys`, or with `subjects` every open case of those reported accounts
    (their keys among them: a case key is the subject's and a destination), locked until the
    transaction ends, in key order."""
    columns = (
        Case.case_id,
        Case.case_key,
        Case.destination,
        Case.org_id,
        Case.subject_account_id,
        *_CASE_COLUMNS,
    )
    if subjects:
        orgs, accounts = zip(*sorted(subjects), strict=True)
        pairs = (
            func.unnest(
                bindparam("orgs", list(orgs), type_=ARRAY(String)),
                bindparam("accounts", list(accounts), type_=ARRAY(String)),
            )
            .table_valued("org_id", "account_id")
            .render_derived()
        )
        query = select(*columns).join(
            pairs,
            and_(Case.org_id == pairs.c.org_id, Case.subject_account_id == pairs.c.account_id),
        )
    elif keys:
        query = select(*columns).where(Case.case_key.in_(sorted(keys)))
    else:
        return {}
    rows = await session.execute(
        query.where(Case.status.in_(OPEN_STATUSES)).order_by(Case.case_key).with_for_update(of=Case)
    )
    return {row.case_key: row for row in rows}


async def apply_tasks(
    *,
    session: AsyncSession,
    tasks: Sequence[ReferralTask],
    now: datetime,
    deadlines: Mapping[Priority, Deadlines] = DEFAULT_DEADLINES,
    escalator: Escalator | None = None,
    breaker: BreakerSettings | None = None,
    shard: int = 0,
) -> list[AppliedTask]:
    """Attach new tasks to their open cases, opening cases when needed. A task already stored
    changes nothing, so replaying a batch is a no-op. The cost per task does not depend on how
    many flags its case already holds: no packet is built here (see `cases`).

    With an `escalator`, the policy's escalations are evaluated across each case's flags (see
    `escalation`): the tasks an escalation makes join the case in the same change, and those
    for other destinations (a P0's emergency route) are applied next, in the same transaction.
    With a `breaker`, the new flags are counted by source, a source sending far past its usual
    rate has its breaker opened, and the referrals of sources whose breaker is open are held
    as reviews (see `services.domain.breaker`).
    """
    if not tasks:
        return []
    new_flags = await _store_flags(session, tasks, now)
    holding: frozenset[Source] = frozenset()
    if breaker is not None:
        # Each flag counted once, when first stored: not once per destination, nor again when
        # a batch is redelivered.
        counted = await breakers.count(session, new_flags, now, breaker, shard)
        for opened in await breakers.trip(session, counted, now, breaker):
            log.warning(
                "flood breaker opened: the source's referrals are held for review",
                extra={"source": source_label(opened.source), "reason": opened.reason},
            )
        holding = await breakers.holding(session, {flood.source_of(t) for t in tasks})
    audited: list[audit.Entry] = []
    applied = await _apply_all(session, tasks, now, deadlines, escalator, holding, audited)
    # On the audit trail in the batch's transaction, once, after every case lock is taken (the
    # audit lock is then held to the commit; taken earlier, it could wait on a case lock).
    await audit.record_many(session=session, entries=audited, now=now)
    return applied


async def _apply_all(
    session: AsyncSession,
    tasks: Sequence[ReferralTask],
    now: datetime,
    deadlines: Mapping[Priority, Deadlines],
    escalator: Escalator | None,
    holding: frozenset[Source],
    audited: list[audit.Entry],
) -> list[AppliedTask]:
    applied, follow = await _apply_round(
        session, tasks, now, deadlines, escalator, holding, audited
    )
    if follow:
        applied += await _apply_all(session, follow, now, deadlines, escalator, holding, audited)
    return applied


async def _stored(session: AsyncSession, task_ids: Sequence[UUID]) -> set[UUID]:
    return set(
        (await session.scalars(select(Task.task_id).where(Task.task_id.in_(task_ids)))).all()
    )


async def _apply_round(
    session: AsyncSession,
    tasks: Sequence[ReferralTask],
    now: datetime,
    deadlines: Mapping[Priority, Deadlines],
    escalator: Escalator | None,
    holding: frozenset[Source],
    audited: list[audit.Entry],
) -> tuple[list[AppliedTask], list[ReferralTask]]:
    """`apply_tasks` for the given tasks; returns what was applied, and the tasks escalations
    made for other cases. The system moves it made are added to `audited`."""
    unique = {t.task_id: t for t in tasks}
    if not unique:
        return [], []
    keys = sorted({t.case_key for t in unique.values()})
    applied: list[AppliedTask] = []
    follow: list[ReferralTask] = []
    # The cases an escalation to P0 may add tasks to (the emergency route) are locked now, in
    # the same sorted pass: taking them later, in the follow-up, could deadlock with a worker
    # that locked them first in key order.
    # Escalation reads every open case of the subject (a coercion flag at a hotline and a
    # self-harm flag at the police are one child's facts), and may add tasks to the cases of
    # its emergency route (the subject's too): all are locked in one sorted pass, so a
    # follow-up never waits on a lock another worker took first in key order.
    subjects = {_subject(t) for t in unique.values()} if escalator is not None else set()
    for _ in range(3):  # a case another worker opened meanwhile is locked on the next round
        every = await _lock_open_cases(session, keys, subjects)
        locked = {key: row for key, row in every.items() if key in keys}
        known = await _stored(session, list(unique))
        new = [t for t in unique.values() if t.task_id not in known and t.case_key in keys]
        if not new:
            return applied, follow
        by_case: dict[str, list[ReferralTask]] = {}
        for task in new:
            by_case.setdefault(task.case_key, []).append(task)
        ledgers = _escalate(escalator, by_case, locked, every.values(), now)
        notes: dict[str, str] = {}
        flags = {key: len(arriving) for key, arriving in by_case.items()}
        elsewhere: dict[str, list[ReferralTask]] = {}
        for key, outcome in ledgers.items():
            for made in outcome.tasks:
                if made.case_key == key:
                    by_case[key].append(made)
                else:
                    elsewhere.setdefault(key, []).append(made)
        held: set[UUID] = set()
        if holding:
            for key, arriving in by_case.items():
                by_case[key] = [
                    flood.held(t, holding, for_destination(t.destination.kind, deadlines))
                    for t in arriving
                ]
                held.update(
                    t.task_id for t, was in zip(by_case[key], arriving, strict=True) if t is not was
                )
                if held.intersection(t.task_id for t in by_case[key]):
                    notes[key] = "held for review: the flood breaker of its source is open"
                elif any(
                    flood.source_of(t) in holding and flood.goes_out_anyway(t) for t in by_case[key]
                ):
                    notes[key] = (
                        "sent at once although the flood breaker of its source is open: "
                        "a child may be in immediate danger"
                    )
        opened = await _open_cases(
            session,
            {k: v for k, v in by_case.items() if k not in locked},
            deadlines,
            now,
            ledgers,
            flags,
        )
        joined = {key: (row.case_id, _state(row)) for key, row in locked.items() if key in by_case}
        moves = {
            key: cases.join(
                state,
                by_case[key],
                _criteria(by_case[key]),
                opened=False,
                deadlines=for_destination(by_case[key][0].destination.kind, deadlines),
                now=now,
                flags=flags[key],
            )
            for key, (_, state) in joined.items()
        }
        for key, (_, state) in joined.items():
            state.fired_rules = ledgers[key].ledger
            state.policy_version = state.policy_version or by_case[key][0].policy_version
            if ledgers[key].reevaluated:
                log.info(
                    "case escalated by a policy version other than the one it was opened under",
                    extra={"case_id": str(joined[key][0])},
                )
        attached = [
            (case_id, state.packet_version - int(moves[key].new_version), by_case[key])
            for key, (case_id, state) in joined.items()
        ] + [(case_id, 0, by_case[key]) for key, (case_id, _, _) in opened.items()]
        await _store_tasks(session, attached, now)
        if joined:
            await session.execute(
                update(Case),
                [{"case_id": case_id, **_columns(state)} for case_id, state in joined.values()],
            )
        everything = {**{k: (c, s, moves[k]) for k, (c, s) in joined.items()}, **opened}
        for key, note in notes.items():
            if key in everything:
                case_id, state, moved = everything[key]
                said = f"{moved.note}; {note}" if moved.note else note
                everything[key] = (case_id, state, replace(moved, note=said))
        audited += await _log_moves(session, everything, now)
        for key, (case_id, state, moved) in everything.items():
            became_ready = moved.previous is not CaseStatus.READY and (
                state.status is CaseStatus.READY
            )
            supplement = became_ready and moved.previous in _SENT
            applied.extend(
                AppliedTask(
                    t,
                    case_id,
                    state.status,
                    became_ready,
                    moved.breaches if i == 0 else (),
                    held=t.task_id in held,
                    passed=bool(holding)
                    and flood.source_of(t) in holding
                    and flood.goes_out_anyway(t),
                    supplement=supplement and i == 0,
                )
                for i, t in enumerate(by_case[key])
            )
        follow += [made for key in everything for made in elsewhere.get(key, [])]
        keys = [key for key in by_case if key not in everything]
        if not keys:
            return applied, follow
    raise ConcurrentChange("cases kept being opened by another transaction")


def _subject(task: ReferralTask) -> Subject:
    return task.flag.platform.org_id, task.flag.subject.account_id


def _escalate(
    escalator: Escalator | None,
    by_case: Mapping[str, Sequence[ReferralTask]],
    locked: Mapping[str, Any],
    open_cases: Iterable[Any],
    now: datetime,
) -> dict[str, escalation.Escalated]:
    """Each case's ledger after the arriving tasks, and the escalations they fired. The rules
    that fired on any open police or abroad case of the subject count (one child's facts may
    reach a hotline and the police apart), and the cases of one subject in this batch are
    taken in turn, each seeing what the ones before it entered."""
    seen: dict[Subject, escalation.Ledger] = {}
    for row in open_cases:
        if row.destination != DestinationKind.IWF.value:
            known = seen.setdefault((row.org_id, row.subject_account_id), {})
            for rule_id, entry in row.fired_rules.items():
                known.setdefault(rule_id, entry)
    ledgers: dict[str, escalation.Escalated] = {}
    for key in sorted(by_case, key=lambda k: (_subject(by_case[k][0]), k)):
        arriving = by_case[key]
        row = locked.get(key)
        own = dict(row.fired_rules) if row is not None else {}
        subject = seen.setdefault(_subject(arriving[0]), {})
        done = escalation.escalate(
            escalator,
            destination=arriving[0].destination,
            case_version=row.policy_version if row is not None else arriving[0].policy_version,
            ledger={**subject, **own},
            arriving=arriving,
            now=now,
        )
        if arriving[0].destination.kind is not DestinationKind.IWF:
            for rule_id, entry in done.ledger.items():
                subject.setdefault(rule_id, entry)
        # The case keeps its own rules and what fired on it; the subject's are read each time.
        mine = {*done.fired, *(rule.rule_id for task in arriving for rule in task.rules)}
        own.update(
            (rule_id, entry)
            for rule_id, entry in done.ledger.items()
            if rule_id not in own and rule_id in mine
        )
        ledgers[key] = replace(done, ledger=own)
    return ledgers


def _criteria(tasks: Sequence[ReferralTask]) -> list[str]:
    return [c.value for t in tasks for c in t.criteria]


async def _store_flags(
    session: AsyncSession, tasks: Sequence[ReferralTask], now: datetime
) -> list[ModerationFlag]:
    """Each flag's body once (several destinations' tasks share it), in id order; the flags
    that were not stored before."""
    flags = sorted({t.flag_id: t.flag for t in tasks}.values(), key=lambda f: f.flag_id)
    rows = [
        {
            "flag_id": f.flag_id,
            "org_id": f.platform.org_id,
            "source_kind": f.source.kind.value,
            "detected_at": f.detected_at,
            "received_at": now,
            "body": JsonText(f.model_dump_json()),
        }
        for f in flags
    ]
    stored = set(
        (
            await session.scalars(
                insert(_table(Flag)).on_conflict_do_nothing().returning(Flag.flag_id), rows
            )
        ).all()
    )
    return [f for f in flags if f.flag_id in stored]


async def _open_cases(
    session: AsyncSession,
    by_case: Mapping[str, Sequence[ReferralTask]],
    deadlines: Mapping[Priority, Deadlines],
    now: datetime,
    ledgers: Mapping[str, escalation.Escalated],
    flags: Mapping[str, int],
) -> dict[str, tuple[UUID, CaseState, cases.Moved]]:
    """Open a case per key; a key whose open case another worker inserted first is left out
    (the caller locks that case and joins it on its next round)."""
    if not by_case:
        return {}
    made: dict[str, tuple[UUID, CaseState, cases.Moved]] = {}
    rows = []
    for key in sorted(by_case):
        tasks = by_case[key]
        state = cases.open_case(tasks, now)
        state.policy_version = tasks[0].policy_version
        state.fired_rules = ledgers[key].ledger
        moved = cases.join(
            state,
            tasks,
            _criteria(tasks),
            opened=True,
            deadlines=for_destination(tasks[0].destination.kind, deadlines),
            now=now,
            flags=flags[key],
        )
        first = tasks[0]
        case_id = uuid4()
        made[key] = (case_id, state, moved)
        rows.append(
            {
                "case_id": case_id,
                "case_key": key,
                "destination": first.destination.kind.value,
                "destination_key": first.destination.key,
                "force_id": first.destination.force_id,
                "mechanism": first.destination.mechanism,
                "country": first.destination.country,
                "org_id": first.flag.platform.org_id,
                "subject_account_id": first.flag.subject.account_id,
                "created_at": now,
                **_columns(state),
            }
        )
    inserted = set(
        (
            await session.scalars(
                insert(_table(Case))
                .on_conflict_do_nothing(
                    # Literal, as the index's own predicate is: with bound statuses, a prepared
                    # statement's generic plan no longer matches the partial index.
                    index_elements=[Case.case_key],
                    index_where=text(OPEN_CASE_PREDICATE),
                )
                .returning(Case.case_key),
                rows,
            )
        ).all()
    )
    return {key: value for key, value in made.items() if key in inserted}


async def _store_tasks(
    session: AsyncSession,
    attached: Sequence[tuple[UUID, int, Sequence[ReferralTask]]],
    now: datetime,
) -> None:
    """Insert the tasks; every one must be new (their cases are locked and they were checked
    under the lock), so a conflict means the checks were outrun: the batch is retried."""
    rows = [
        {
            "task_id": t.task_id,
            "case_id": case_id,
            "flag_id": t.flag_id,
            "decision": t.decision,
            "priority": t.priority.value,
            "routed_at": t.routed_at,
            "received_at": now,
            "attached_version": version,
            "body": JsonText(t.model_dump_json(exclude={"flag"})),
        }
        for case_id, version, tasks in attached
        for t in tasks
    ]
    if not rows:
        return
    stored = (
        await session.scalars(
            insert(_table(Task)).on_conflict_do_nothing().returning(Task.task_id), rows
        )
    ).all()
    if len(stored) != len(rows):
        raise ConcurrentChange("a task was stored by another transaction meanwhile")


async def _log_moves(
    session: AsyncSession,
    moved: Mapping[str, tuple[UUID, CaseState, cases.Moved]],
    now: datetime,
) -> list[audit.Entry]:
    """Each move with a note in the case history; the moves as audit entries (never a note)."""
    rows = [
        {
            "case_id": case_id,
            "at": now,
            "actor": SYSTEM_ACTOR,
            "from_status": m.previous.value if m.previous else None,
            "to_status": state.status.value,
            "note": m.note,
            "packet_version": state.packet_version,
        }
        for case_id, state, m in moved.values()
        if m.note is not None
    ]
    if not rows:
        return []
    await session.execute(insert(_table(CaseTransition)), rows)
    return [
        audit.Entry(
            actor=SYSTEM_ACTOR,
            action="case.system_move",
            outcome="ok",
            case_id=case_id,
            packet_version=state.packet_version,
            detail={"from": m.previous.value if m.previous else None, "to": state.status.value},
        )
        for case_id, state, m in moved.values()
        if m.note is not None
    ]


def _log(
    session: AsyncSession,
    case: Case,
    previous: CaseStatus | None,
    *,
    actor: str,
    now: datetime,
    note: str | None = None,
    external_reference: str | None = None,
) -> None:
    session.add(
        CaseTransition(
            case_id=case.case_id,
            at=now,
            actor=actor,
            from_status=previous.value if previous else None,
            to_status=case.status.value,
            external_reference=external_reference,
            note=note,
            packet_version=case.packet_version,
        )
    )


@dataclass(frozen=True, slots=True)
class Moved:
    """What a person's transition did."""

    case: Case
    previous: CaseStatus
    breaches: tuple[Breach, ...] = ()
    """Breaches found by the move (a stage done late; a round closed by a supplement)."""
    ready_seconds: float | None = None
    """For a submission: how long the packet was ready before a person sent it."""
    receipt: DeliveryReceipt | None = None
    """For a submission: what was sent, when, by whom, and the reference that came back."""
    supplement: bool = False
    """The version sent was not the latest: the case is ready again with a supplement."""

    def receipt_facts(self) -> dict[str, str]:
        """What the audit entry of a submission names of its receipt: what was sent, never
        the reference (that stays in the case)."""
        if self.receipt is None:
            return {}
        return {
            "receipt": str(self.receipt.receipt_id),
            "destination": self.receipt.destination_key.split(":")[0],
            "format": self.receipt.format,
            "sha256": self.receipt.sha256,
        }


def _write(case: Case, state: CaseState) -> None:
    for name in cases.STATE_FIELDS:
        setattr(case, name, getattr(state, name))


async def transition_case(
    *,
    session: AsyncSession,
    case_id: UUID,
    to: CaseStatus,
    actor: str,
    now: datetime,
    packets: CaseConfig,
    external_reference: str | None = None,
    note: str | None = None,
    packet_version: int | None = None,
    expected_updated_at: datetime | None = None,
    sent_format: Format | None = None,
) -> Moved:
    """A person moves a case. Locks the row meanwhile.

    `expected_updated_at` (the case's `updated_at` as the person read it) refuses the move when
    the case changed since, e.g. a flag joined a review. `packet_version` names the version a
    person sent, which is built now if nobody read it before; when a later one exists, the flags
    it added are not lost: the case is made ready again at once with a supplementary packet.
    A submission stores a delivery receipt: the version, `sent_format` (the rendering sent:
    `ncmec-xml` for a case to NCMEC unless given, else `json`) and the sha256 of its bytes as
    the API serves them, the time, the actor and the reference. A case to NCMEC is submitted
    with its CyberTipline report id, a number, as the reference.
    """
    case = await session.scalar(select(Case).where(Case.case_id == case_id).with_for_update())
    if case is None:
        raise NotFound(f"no case {case_id}")
    if expected_updated_at is not None and case.updated_at != expected_updated_at:
        raise Conflict(
            f"the case changed at {case.updated_at.isoformat()}, after the version you read; "
            "read it again before moving it"
        )
    if sent_format is not None and to is not CaseStatus.SUBMITTED:
        raise InvalidRequest("format is recorded only when moving to submitted")
    to_ncmec = case.mechanism == NCMEC_MECHANISM
    reference = external_reference or ""
    if to is CaseStatus.SUBMITTED and to_ncmec and reference and not is_report_id(reference):
        raise InvalidRequest(
            "a case to NCMEC is submitted with its CyberTipline report id, a number, as "
            "external_reference"
        )
    state = _state(case)
    previous, ready_since = state.status, state.ready_at
    sent: PacketRecord | None = None
    if to is CaseStatus.SUBMITTED and packet_version is not None:
        # The version sent is kept as it was read (or would have been): built before the move,
        # so a supplement still names the version sent before it.
        sent = await _materialise(
            session=session, case=case, version=packet_version, config=packets, now=now
        )
    moved = cases.move(
        state,
        to,
        now=now,
        external_reference=external_reference,
        note=note,
        packet_version=packet_version,
    )
    _write(case, state)
    _log(
        session,
        case,
        previous,
        actor=actor,
        now=now,
        note=note,
        external_reference=external_reference,
    )
    breaches = moved.breaches
    supplement = False
    if cases.needs_supplement(state):
        unsent = (
            await session.execute(
                select(Task.priority, Task.decision, Task.body["detected_at"].astext).where(
                    Task.case_id == case.case_id,
                    Task.attached_version >= (state.submitted_version or 0),
                )
            )
        ).all()
        again = cases.resend_later_flags(
            state,
            [_Facts(Priority(p), d, datetime.fromisoformat(at)) for p, d, at in unsent],
            deadlines=for_destination(DestinationKind(case.destination), packets.deadlines),
            now=now,
        )
        _write(case, state)
        _log(session, case, CaseStatus.SUBMITTED, actor=SYSTEM_ACTOR, now=now, note=again.note)
        breaches += again.breaches
        supplement = True
    receipt = None
    if sent is not None and external_reference is not None:
        fmt: Format = sent_format or ("ncmec-xml" if to_ncmec else "json")
        service = await queries.service_of(session=session, case_id=case.case_id)
        rendered = renderings.render(sent.body, fmt, service=service)
        receipt = DeliveryReceipt(
            receipt_id=uuid4(),
            case_id=case.case_id,
            packet_version=sent.version,
            format=fmt,
            sha256=rendered.sha256,
            size=len(rendered.content),
            destination_key=case.destination_key,
            sent_at=now,
            actor=actor,
            external_reference=external_reference,
        )
        session.add(receipt)
    waited = None
    if previous is CaseStatus.READY and ready_since is not None:
        waited = max((now - ready_since).total_seconds(), 0.0)
    await session.flush()
    return Moved(case, previous, breaches, waited, receipt, supplement)


@dataclass(frozen=True, slots=True)
class _Facts:
    """A stored task's clock facts (`cases.TaskFacts`)."""

    priority: Priority
    decision: Any
    detected_at: datetime


async def packet(
    *, session: AsyncSession, case_id: UUID, version: int, config: CaseConfig, now: datetime
) -> PacketRecord | None:
    """A version of a case's packet: the stored one, or built now from the flags attached
    before it (and stored, so it never changes). None when the case has no such version."""
    stored = await session.get(PacketRecord, (case_id, version))
    if stored is not None:
        return stored
    case = await session.get(Case, case_id)
    if case is None:
        return None
    return await _materialise(session=session, case=case, version=version, config=config, now=now)


async def _materialise(
    *, session: AsyncSession, case: Case, version: int, config: CaseConfig, now: datetime
) -> PacketRecord | None:
    if not 1 <= version <= case.packet_version:
        return None
    stored = await session.get(PacketRecord, (case.case_id, version))
    if stored is not None:
        return stored
    before = (Task.case_id == case.case_id, Task.attached_version < version)
    rows = (
        await session.execute(
            select(Task.body, Task.attached_version, Flag.body)
            .join(Flag, Flag.flag_id == Task.flag_id)
            .where(*before)
            .order_by(Task.attached_version.desc(), Task.received_at.desc(), Task.task_id)
            .limit(PACKET_FLAGS)
        )
    ).all()
    if not rows:
        return None
    tasks = [ReferralTask.model_validate({**body, "flag": flag}) for body, _, flag in rows]
    totals = None
    if len(rows) == PACKET_FLAGS:
        count, priority = (  # flags, not tasks: an escalation's task is not one more flag
            await session.execute(
                select(func.count(func.distinct(Task.flag_id)), func.min(Task.priority)).where(
                    *before
                )
            )
        ).one()
        criteria = await session.scalars(
            select(func.jsonb_array_elements_text(Task.body["criteria"])).where(*before).distinct()
        )
        listed = len({t.flag_id for t in tasks})
        totals = Totals(
            Priority(priority), frozenset(Criterion(c) for c in criteria), count - listed
        )
    supplement = None
    sent = case.submitted_version
    if sent is not None and sent < version and case.submitted_at and case.external_reference:
        supplement = Supplement(
            supplements_version=sent,
            external_reference=case.external_reference,
            submitted_at=case.submitted_at,
            new_flag_ids=list(
                dict.fromkeys(
                    t.flag_id for t, (_, at, _) in zip(tasks, rows, strict=True) if at >= sent
                )
            )[::-1],
        )
    built = build_packet(
        case_id=case.case_id,
        version=version,
        destination=tasks[0].destination,
        tasks=tasks[::-1],
        reporter=config.reporter_for(case.org_id),
        directory=config.directory,
        now=now,
        supplement=supplement,
        totals=totals,
        reviewed_at=await _approved_at(session, case.case_id),
        earlier_reports=await _earlier_reports(session, case),
    )
    await session.execute(
        insert(PacketRecord)
        .values(
            case_id=case.case_id,
            version=version,
            kind=built.kind,
            built_at=now,
            supplements_version=supplement.supplements_version if supplement else None,
            body=built.model_dump(mode="json"),
        )
        .on_conflict_do_nothing()
    )
    return await session.get(PacketRecord, (case.case_id, version), populate_existing=True)


EARLIER_REPORTS = 32
"""A packet names at most this many earlier reports of its subject, the latest."""


async def _earlier_reports(session: AsyncSession, case: Case) -> list[EarlierReport]:
    """For a case to the NCA or NCMEC: the reports its subject's other cases sent to either (their
    delivery receipts), oldest first, so neither takes the other's for a new referral. Empty
    for any other case."""
    if case.destination != DestinationKind.NCA.value and case.mechanism != NCMEC_MECHANISM:
        return []
    rows = (
        await session.execute(
            select(DeliveryReceipt, Case.destination)
            .join(Case, Case.case_id == DeliveryReceipt.case_id)
            .where(
                Case.org_id == case.org_id,
                Case.subject_account_id == case.subject_account_id,
                Case.case_id != case.case_id,
                # A redacted case's account is `redacted`, whoever it was: not this subject.
                Case.redacted_at.is_(None),
                text(STATUTORY_PREDICATE),  # literal, as the partial index states it
            )
            .order_by(DeliveryReceipt.sent_at.desc(), DeliveryReceipt.receipt_id)
            .limit(EARLIER_REPORTS)
        )
    ).all()
    return [
        EarlierReport(
            receiver="nca" if destination == DestinationKind.NCA.value else "ncmec_cybertipline",
            reference=receipt.external_reference,
            submitted_at=receipt.sent_at,
            case_id=receipt.case_id,
            packet_version=receipt.packet_version,
        )
        for receipt, destination in reversed(rows)
    ]


async def _approved_at(session: AsyncSession, case_id: UUID) -> datetime | None:
    """When a person approved the case's review, if one did (a referral joining a review case
    also takes it to ready, but confirms nothing)."""
    return await session.scalar(
        select(func.min(CaseTransition.at)).where(
            CaseTransition.case_id == case_id,
            CaseTransition.from_status == CaseStatus.REVIEW.value,
            CaseTransition.to_status == CaseStatus.READY.value,
            CaseTransition.actor != SYSTEM_ACTOR,
        )
    )


async def park(*, session: AsyncSession, message: ParkedMessage) -> bool:
    """Keep a message that could not be stored, for a person; parking it twice changes nothing.
    True when it was not parked before."""
    values = {c.key: getattr(message, c.key) for c in ParkedMessage.__table__.columns}
    inserted = await session.scalars(
        insert(ParkedMessage)
        .values(values)
        .on_conflict_do_nothing()
        .returning(ParkedMessage.offset)
    )
    return inserted.first() is not None


async def unresolved_parked(*, session: AsyncSession) -> int:
    """How many parked messages no one has resolved yet."""
    count = await session.scalar(
        select(func.count()).select_from(ParkedMessage).where(ParkedMessage.resolved_at.is_(None))
    )
    return count or 0
