"""From a validated flag to its decision and referral tasks. Pure: the clock is passed in."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple, TypeVar

from pydantic import BaseModel

from schemas.flag import ModerationFlag
from schemas.referral import (
    Criterion,
    Decision,
    Destination,
    Outcome,
    Priority,
    ReferralTask,
    task_id_for,
)
from services.domain import destinations
from services.domain.deadlines import DEFAULT_DEADLINES, Deadlines, first_due_at, for_destination
from services.domain.forces import ForceDirectory
from services.domain.organisations import Organisation
from services.domain.policy import Policy, Verdict, evaluate

_RULES = {"rules"}  # sets: pydantic takes them faster than frozensets
_RULES_AND_FLAG = {"rules", "flag"}
_BEFORE_POLICY_VERSION = b',"policy_version":'
# What `model_dump_json` calls, without its wrapper (a third of a task's cost) or the bytes'
# round trip through str: the same JSON, as bytes.
_DECISION_JSON = Decision.__pydantic_serializer__.to_json
_TASK_JSON = ReferralTask.__pydantic_serializer__.to_json


@dataclass(frozen=True, slots=True)
class Routing:
    decision: Decision
    tasks: tuple[ReferralTask, ...]
    verdict: Verdict
    """What the policy said: its rules' JSON (made once per verdict) is spliced into the
    decision's and each task's, instead of serialising them again for every record."""
    flag_key: bytes
    """The flag id as text: the decision's message key."""

    def decision_json(self) -> bytes:
        """`decision.model_dump_json()`, byte for byte (a test compares them)."""
        head = _DECISION_JSON(self.decision, exclude=_RULES)
        return _with_rules(head, self.verdict.rules_json)

    def task_json(self, task: ReferralTask, flag_json: bytes) -> bytes:
        """`task.model_dump_json()` with `flag_json` (the flag's own bytes, decoded and
        validated already) in place of serialising the flag again for every task."""
        head = _TASK_JSON(task, exclude=_RULES_AND_FLAG)
        head = _with_rules(head, self.verdict.active_json)
        return head[:-1] + b',"flag":' + flag_json + b"}"


M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__


def _trusted(model: type[M], values: dict[str, Any]) -> M:
    """`model.model_construct(**values)` at a fifth of its cost, for values that are already
    valid and name every field (checked): what `model_construct` sets, set at once. Routing
    builds its records this way; the consumers validate every message they read, and property
    tests validate routing's output and compare its JSON with the contracts' own."""
    if len(values) != len(model.__pydantic_fields__):
        raise TypeError(f"{model.__name__} takes every one of its fields here")
    record = model.__new__(model)
    _set(record, "__dict__", values)
    _set(record, "__pydantic_fields_set__", set(values))
    _set(record, "__pydantic_extra__", None)
    _set(record, "__pydantic_private__", None)
    return record


def _with_rules(head: bytes, rules: bytes) -> bytes:
    """`rules` put back where the contracts have them, before `policy_version`. The first
    `,"policy_version":` is that key: a quote inside a JSON string is always escaped."""
    at = head.index(_BEFORE_POLICY_VERSION)
    return b"".join((head[:at], b',"rules":', rules, head[at:]))


class _Planned(NamedTuple):
    destination: Destination
    criteria: tuple[Criterion, ...]
    priority: Priority
    kind: Literal["refer", "review"]


def _planned(
    flag: ModerationFlag,
    verdict: Verdict,
    directory: ForceDirectory,
    home_force_id: str,
    organisation: Organisation | None = None,
) -> list[_Planned]:
    """The tasks to make: where each goes, with which criteria, priority and decision.

    A refer goes to the destinations planned from the criteria that refer rules established,
    with those criteria. A destination that only review-level evidence calls for (the IWF, for
    classifier imagery beside a referred coercion) gets a review task at that evidence's
    priority: a person confirms the images before they are referred, and they are not dropped.
    """
    if verdict.priority is None or verdict.outcome is Outcome.NONE:
        return []
    emergency = verdict.priority is Priority.P0

    def where(criteria: tuple[Criterion, ...]) -> list[Destination]:
        return destinations.plan(
            flag,
            criteria,
            directory,
            home_force_id,
            emergency=emergency,
            organisation=organisation,
        )

    if verdict.outcome is Outcome.REVIEW:
        return [
            _Planned(destination, verdict.criteria, verdict.priority, "review")
            for destination in where(verdict.criteria)
        ]
    referred = verdict.referred
    planned = [
        _Planned(destination, referred, verdict.priority, "refer")
        for destination in where(referred)
    ]
    unseen = tuple(c for c in verdict.criteria if c not in referred)
    if unseen:
        priority = min(
            (
                rule.priority
                for rule in verdict.active
                if rule.outcome == "review" and not set(rule.criteria).isdisjoint(unseen)
            ),
            key=list(Priority).index,
        )
        referred_to = [task.destination for task in planned]
        planned += [
            _Planned(destination, unseen, priority, "review")
            for destination in where(verdict.criteria)
            if destination not in referred_to
        ]
    return planned


def route(
    flag: ModerationFlag,
    *,
    policy: Policy,
    directory: ForceDirectory,
    home_force_id: str,
    now: datetime,
    deadlines: Mapping[Priority, Deadlines] = DEFAULT_DEADLINES,
    organisation: Organisation | None = None,
) -> Routing:
    """The decision for `flag` (every rule that fired) and its referral tasks. `organisation`:
    the flag's entry in the directory of reporting organisations (the NCA depends on it)."""
    verdict = evaluate(policy, flag)
    planned = _planned(flag, verdict, directory, home_force_id, organisation)
    rules = list(verdict.rules)  # built once per verdict, shared by every task
    active = [rule for rule in rules if rule.mode == "active"]
    decision = _trusted(
        Decision,
        {
            "schema_version": 1,
            "flag_id": flag.flag_id,
            "outcome": verdict.outcome,
            "priority": verdict.priority,
            "criteria": list(verdict.criteria),
            "immediate_danger": verdict.immediate_danger,
            "rules": rules,
            "policy_version": policy.version,
            "destinations": [task.destination for task in planned],
            "detected_at": flag.detected_at,
            "decided_at": now,
        },
    )
    flag_id = str(flag.flag_id)
    tasks = tuple(
        _trusted(
            ReferralTask,
            {
                "schema_version": 1,
                "task_id": task_id_for(flag_id, task.destination),
                "case_key": destinations.case_key(flag, task.destination),
                "flag_id": flag.flag_id,
                "destination": task.destination,
                "criteria": list(task.criteria),
                "priority": task.priority,
                "decision": task.kind,
                "rules": active,  # review rules too, marked review: why the person should look
                "policy_version": policy.version,
                "detected_at": flag.detected_at,
                "routed_at": now,
                "due_at": first_due_at(
                    flag.detected_at,
                    task.priority,
                    task.kind,
                    for_destination(task.destination.kind, deadlines),
                ),
                "escalation": None,
                "escalated_from": [],
                "held": None,
                "flag": flag,
            },
        )
        for task in planned
    )
    return Routing(decision, tasks, verdict, flag_id.encode())
