"""Escalation across the flags of a case. Pure: no I/O, the clock is passed in.

The router evaluates the policy's escalations over the signals of one flag. Upstream models
publish their own flags, so a coercion flag and a self-harm flag about the same child arrive
apart; the same escalations are evaluated here over every flag of an open case, so the same facts
give the same priority whether they arrive on one flag or on several.

- A case keeps a ledger of the active rules that fired on its flags (`Ledger`: rule id → the
  first flag it fired on, and the criteria it established). Its cost does not grow with the
  case: there are as many entries as the policy has rules.
- A police, abroad or NCA case escalates, never an IWF case: that case is about images, and a
  person looks at each one.
- A case is escalated by the policy the worker runs. A case opened under another version (a
  policy changed while it was open, a rolling deploy) is re-evaluated by it: its ledger holds
  the rules of every version by id (a policy keeps a rule's id while its meaning holds, and
  gives a changed rule a new id), and the ledger entry of an escalation names the version that
  fired it (`Escalated.reevaluated` says when it was not the case's own). Missing an
  escalation leaves a child at risk; firing one a person then reviews does not.
- An escalation that fires makes one task per destination for the flag that completed it: the
  case's own (its clocks then start from that flag's detection, at the escalation's priority),
  and for a P0 the emergency route a P0 flag gets: the police where the child is, first, and
  abroad the country's police.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from schemas.referral import (
    Criterion,
    Destination,
    DestinationKind,
    FiredRule,
    Priority,
    ReferralTask,
    task_id_for,
)
from services.domain import destinations
from services.domain.deadlines import (
    DEFAULT_DEADLINES,
    Deadlines,
    first_due_at,
    for_destination,
)
from services.domain.forces import ForceDirectory
from services.domain.policy import MAX_MATCHED, Escalation, Policy

Ledger = dict[str, dict[str, Any]]
"""Rule id → {"flag_id": the first flag it fired on, "criteria": what it established}; an
escalation's entry also has "from": the flags whose rules it required. Stored as JSON."""


@dataclass(frozen=True, slots=True)
class Escalator:
    """What escalating cases needs: the policy the worker runs, and where P0s go."""

    policy: Policy
    directory: ForceDirectory
    home_force_id: str
    deadlines: Mapping[Priority, Deadlines] = field(default_factory=lambda: DEFAULT_DEADLINES)


@dataclass(frozen=True, slots=True)
class Escalated:
    """What the flags arriving on one case did: its ledger after them, the escalations that
    fired (oldest first) and the tasks they make; `reevaluated` when one fired by a policy
    version other than the one the case was opened under."""

    ledger: Ledger
    tasks: tuple[ReferralTask, ...] = ()
    fired: tuple[str, ...] = ()
    reevaluated: bool = False


def escalate(
    escalator: Escalator | None,
    *,
    destination: Destination,
    case_version: str | None,
    ledger: Mapping[str, Mapping[str, Any]],
    arriving: Sequence[ReferralTask],
    now: datetime,
) -> Escalated:
    """Enter the arriving tasks' rules in the case's ledger, in order, and fire each escalation
    of the policy whose every line a rule of the ledger meets, once per case."""
    entered: Ledger = {rule_id: dict(entry) for rule_id, entry in ledger.items()}
    made: list[ReferralTask] = []
    fired: list[str] = []
    for task in arriving:
        for rule in task.rules:
            if rule.mode == "active":
                entered.setdefault(
                    rule.rule_id,
                    {"flag_id": str(task.flag_id), "criteria": [c.value for c in rule.criteria]},
                )
        if escalator is None or destination.kind is DestinationKind.IWF:
            continue
        policy = escalator.policy
        for escalation in policy.escalations:
            if escalation.mode != "active" or escalation.rule_id in entered:
                continue
            used = _required(escalation, entered)
            if used is None:
                continue
            sources = list(dict.fromkeys(entered[rule_id]["flag_id"] for rule_id in used))
            criteria = sorted(
                {c.value for c in escalation.criteria}.union(
                    *(entered[rule_id]["criteria"] for rule_id in used)
                )
            )
            entered[escalation.rule_id] = {
                "flag_id": str(task.flag_id),
                "criteria": criteria,
                "from": sources,
                "policy_version": policy.version,
            }
            fired.append(escalation.rule_id)
            made += _tasks(escalator, escalation, task, destination, used, sources, criteria, now)
    reevaluated = bool(fired) and escalator is not None and case_version != escalator.policy.version
    return Escalated(entered, tuple(made), tuple(fired), reevaluated)


def _required(escalation: Escalation, ledger: Ledger) -> list[str] | None:
    """The rules of the ledger that meet each line of the escalation, or None if a line has
    none (the escalation does not fire)."""
    used: list[str] = []
    for line in escalation.requires:
        hits = [rule_id for rule_id in line if rule_id in ledger]
        if not hits:
            return None
        used.extend(hits)
    return list(dict.fromkeys(used))


def _tasks(
    escalator: Escalator,
    escalation: Escalation,
    completing: ReferralTask,
    destination: Destination,
    used: list[str],
    sources: list[str],
    criteria: list[str],
    now: datetime,
) -> list[ReferralTask]:
    """The escalation's tasks for the flag that completed it: the case's destination, and for a
    P0 the emergency route first (never the IWF)."""
    flag = completing.flag
    where = [destination]
    if escalation.priority is Priority.P0:
        emergency = destinations.plan(
            flag,
            tuple(Criterion(c) for c in criteria),
            escalator.directory,
            escalator.home_force_id,
            emergency=True,
        )
        where = [
            *(d for d in emergency if d.kind is not DestinationKind.IWF and d != destination),
            destination,
        ]
    rule = FiredRule(
        rule_id=escalation.rule_id,
        mode="active",
        outcome=escalation.outcome,
        priority=escalation.priority,
        criteria=[Criterion(c) for c in criteria],
        matched=[f"fired={rule_id}" for rule_id in used][:MAX_MATCHED],
    )
    return [
        ReferralTask(
            task_id=task_id_for(flag.flag_id, to, escalation.rule_id),
            case_key=destinations.case_key(flag, to),
            flag_id=flag.flag_id,
            destination=to,
            criteria=rule.criteria,
            priority=escalation.priority,
            decision=escalation.outcome,
            rules=[rule],
            policy_version=completing.policy_version,
            detected_at=flag.detected_at,
            routed_at=now,
            due_at=first_due_at(
                flag.detected_at,
                escalation.priority,
                escalation.outcome,
                for_destination(to.kind, escalator.deadlines),
            ),
            escalation=escalation.rule_id,
            escalated_from=[UUID(source) for source in sources[:16]],
            flag=flag,
        )
        for to in where
    ]
