"""`route`: one decision per flag and one deterministic task per destination."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.flag import ModerationFlag
from schemas.referral import Criterion, DestinationKind, Outcome, Priority
from services.domain.deadlines import DEFAULT_DEADLINES
from services.domain.forces import uk_forces
from services.domain.policy import Policy, default_policy
from services.router.routing import Routing, route
from tests.factories import DETECTED_AT, image, make_flag, signal
from tests.policies import policy_with

HOME = "thames-valley"
NOW = datetime(2026, 11, 26, 9, 0, 5, tzinfo=UTC)
EXTERNAL_EXACT = {"list": "synthetic-test-list", "match": "exact", "external": True}


def _route(flag: ModerationFlag, *, now: datetime = NOW, policy: Policy | None = None) -> Routing:
    return route(
        flag,
        policy=policy or default_policy(),
        directory=uk_forces(),
        home_force_id=HOME,
        now=now,
    )


def _flag(*signals: dict[str, Any], kind: str = "classifier", **overrides: Any) -> ModerationFlag:
    source = {"system": "test-source", "version": "1.0.0", "kind": kind}
    return make_flag(source=source, signals=list(signals), **overrides)


def _iioc_shared() -> ModerationFlag:
    return _flag(
        signal("iioc", 1.0, hash_match=EXTERNAL_EXACT),
        kind="hash_match",
        content=[image(public=True)],
    )


def test_no_report_flag_gives_a_none_decision_and_no_tasks() -> None:
    flag = _flag(signal("other", 0.99))
    routing = _route(flag)
    assert routing.tasks == ()
    decision = routing.decision
    assert (decision.flag_id, decision.outcome, decision.priority) == (
        flag.flag_id,
        Outcome.NONE,
        None,
    )
    assert (decision.criteria, decision.rules, decision.destinations) == ([], [], [])
    assert (decision.detected_at, decision.decided_at) == (flag.detected_at, NOW)
    assert decision.policy_version == default_policy().version


def test_refer_gives_one_task_per_destination() -> None:
    flag = _iioc_shared()
    routing = _route(flag)
    decision = routing.decision
    assert decision.outcome is Outcome.REFER
    assert [d.kind for d in decision.destinations] == [DestinationKind.POLICE, DestinationKind.IWF]
    assert [task.destination for task in routing.tasks] == decision.destinations
    assert len({task.task_id for task in routing.tasks}) == 2
    for task in routing.tasks:
        assert (task.flag, task.flag_id, task.detected_at) == (flag, flag.flag_id, DETECTED_AT)
        assert (task.decision, task.priority, task.criteria) == (
            "refer",
            Priority.P1,
            [Criterion.IIOC],
        )


def test_routing_the_same_flag_twice_gives_the_same_tasks_and_decision() -> None:
    flag = _iioc_shared()
    first = _route(flag, now=NOW)
    again = _route(flag, now=NOW + timedelta(hours=3))
    assert [t.task_id for t in first.tasks] == [t.task_id for t in again.tasks]
    assert [t.model_dump(exclude={"routed_at"}) for t in first.tasks] == [
        t.model_dump(exclude={"routed_at"}) for t in again.tasks
    ]
    assert first.decision.model_dump(exclude={"decided_at"}) == again.decision.model_dump(
        exclude={"decided_at"}
    )
    assert again.decision.decided_at == NOW + timedelta(hours=3)


def test_case_key_names_organisation_subject_and_destination() -> None:
    subject = {"account_id": "acct-test-case", "ips": []}
    flag = _flag(signal("grooming", 0.95), subject=subject)
    (task,) = _route(flag).tasks
    assert task.case_key == f"org-test|acct-test-case|police:{HOME}"


def test_flags_about_one_subject_share_a_case_key_and_other_subjects_do_not() -> None:
    same = {"account_id": "acct-test-same", "ips": []}
    first = _route(_flag(signal("grooming", 0.95), subject=same)).tasks[0]
    second = _route(_flag(signal("coercion", 0.9), subject=same)).tasks[0]
    other = _route(_flag(signal("grooming", 0.95))).tasks[0]
    elsewhere = _route(
        _flag(
            signal("grooming", 0.95),
            subject=same,
            platform={"org_id": "org-test-2", "service": "chat", "country": "GB"},
        )
    ).tasks[0]
    assert first.task_id != second.task_id
    assert first.case_key == second.case_key
    assert other.case_key != first.case_key
    assert elsewhere.case_key != first.case_key


@pytest.mark.parametrize(
    ("sig", "kind", "priority", "delay"),
    [
        (
            signal("safety", 0.1, immediate_danger=True),
            "classifier",
            Priority.P0,
            timedelta(seconds=60),
        ),
        (signal("coercion", 0.9), "classifier", Priority.P1, timedelta(minutes=5)),
        (signal("grooming", 0.95), "classifier", Priority.P2, timedelta(minutes=15)),
    ],
)
def test_refer_task_is_due_when_the_packet_must_be_ready(
    sig: dict[str, Any], kind: str, priority: Priority, delay: timedelta
) -> None:
    (task,) = _route(_flag(sig, kind=kind)).tasks
    assert (task.decision, task.priority) == ("refer", priority)
    assert delay == DEFAULT_DEADLINES[priority].ready
    assert task.due_at == task.detected_at + delay == DETECTED_AT + delay


@pytest.mark.parametrize(
    ("sig", "kind", "priority"),
    [
        (signal("coercion", 0.6), "classifier", Priority.P2),
        (signal("grooming", 0.7), "classifier", Priority.P3),
        (signal("grooming", 0.2), "user_report", Priority.P2),
    ],
)
def test_review_task_is_due_when_the_review_must_be_done(
    sig: dict[str, Any], kind: str, priority: Priority
) -> None:
    (task,) = _route(_flag(sig, kind=kind)).tasks
    assert (task.decision, task.priority) == ("review", priority)
    assert DEFAULT_DEADLINES[priority].review == timedelta(hours=4)
    assert task.due_at == DETECTED_AT + timedelta(hours=4)


def test_tasks_list_only_active_rules_while_the_decision_lists_shadow_ones_too() -> None:
    shadow = {
        "id": "shadow-test",
        "mode": "shadow",
        "when": {"category": ["grooming"]},
        "then": {"outcome": "refer", "priority": "P0"},
    }
    policy = policy_with(shadow, version="test.shadow")
    routing = _route(_flag(signal("grooming", 0.95)), policy=policy)
    assert [rule.rule_id for rule in routing.decision.rules] == ["grooming-high", "shadow-test"]
    (task,) = routing.tasks
    assert [rule.rule_id for rule in task.rules] == ["grooming-high"]
    assert (task.priority, task.policy_version) == (Priority.P2, "test.shadow")


FLAGS: dict[str, Callable[[], ModerationFlag]] = {
    "grooming": lambda: _flag(signal("grooming", 0.95)),
    "grooming-public-image": lambda: _flag(
        signal("grooming", 0.95, shared_externally=True), content=[image(public=True)]
    ),
    "iioc-shared": _iioc_shared,
    "iioc-private": lambda: _flag(signal("iioc", 0.5), kind="moderator", content=[image()]),
    "iioc-review": lambda: _flag(signal("iioc", 0.8), content=[image(public=True)]),
    "danger-and-iioc": lambda: _flag(
        signal("safety", 0.3, immediate_danger=True),
        signal("iioc", 1.0, hash_match=EXTERNAL_EXACT),
        kind="hash_match",
    ),
    "abroad": lambda: _flag(
        signal("iioc", 1.0, hash_match=EXTERNAL_EXACT),
        kind="hash_match",
        platform={"org_id": "org-test", "service": "chat", "country": "US"},
    ),
}


@pytest.mark.parametrize("name", sorted(FLAGS))
def test_every_task_has_criteria_and_iwf_only_with_iioc(name: str) -> None:
    routing = _route(FLAGS[name]())
    assert routing.tasks
    for task in routing.tasks:
        assert task.criteria
        assert task.rules
        if task.destination.kind is DestinationKind.IWF:
            assert Criterion.IIOC in task.criteria


@pytest.mark.parametrize(
    ("name", "kinds"),
    [
        ("grooming", ["police"]),
        ("grooming-public-image", ["police"]),
        ("iioc-shared", ["police", "iwf"]),
        ("iioc-private", ["police"]),
        ("iioc-review", ["police", "iwf"]),
        ("danger-and-iioc", ["police", "iwf"]),
        ("abroad", ["intl"]),
    ],
)
def test_task_destinations(name: str, kinds: list[str]) -> None:
    assert [task.destination.kind.value for task in _route(FLAGS[name]()).tasks] == kinds


def test_a_child_in_danger_abroad_goes_to_the_local_police_at_p0() -> None:
    """A child's safety is for the police: NCMEC's CyberTipline takes exploitation, not that."""
    flag = _flag(
        signal("safety", 0.2, immediate_danger=True),
        platform={"org_id": "org-test", "service": "chat", "country": "US"},
    )
    routing = _route(flag)
    assert [(t.destination.mechanism, t.priority) for t in routing.tasks] == [
        ("local_police", Priority.P0),
    ]


def test_sextortion_in_danger_abroad_goes_to_the_local_police_and_the_mechanism_at_p0() -> None:
    flag = _flag(
        signal("coercion", 0.9, immediate_danger=True),
        platform={"org_id": "org-test", "service": "chat", "country": "US"},
    )
    routing = _route(flag)
    assert [(t.destination.mechanism, t.priority) for t in routing.tasks] == [
        ("local_police", Priority.P0),
        ("ncmec_cybertipline", Priority.P0),
    ]


@pytest.mark.parametrize(
    ("sig", "mechanisms"),
    [
        (signal("grooming", 0.95), ["local_police"]),
        (signal("coercion", 0.9), ["local_police"]),
        (signal("self_harm", 0.9), ["local_police"]),
    ],
)
def test_an_image_hotline_never_gets_what_it_does_not_take(
    sig: dict[str, Any], mechanisms: list[str]
) -> None:
    """New Zealand's DIA takes images alone: grooming, sextortion and self-harm go to the police."""
    flag = _flag(sig, platform={"org_id": "org-test", "service": "chat", "country": "NZ"})
    assert [t.destination.mechanism for t in _route(flag).tasks] == mechanisms


def test_an_escalation_to_p0_abroad_also_goes_to_the_local_police() -> None:
    flag = _flag(
        signal("coercion", 0.9),
        signal("self_harm", 0.9),
        platform={"org_id": "org-test", "service": "chat", "country": "CA"},
    )
    routing = _route(flag)
    assert routing.decision.immediate_danger is False
    assert [d.mechanism for d in routing.decision.destinations] == ["local_police", "cybertip_ca"]
    assert {task.priority for task in routing.tasks} == {Priority.P0}


def test_imagery_that_earned_a_review_is_not_referred_beside_a_referred_coercion() -> None:
    flag = _flag(
        signal("iioc", 0.8, shared_externally=True),
        signal("coercion", 0.9),
        content=[image(public=True)],
    )
    routing = _route(flag)
    decision = routing.decision
    assert (decision.outcome, decision.priority) == (Outcome.REFER, Priority.P1)
    assert decision.criteria == [Criterion.COERCION, Criterion.IIOC]
    assert [(r.rule_id, r.outcome) for r in decision.rules] == [
        ("iioc-classifier", "review"),
        ("iioc-any", "review"),
        ("coercion-high", "refer"),
    ]
    assert [(t.destination.key, t.decision, t.priority, t.criteria) for t in routing.tasks] == [
        # The police get the coercion referred; the packet lists the imagery rule as a review.
        ("police:thames-valley", "refer", Priority.P1, [Criterion.COERCION]),
        # The IWF gets nothing until a person confirms the images: a review at their priority.
        ("iwf", "review", Priority.P2, [Criterion.IIOC]),
    ]
    assert routing.tasks[1].due_at == DETECTED_AT + DEFAULT_DEADLINES[Priority.P2].review
