"""From a validated flag to its decision and referral tasks. Pure: the clock is passed in."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from schemas.flag import ModerationFlag
from schemas.referral import (
    Decision,
    Destination,
    Outcome,
    Priority,
    ReferralTask,
    task_id_for,
)
from services.referral.sla import DEFAULT_DEADLINES, Deadlines, first_due_at
from services.router import destinations
from services.router.forces import ForceDirectory
from services.router.policy import Policy, evaluate


@dataclass(frozen=True, slots=True)
class Routing:
    decision: Decision
    tasks: tuple[ReferralTask, ...]


def case_key(flag: ModerationFlag, destination: Destination) -> str:
    """Subject × destination: the organisation, the reported account and where it is sent."""
    return f"{flag.platform.org_id}|{flag.subject.account_id}|{destination.key}"


def route(
    flag: ModerationFlag,
    *,
    policy: Policy,
    directory: ForceDirectory,
    home_force_id: str,
    now: datetime,
    deadlines: Mapping[Priority, Deadlines] = DEFAULT_DEADLINES,
) -> Routing:
    verdict = evaluate(policy, flag)
    planned = (
        destinations.plan(
            flag,
            verdict.criteria,
            directory,
            home_force_id,
            emergency=verdict.priority is Priority.P0,
        )
        if verdict.outcome is not Outcome.NONE
        else []
    )
    rules = [fired.contract() for fired in verdict.fired]  # built once, shared by every task
    active = [rule for rule in rules if rule.mode == "active"]
    decision = Decision(
        flag_id=flag.flag_id,
        outcome=verdict.outcome,
        priority=verdict.priority,
        criteria=list(verdict.criteria),
        immediate_danger=verdict.immediate_danger,
        rules=rules,
        policy_version=policy.version,
        destinations=planned,
        detected_at=flag.detected_at,
        decided_at=now,
    )
    if verdict.priority is None or verdict.outcome is Outcome.NONE:
        return Routing(decision, ())
    kind: Literal["refer", "review"] = "refer" if verdict.outcome is Outcome.REFER else "review"
    tasks = tuple(
        ReferralTask(
            task_id=task_id_for(flag.flag_id, destination),
            case_key=case_key(flag, destination),
            flag_id=flag.flag_id,
            destination=destination,
            criteria=list(verdict.criteria),
            priority=verdict.priority,
            decision=kind,
            rules=active,
            policy_version=policy.version,
            detected_at=flag.detected_at,
            routed_at=now,
            due_at=first_due_at(flag.detected_at, verdict.priority, kind, deadlines),
            flag=flag,
        )
        for destination in planned
    )
    return Routing(decision, tasks)
