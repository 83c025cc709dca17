"""The default reporting policy: which rule fires for which flag, and how verdicts combine."""

from typing import Any

import pytest

from schemas.flag import ModerationFlag, SignalCategory, SourceKind
from schemas.referral import Criterion, Outcome, Priority
from services.domain.policy import Verdict, default_policy, evaluate
from tests.factories import make_flag, signal
from tests.policies import policy_with

GROOMING, COERCION, IIOC, SAFETY = (
    Criterion.GROOMING,
    Criterion.COERCION,
    Criterion.IIOC,
    Criterion.SAFETY,
)
REFER, REVIEW, NONE = Outcome.REFER, Outcome.REVIEW, Outcome.NONE
P0, P1, P2, P3 = Priority.P0, Priority.P1, Priority.P2, Priority.P3


def _flag(kind: str, *signals: dict[str, Any], **overrides: Any) -> ModerationFlag:
    source = {"system": "test-source", "version": "1.0.0", "kind": kind}
    return make_flag(source=source, signals=list(signals), **overrides)


def _verdict(kind: str, *signals: dict[str, Any], **overrides: Any) -> Verdict:
    return evaluate(default_policy(), _flag(kind, *signals, **overrides))


def _hash(match: str, distance: int | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"list": "synthetic-test-list", "match": match}
    if distance is not None:
        found["distance"] = distance
    return found


UNDER_13 = {"child": {"age_band": "under_13"}}

# Every rule and escalation of the default policy, with a flag it fires for: the id, the source
# kind, the signals, flag fields, the rules that fire, and the verdict.
RULE_TABLE: list[
    tuple[str, str, list[dict[str, Any]], dict[str, Any], list[str], Outcome, Priority, list[Any]]
] = [
    (
        "immediate-danger",
        "classifier",
        [signal("other", 0.1, immediate_danger=True)],
        {},
        ["immediate-danger"],
        REFER,
        P0,
        [SAFETY],
    ),
    (
        "iioc-hash-exact",
        "hash_match",
        [signal("iioc", 1.0, hash_match=_hash("exact"))],
        {},
        ["iioc-hash-exact", "iioc-any"],
        REFER,
        P1,
        [IIOC],
    ),
    (
        "iioc-hash-perceptual",
        "hash_match",
        [signal("iioc", 0.9, hash_match=_hash("perceptual", 31))],
        {},
        ["iioc-hash-perceptual", "iioc-hash-perceptual-weak", "iioc-any"],
        REVIEW,
        P2,
        [IIOC],
    ),
    (
        "iioc-hash-perceptual-weak",
        "hash_match",
        [signal("iioc", 0.9, hash_match=_hash("perceptual", 32))],
        {},
        ["iioc-hash-perceptual-weak", "iioc-any"],
        REVIEW,
        P3,
        [IIOC],
    ),
    (
        "iioc-moderator",
        "moderator",
        [signal("iioc", 0.5)],
        {},
        ["iioc-moderator", "iioc-any"],
        REFER,
        P1,
        [IIOC],
    ),
    (
        "iioc-classifier",
        "classifier",
        [signal("iioc", 0.7)],
        {},
        ["iioc-classifier", "iioc-any"],
        REVIEW,
        P2,
        [IIOC],
    ),
    (
        "coercion-high",
        "classifier",
        [signal("coercion", 0.8)],
        {},
        ["coercion-high"],
        REFER,
        P1,
        [COERCION],
    ),
    (
        "coercion-medium",
        "classifier",
        [signal("coercion", 0.5)],
        {},
        ["coercion-medium"],
        REVIEW,
        P2,
        [COERCION],
    ),
    (
        "grooming-high",
        "classifier",
        [signal("grooming", 0.9)],
        {},
        ["grooming-high"],
        REFER,
        P2,
        [GROOMING],
    ),
    (
        "grooming-high-under-13",
        "classifier",
        [signal("grooming", 0.95)],
        UNDER_13,
        ["grooming-high", "grooming-high-under-13"],
        REFER,
        P1,
        [GROOMING],
    ),
    (
        "grooming-medium",
        "classifier",
        [signal("grooming", 0.6)],
        {},
        ["grooming-medium"],
        REVIEW,
        P3,
        [GROOMING],
    ),
    (
        "self-harm-high",
        "classifier",
        [signal("self_harm", 0.8)],
        {},
        ["self-harm-high"],
        REFER,
        P1,
        [SAFETY],
    ),
    (
        "self-harm-medium",
        "hash_match",
        [signal("self_harm", 0.5)],
        {},
        ["self-harm-medium"],
        REVIEW,
        P2,
        [SAFETY],
    ),
    (
        "safety-high",
        "classifier",
        [signal("safety", 0.8)],
        {},
        ["safety-high"],
        REFER,
        P2,
        [SAFETY],
    ),
    (
        "safety-medium",
        "classifier",
        [signal("safety", 0.5)],
        {},
        ["safety-medium"],
        REVIEW,
        P3,
        [SAFETY],
    ),
    (
        "user-report",
        "user_report",
        [signal("grooming", 0.1)],
        {},
        ["user-report"],
        REVIEW,
        P2,
        [GROOMING],
    ),
    (
        "iioc-any",
        "hash_match",
        [signal("iioc", 1.0)],  # a hash-match source, but no hash_match object
        {},
        ["iioc-any"],
        REVIEW,
        P3,
        [IIOC],
    ),
    (
        "coercion-moderator",
        "moderator",
        [signal("coercion", 0.4)],
        {},
        ["coercion-moderator"],
        REFER,
        P1,
        [COERCION],
    ),
    (
        "self-harm-moderator",
        "moderator",
        [signal("self_harm", 0.4)],
        {},
        ["self-harm-moderator"],
        REFER,
        P1,
        [SAFETY],
    ),
    (
        "safety-moderator",
        "moderator",
        [signal("safety", 0.4)],
        {},
        ["safety-moderator"],
        REFER,
        P2,
        [SAFETY],
    ),
    (
        "grooming-moderator",
        "moderator",
        [signal("grooming", 0.8)],
        {},
        ["grooming-moderator"],
        REFER,
        P2,
        [GROOMING],
    ),
    (
        "grooming-moderator-under-13",
        "moderator",
        [signal("grooming", 0.3)],
        UNDER_13,
        ["grooming-moderator", "grooming-moderator-under-13"],
        REFER,
        P1,
        [GROOMING],
    ),
    (
        "user-report-urgent",
        "user_report",
        [signal("self_harm", 0.3)],
        {},
        ["user-report", "user-report-urgent"],
        REVIEW,
        P1,
        [SAFETY],
    ),
    (
        "sextortion-with-self-harm",
        "classifier",
        [signal("coercion", 0.85), signal("self_harm", 0.9)],
        {},
        [
            "coercion-high",
            "self-harm-high",
            "sextortion-with-self-harm",
            "sextortion-with-self-harm-cues",
        ],
        REFER,
        P0,
        [COERCION, SAFETY],
    ),
    (
        "sextortion-with-self-harm-cues",
        "classifier",
        [signal("coercion", 0.6), signal("self_harm", 0.6)],
        {},
        ["coercion-medium", "self-harm-medium", "sextortion-with-self-harm-cues"],
        REFER,
        P1,
        [COERCION, SAFETY],
    ),
]


def test_rule_table_covers_every_rule_and_escalation_of_the_default_policy() -> None:
    policy = default_policy()
    ids = [r.rule_id for r in policy.rules] + [e.rule_id for e in policy.escalations]
    assert sorted(row[0] for row in RULE_TABLE) == sorted(ids)


@pytest.mark.parametrize(
    ("rule_id", "kind", "signals", "extra", "fired", "outcome", "priority", "criteria"),
    RULE_TABLE,
    ids=[row[0] for row in RULE_TABLE],
)
def test_each_default_rule_fires_for_its_flag(
    rule_id: str,
    kind: str,
    signals: list[dict[str, Any]],
    extra: dict[str, Any],
    fired: list[str],
    outcome: Outcome,
    priority: Priority,
    criteria: list[Criterion],
) -> None:
    verdict = _verdict(kind, *signals, **extra)
    assert [rule.rule_id for rule in verdict.fired] == fired
    assert all(rule.mode == "active" for rule in verdict.fired)
    assert (verdict.outcome, verdict.priority, list(verdict.criteria)) == (
        outcome,
        priority,
        criteria,
    )
    assert rule_id in fired


@pytest.mark.parametrize(
    ("category", "kind", "confidence", "outcome", "priority"),
    [
        ("grooming", "classifier", 0.9, REFER, P2),
        ("grooming", "classifier", 0.8999, REVIEW, P3),
        ("grooming", "classifier", 0.6, REVIEW, P3),
        ("grooming", "classifier", 0.59, NONE, None),
        ("grooming", "moderator", 1.0, REFER, P2),
        ("coercion", "classifier", 0.8, REFER, P1),
        ("coercion", "classifier", 0.7999, REVIEW, P2),
        ("coercion", "classifier", 0.5, REVIEW, P2),
        ("coercion", "classifier", 0.4999, NONE, None),
        ("self_harm", "classifier", 0.8, REFER, P1),
        ("self_harm", "classifier", 0.7999, REVIEW, P2),
        ("self_harm", "classifier", 0.4999, NONE, None),
        ("safety", "classifier", 0.8, REFER, P2),
        ("safety", "classifier", 0.7999, REVIEW, P3),
        ("safety", "classifier", 0.4999, NONE, None),
        ("iioc", "classifier", 0.7, REVIEW, P2),
        ("iioc", "classifier", 0.6999, REVIEW, P3),
        ("iioc", "classifier", 0.0, REVIEW, P3),
        ("iioc", "hash_match", 0.0, REVIEW, P3),
        ("coercion", "moderator", 0.0, REFER, P1),
        ("self_harm", "moderator", 0.4, REFER, P1),
        ("safety", "moderator", 0.4, REFER, P2),
        ("grooming", "moderator", 0.8, REFER, P2),
        ("other", "moderator", 1.0, NONE, None),
        ("iioc", "moderator", 0.0, REFER, P1),
        ("grooming", "user_report", 0.0, REVIEW, P2),
        ("grooming", "user_report", 1.0, REVIEW, P2),
        ("coercion", "user_report", 1.0, REVIEW, P1),
        ("other", "user_report", 1.0, NONE, None),
    ],
)
def test_confidence_thresholds(
    category: str, kind: str, confidence: float, outcome: Outcome, priority: Priority | None
) -> None:
    verdict = _verdict(kind, signal(category, confidence))
    assert (verdict.outcome, verdict.priority) == (outcome, priority)


@pytest.mark.parametrize(
    ("kind", "signals", "outcome", "priority", "criteria"),
    [
        # Corroborated by an exact match against a known list on the same flag: referred.
        (
            "user_report",
            [signal("iioc", 0.2), signal("iioc", 1.0, hash_match=_hash("exact"))],
            REFER,
            P1,
            [IIOC],
        ),
        # A user report with a perceptual match only is still a review.
        (
            "user_report",
            [signal("iioc", 0.9, hash_match=_hash("perceptual", 3))],
            REVIEW,
            P2,
            [IIOC],
        ),
        (
            "user_report",
            [signal("grooming", 0.99, immediate_danger=True)],
            REFER,
            P0,
            [GROOMING, SAFETY],
        ),
    ],
    ids=["exact-match", "perceptual-only", "immediate-danger"],
)
def test_a_user_report_is_referred_only_when_corroborated(
    kind: str,
    signals: list[dict[str, Any]],
    outcome: Outcome,
    priority: Priority,
    criteria: list[Criterion],
) -> None:
    verdict = _verdict(kind, *signals)
    assert (verdict.outcome, verdict.priority, list(verdict.criteria)) == (
        outcome,
        priority,
        criteria,
    )


@pytest.mark.parametrize(
    ("signals", "outcome", "priority", "criteria"),
    [
        (
            [signal("coercion", 0.9), signal("self_harm", 0.9), signal("grooming", 0.7)],
            REFER,
            P0,
            [COERCION, GROOMING, SAFETY],
        ),
        ([signal("coercion", 0.9), signal("self_harm", 0.6)], REFER, P0, [COERCION, SAFETY]),
        ([signal("coercion", 0.6), signal("self_harm", 0.9)], REFER, P0, [COERCION, SAFETY]),
        ([signal("coercion", 0.6), signal("safety", 0.9)], REFER, P2, [COERCION, SAFETY]),
        ([signal("safety", 0.6), signal("grooming", 0.95)], REFER, P2, [GROOMING, SAFETY]),
        ([signal("grooming", 0.7), signal("coercion", 0.6)], REVIEW, P2, [COERCION, GROOMING]),
        ([signal("other", 0.99), signal("grooming", 0.95)], REFER, P2, [GROOMING]),
        (
            [signal("coercion", 0.6), signal("self_harm", 0.6, immediate_danger=True)],
            REFER,
            P0,
            [COERCION, SAFETY],
        ),
    ],
    ids=[
        "sextortion-self-harm-grooming",
        "sextortion-self-harm-cue",
        "coercion-cue-self-harm",
        "coercion-cue-other-safety-no-escalation",
        "refer-beats-review",
        "reviews-only",
        "other-ignored",
        "danger-beats-escalation",
    ],
)
def test_signals_of_one_flag_make_one_verdict_and_escalations_compose(
    signals: list[dict[str, Any]],
    outcome: Outcome,
    priority: Priority,
    criteria: list[Criterion],
) -> None:
    verdict = _verdict("classifier", *signals)
    assert (verdict.outcome, verdict.priority, list(verdict.criteria)) == (
        outcome,
        priority,
        criteria,
    )


def test_an_escalation_lists_the_rules_it_escalated() -> None:
    verdict = _verdict("classifier", signal("coercion", 0.9), signal("self_harm", 0.6))
    (escalation,) = [r for r in verdict.fired if r.rule_id == "sextortion-with-self-harm-cues"]
    assert escalation.matched == ("fired=coercion-high", "fired=self-harm-medium")
    assert (escalation.outcome, escalation.priority, escalation.criteria) == (
        "refer",
        P1,
        (COERCION, SAFETY),
    )


@pytest.mark.parametrize("kind", list(SourceKind))
@pytest.mark.parametrize("category", list(SignalCategory))
def test_immediate_danger_refers_at_p0_whatever_the_source_and_category(
    kind: SourceKind, category: SignalCategory
) -> None:
    verdict = _verdict(kind.value, signal(category.value, 0.01, immediate_danger=True))
    assert (verdict.outcome, verdict.priority, verdict.immediate_danger) == (REFER, P0, True)
    assert "immediate-danger" in [rule.rule_id for rule in verdict.fired]
    assert SAFETY in verdict.criteria


def test_immediate_danger_on_one_signal_makes_the_whole_flag_p0() -> None:
    verdict = _verdict(
        "classifier", signal("grooming", 0.95), signal("safety", 0.2, immediate_danger=True)
    )
    assert (verdict.outcome, verdict.priority, list(verdict.criteria)) == (
        REFER,
        P0,
        [GROOMING, SAFETY],
    )


@pytest.mark.parametrize("kind", list(SourceKind))
def test_other_category_alone_is_not_reported(kind: SourceKind) -> None:
    verdict = _verdict(kind.value, signal("other", 1.0))
    assert verdict == Verdict(NONE, None, (), False, ())


SHADOW = {
    "id": "shadow-test",
    "mode": "shadow",
    "when": {"category": ["grooming"]},
    "then": {"outcome": "refer", "priority": "P0", "criteria": ["iioc"]},
}


def test_shadow_rule_is_listed_but_does_not_change_the_verdict() -> None:
    flag = _flag("classifier", signal("grooming", 0.7))
    verdict = evaluate(policy_with(SHADOW), flag)
    assert [(rule.rule_id, rule.mode) for rule in verdict.fired] == [
        ("grooming-medium", "active"),
        ("shadow-test", "shadow"),
    ]
    assert [rule.rule_id for rule in verdict.active] == ["grooming-medium"]
    baseline = evaluate(default_policy(), flag)
    assert (verdict.outcome, verdict.priority, verdict.criteria) == (
        baseline.outcome,
        baseline.priority,
        baseline.criteria,
    )


def test_shadow_rule_alone_gives_no_report() -> None:
    verdict = evaluate(policy_with(SHADOW), _flag("classifier", signal("grooming", 0.1)))
    assert [rule.rule_id for rule in verdict.fired] == ["shadow-test"]
    assert (verdict.outcome, verdict.priority, verdict.criteria) == (NONE, None, ())


def test_shadow_escalation_sees_shadow_rules_but_changes_nothing() -> None:
    escalation = {
        "id": "shadow-escalation",
        "mode": "shadow",
        "requires": [["shadow-test"], ["grooming-medium"]],
        "then": {"outcome": "refer", "priority": "P0"},
    }
    flag = _flag("classifier", signal("grooming", 0.7))
    verdict = evaluate(policy_with(SHADOW, escalations=[escalation]), flag)
    assert [(rule.rule_id, rule.mode) for rule in verdict.fired][-1] == (
        "shadow-escalation",
        "shadow",
    )
    assert (verdict.outcome, verdict.priority) == (REVIEW, P3)


@pytest.mark.parametrize(
    ("when", "flag_fields", "fires"),
    [
        ({"category": ["grooming"], "label": ["test_grooming"]}, {}, True),
        ({"category": ["grooming"], "label": ["other_label"]}, {}, False),
        ({"category": ["grooming"], "shared_externally": True}, {}, False),
        (
            {"category": ["grooming"], "child_age_band": ["13_15"]},
            {"child": {"age_band": "13_15"}},
            True,
        ),
        ({"category": ["grooming"], "child_age_band": ["13_15"]}, {}, False),
        (
            {"category": ["grooming"], "platform_country": ["US"]},
            {"platform": {"org_id": "org-test", "service": "chat", "country": "US"}},
            True,
        ),
        ({"category": ["grooming"], "platform_country": ["US"]}, {}, False),
        ({"category": ["grooming"], "hash_list": ["synthetic-test-list"]}, {}, False),
    ],
)
def test_each_condition_constrains(
    when: dict[str, Any], flag_fields: dict[str, Any], fires: bool
) -> None:
    rule = {
        "id": "condition-test",
        "mode": "active",
        "when": when,
        "then": {"outcome": "review", "priority": "P3"},
    }
    flag = _flag("classifier", signal("grooming", 0.1), **flag_fields)
    fired = [r.rule_id for r in evaluate(policy_with(rule), flag).fired]
    assert ("condition-test" in fired) is fires


@pytest.mark.parametrize(
    ("hash_match", "fires"),
    [
        ({"list": "list-a", "match": "perceptual", "distance": 10}, True),
        ({"list": "list-a", "match": "perceptual", "distance": 11}, False),
        ({"list": "list-a", "match": "perceptual"}, False),
        ({"list": "list-b", "match": "perceptual", "distance": 1}, False),
        ({"list": "list-a", "match": "exact", "distance": 0}, False),
    ],
    ids=["within", "beyond", "no-distance", "other-list", "exact"],
)
def test_hash_list_and_distance_conditions(hash_match: dict[str, Any], fires: bool) -> None:
    rule = {
        "id": "distance-test",
        "mode": "active",
        "when": {"hash_match": "perceptual", "hash_list": ["list-a"], "max_distance": 10},
        "then": {"outcome": "review", "priority": "P3", "criteria": ["iioc"]},
    }
    flag = _flag("hash_match", signal("iioc", 0.9, hash_match=hash_match))
    fired = {r.rule_id: r for r in evaluate(policy_with(rule), flag).fired}
    assert ("distance-test" in fired) is fires
    if fires:
        assert fired["distance-test"].matched == (  # no category condition: none listed
            "signals[0].hash_match.list=list-a",
            "signals[0].hash_match.match=perceptual",
            "signals[0].hash_match.distance<=10",
        )


@pytest.mark.parametrize(
    ("kind", "signals", "rule_id", "matched"),
    [
        (
            "classifier",
            [signal("grooming", 0.95)],
            "grooming-high",
            (
                "source.kind=classifier",
                "signals[0].category=grooming",
                "signals[0].confidence>=0.9",
            ),
        ),
        (
            "classifier",
            [signal("other", 0.1), signal("grooming", 0.7), signal("grooming", 0.8)],
            "grooming-medium",
            (
                "source.kind=classifier",
                "signals[1].category=grooming",
                "signals[1].confidence>=0.6",
                "signals[1].confidence<0.9",
                "signals[2].category=grooming",
                "signals[2].confidence>=0.6",
                "signals[2].confidence<0.9",
            ),
        ),
        (
            "user_report",
            [signal("other", 0.1, immediate_danger=True)],
            "immediate-danger",
            ("signals[0].immediate_danger=true",),  # the rule has no category condition
        ),
        (
            "hash_match",
            [signal("iioc", 1.0, hash_match=_hash("exact"))],
            "iioc-hash-exact",
            ("signals[0].category=iioc", "signals[0].hash_match.match=exact"),
        ),
        (
            "user_report",
            [signal("coercion", 0.2)],
            "user-report",
            ("source.kind=user_report", "signals[0].category=coercion"),
        ),
        (
            "classifier",
            [signal("grooming", 0.95)],
            "grooming-high-under-13",
            (
                "source.kind=classifier",
                "child.age_band=under_13",
                "signals[0].category=grooming",
                "signals[0].confidence>=0.9",
            ),
        ),
    ],
)
def test_fired_rule_names_the_conditions_that_held(
    kind: str, signals: list[dict[str, Any]], rule_id: str, matched: tuple[str, ...]
) -> None:
    verdict = _verdict(kind, *signals, **UNDER_13)
    fired = {rule.rule_id: rule for rule in verdict.fired}
    assert fired[rule_id].matched == matched


def test_matched_conditions_are_bounded_for_a_flag_with_many_signals() -> None:
    verdict = _verdict("classifier", *[signal("grooming", 0.7)] * 32)
    (fired,) = verdict.fired
    assert len(fired.matched) == 16
    assert fired.contract().matched == list(fired.matched)


def test_default_policy_is_versioned_and_its_rule_ids_are_unique() -> None:
    policy = default_policy()
    assert policy.version
    ids = [r.rule_id for r in policy.rules] + [e.rule_id for e in policy.escalations]
    assert len(ids) == len(set(ids))


def test_a_refer_carries_only_the_criteria_refer_rules_established() -> None:
    verdict = _verdict("classifier", signal("iioc", 0.8), signal("coercion", 0.9))
    assert [(r.rule_id, r.outcome) for r in verdict.fired] == [
        ("iioc-classifier", "review"),
        ("iioc-any", "review"),
        ("coercion-high", "refer"),
    ]
    assert (verdict.outcome, verdict.priority) == (REFER, P1)
    assert verdict.criteria == (COERCION, IIOC)  # the decision lists all it saw
    assert verdict.referred == (COERCION,)  # classifier imagery is never referred unseen


@pytest.mark.parametrize("kind", ["classifier", "user_report"])
def test_danger_refers_the_child_but_never_establishes_imagery_unseen(kind: str) -> None:
    """A child in danger is P0 for the police (safety); an image scored 0.1 by a classifier is
    still for a person to look at, not a referral to the IWF."""
    verdict = _verdict(kind, signal("iioc", 0.1, immediate_danger=True))
    assert (verdict.outcome, verdict.priority) == (REFER, P0)
    assert verdict.referred == (Criterion.SAFETY,)
    assert Criterion.IIOC in verdict.criteria, "the decision still records what was seen"


def test_a_review_refers_nothing() -> None:
    verdict = _verdict("classifier", signal("iioc", 0.8))
    assert (verdict.outcome, verdict.criteria, verdict.referred) == (REVIEW, (IIOC,), ())


@pytest.mark.parametrize(
    ("kind", "coercion", "self_harm", "priority"),
    [
        ("classifier", 0.9, 0.9, P0),
        ("classifier", 0.9, 0.6, P0),
        ("classifier", 0.6, 0.9, P0),
        ("classifier", 0.6, 0.6, P1),
        ("hash_match", 0.9, 0.6, P0),
        # A moderator's findings are clear whatever confidence they gave (one source per flag:
        # a moderator flag has no classifier scores beside them).
        ("moderator", 0.3, 0.3, P0),
    ],
    ids=[
        "high-high",
        "high-medium",
        "medium-high",
        "medium-medium",
        "hash-source-high-medium",
        "moderator-moderator",
    ],
)
def test_every_pairing_of_sextortion_and_self_harm_cues_escalates(
    kind: str, coercion: float, self_harm: float, priority: Priority
) -> None:
    """Clear coercion or self-harm alone refers at P1, a medium cue alone is a review at P2:
    together they rise, to P0 when either is clear."""
    alone = [
        _verdict(kind, signal("coercion", coercion)),
        _verdict(kind, signal("self_harm", self_harm)),
    ]
    verdict = _verdict(kind, signal("coercion", coercion), signal("self_harm", self_harm))
    assert (verdict.outcome, verdict.priority, verdict.referred) == (
        REFER,
        priority,
        (COERCION, SAFETY),
    )
    assert all(
        list(Priority).index(priority) < list(Priority).index(v.priority)
        for v in alone
        if v.priority
    )
    assert any(r.rule_id.startswith("sextortion-with-self-harm") for r in verdict.fired)
