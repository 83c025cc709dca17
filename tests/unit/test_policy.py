"""The default reporting policy: which rule fires for which flag, and how verdicts combine."""

from typing import Any

import pytest

from schemas.flag import ModerationFlag, SignalCategory, SourceKind
from schemas.referral import Criterion, Outcome, Priority
from services.router.policy import DEFAULT_RULES, Policy, Rule, Verdict, default_policy, evaluate
from tests.factories import make_flag, signal

GROOMING, COERCION, IIOC, SAFETY = (
    Criterion.GROOMING,
    Criterion.COERCION,
    Criterion.IIOC,
    Criterion.SAFETY,
)


def _flag(kind: str, *signals: dict[str, Any]) -> ModerationFlag:
    source = {"system": "test-source", "version": "1.0.0", "kind": kind}
    return make_flag(source=source, signals=list(signals))


def _verdict(kind: str, *signals: dict[str, Any]) -> Verdict:
    return evaluate(default_policy(), _flag(kind, *signals))


def _hash(match: str) -> dict[str, Any]:
    return {"list": "synthetic-test-list", "match": match}


# rule id, source kind, signal, outcome, priority, criteria
RULE_TABLE: list[tuple[str, str, dict[str, Any], Outcome, Priority, list[Criterion]]] = [
    (
        "immediate-danger",
        "classifier",
        signal("other", 0.1, immediate_danger=True),
        Outcome.REFER,
        Priority.P0,
        [SAFETY],
    ),
    (
        "iioc-hash-exact",
        "hash_match",
        signal("iioc", 1.0, hash_match=_hash("exact")),
        Outcome.REFER,
        Priority.P1,
        [IIOC],
    ),
    (
        "iioc-hash-perceptual",
        "hash_match",
        signal("iioc", 0.9, hash_match=_hash("perceptual")),
        Outcome.REVIEW,
        Priority.P2,
        [IIOC],
    ),
    ("iioc-moderator", "moderator", signal("iioc", 0.5), Outcome.REFER, Priority.P1, [IIOC]),
    ("iioc-classifier", "classifier", signal("iioc", 0.7), Outcome.REVIEW, Priority.P2, [IIOC]),
    (
        "coercion-high",
        "classifier",
        signal("coercion", 0.8),
        Outcome.REFER,
        Priority.P1,
        [COERCION],
    ),
    (
        "coercion-medium",
        "classifier",
        signal("coercion", 0.5),
        Outcome.REVIEW,
        Priority.P2,
        [COERCION],
    ),
    (
        "grooming-high",
        "classifier",
        signal("grooming", 0.9),
        Outcome.REFER,
        Priority.P2,
        [GROOMING],
    ),
    (
        "grooming-medium",
        "moderator",
        signal("grooming", 0.6),
        Outcome.REVIEW,
        Priority.P3,
        [GROOMING],
    ),
    (
        "self-harm-high",
        "classifier",
        signal("self_harm", 0.8),
        Outcome.REFER,
        Priority.P1,
        [SAFETY],
    ),
    (
        "self-harm-medium",
        "hash_match",
        signal("self_harm", 0.5),
        Outcome.REVIEW,
        Priority.P2,
        [SAFETY],
    ),
    ("safety-high", "classifier", signal("safety", 0.8), Outcome.REFER, Priority.P2, [SAFETY]),
    ("safety-medium", "classifier", signal("safety", 0.5), Outcome.REVIEW, Priority.P3, [SAFETY]),
    ("user-report", "user_report", signal("iioc", 0.1), Outcome.REVIEW, Priority.P2, [IIOC]),
]


def test_rule_table_covers_every_default_rule() -> None:
    assert sorted(row[0] for row in RULE_TABLE) == sorted(rule.rule_id for rule in DEFAULT_RULES)


@pytest.mark.parametrize(
    ("rule_id", "kind", "sig", "outcome", "priority", "criteria"),
    RULE_TABLE,
    ids=[row[0] for row in RULE_TABLE],
)
def test_each_default_rule_fires_for_its_flag(
    rule_id: str,
    kind: str,
    sig: dict[str, Any],
    outcome: Outcome,
    priority: Priority,
    criteria: list[Criterion],
) -> None:
    verdict = _verdict(kind, sig)
    assert [rule.rule_id for rule in verdict.fired] == [rule_id]
    fired = verdict.fired[0]
    assert (fired.mode, fired.outcome, fired.priority, fired.criteria) == (
        "active",
        outcome.value,
        priority,
        criteria,
    )
    assert (verdict.outcome, verdict.priority, list(verdict.criteria)) == (
        outcome,
        priority,
        criteria,
    )


@pytest.mark.parametrize(
    ("category", "kind", "confidence", "outcome", "priority"),
    [
        ("grooming", "classifier", 0.9, Outcome.REFER, Priority.P2),
        ("grooming", "classifier", 0.8999, Outcome.REVIEW, Priority.P3),
        ("grooming", "classifier", 0.6, Outcome.REVIEW, Priority.P3),
        ("grooming", "classifier", 0.59, Outcome.NONE, None),
        ("grooming", "moderator", 1.0, Outcome.REFER, Priority.P2),
        ("coercion", "classifier", 0.8, Outcome.REFER, Priority.P1),
        ("coercion", "classifier", 0.7999, Outcome.REVIEW, Priority.P2),
        ("coercion", "classifier", 0.5, Outcome.REVIEW, Priority.P2),
        ("coercion", "classifier", 0.4999, Outcome.NONE, None),
        ("self_harm", "classifier", 0.8, Outcome.REFER, Priority.P1),
        ("self_harm", "classifier", 0.7999, Outcome.REVIEW, Priority.P2),
        ("self_harm", "classifier", 0.4999, Outcome.NONE, None),
        ("safety", "classifier", 0.8, Outcome.REFER, Priority.P2),
        ("safety", "classifier", 0.7999, Outcome.REVIEW, Priority.P3),
        ("safety", "classifier", 0.4999, Outcome.NONE, None),
        ("iioc", "classifier", 0.7, Outcome.REVIEW, Priority.P2),
        ("iioc", "classifier", 0.6999, Outcome.NONE, None),
        ("iioc", "moderator", 0.0, Outcome.REFER, Priority.P1),
        ("grooming", "user_report", 0.0, Outcome.REVIEW, Priority.P2),
        ("grooming", "user_report", 1.0, Outcome.REVIEW, Priority.P2),
    ],
)
def test_confidence_thresholds(
    category: str, kind: str, confidence: float, outcome: Outcome, priority: Priority | None
) -> None:
    verdict = _verdict(kind, signal(category, confidence))
    assert (verdict.outcome, verdict.priority) == (outcome, priority)


@pytest.mark.parametrize(
    ("signals", "fired", "outcome", "priority", "criteria"),
    [
        (
            [signal("coercion", 0.9), signal("self_harm", 0.9), signal("grooming", 0.7)],
            ["coercion-high", "grooming-medium", "self-harm-high"],
            Outcome.REFER,
            Priority.P1,
            [COERCION, GROOMING, SAFETY],
        ),
        (
            [signal("safety", 0.6), signal("grooming", 0.95)],
            ["grooming-high", "safety-medium"],
            Outcome.REFER,
            Priority.P2,
            [GROOMING, SAFETY],
        ),
        (
            [signal("grooming", 0.7), signal("coercion", 0.6)],
            ["coercion-medium", "grooming-medium"],
            Outcome.REVIEW,
            Priority.P2,
            [COERCION, GROOMING],
        ),
        (
            [signal("other", 0.99), signal("grooming", 0.95)],
            ["grooming-high"],
            Outcome.REFER,
            Priority.P2,
            [GROOMING],
        ),
    ],
    ids=["sextortion-self-harm-grooming", "refer-beats-review", "reviews-only", "other-ignored"],
)
def test_signals_of_one_flag_combine_into_one_verdict(
    signals: list[dict[str, Any]],
    fired: list[str],
    outcome: Outcome,
    priority: Priority,
    criteria: list[Criterion],
) -> None:
    verdict = _verdict("classifier", *signals)
    assert sorted(rule.rule_id for rule in verdict.fired) == fired
    assert (verdict.outcome, verdict.priority, list(verdict.criteria)) == (
        outcome,
        priority,
        criteria,
    )


@pytest.mark.parametrize("kind", list(SourceKind))
@pytest.mark.parametrize("category", list(SignalCategory))
def test_immediate_danger_refers_at_p0_whatever_the_source_and_category(
    kind: SourceKind, category: SignalCategory
) -> None:
    verdict = _verdict(kind.value, signal(category.value, 0.01, immediate_danger=True))
    assert (verdict.outcome, verdict.priority, verdict.immediate_danger) == (
        Outcome.REFER,
        Priority.P0,
        True,
    )
    assert "immediate-danger" in [rule.rule_id for rule in verdict.fired]
    assert verdict.criteria


def test_immediate_danger_on_one_signal_makes_the_whole_flag_p0() -> None:
    verdict = _verdict(
        "classifier", signal("grooming", 0.95), signal("safety", 0.2, immediate_danger=True)
    )
    assert (verdict.outcome, verdict.priority, list(verdict.criteria)) == (
        Outcome.REFER,
        Priority.P0,
        [GROOMING, SAFETY],
    )


@pytest.mark.parametrize("kind", list(SourceKind))
def test_other_category_alone_is_not_reported(kind: SourceKind) -> None:
    verdict = _verdict(kind.value, signal("other", 1.0))
    assert verdict == Verdict(Outcome.NONE, None, (), False, ())


SHADOW = Rule(
    "shadow-test",
    "refer",
    Priority.P0,
    categories=frozenset({SignalCategory.GROOMING}),
    criteria=(Criterion.IIOC,),
    mode="shadow",
)
WITH_SHADOW = Policy(version="test.shadow", rules=(*DEFAULT_RULES, SHADOW))


def test_shadow_rule_is_listed_but_does_not_change_the_verdict() -> None:
    flag = _flag("classifier", signal("grooming", 0.7))
    verdict = evaluate(WITH_SHADOW, flag)
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
    verdict = evaluate(WITH_SHADOW, _flag("classifier", signal("grooming", 0.1)))
    assert [rule.rule_id for rule in verdict.fired] == ["shadow-test"]
    assert (verdict.outcome, verdict.priority, verdict.criteria) == (Outcome.NONE, None, ())


@pytest.mark.parametrize(
    ("kind", "signals", "rule_id", "matched"),
    [
        (
            "classifier",
            [signal("grooming", 0.95)],
            "grooming-high",
            [
                "signals[0].category=grooming",
                "source.kind=classifier",
                "signals[0].confidence>=0.9",
            ],
        ),
        (
            "classifier",
            [signal("other", 0.1), signal("grooming", 0.7)],
            "grooming-medium",
            [
                "signals[1].category=grooming",
                "source.kind=classifier",
                "signals[1].confidence>=0.6",
                "signals[1].confidence<0.9",
            ],
        ),
        (
            "user_report",
            [signal("other", 0.1, immediate_danger=True)],
            "immediate-danger",
            ["signals[0].category=other", "signals[0].immediate_danger=true"],
        ),
        (
            "hash_match",
            [signal("iioc", 1.0, hash_match=_hash("exact"))],
            "iioc-hash-exact",
            ["signals[0].category=iioc", "signals[0].hash_match.match=exact"],
        ),
        (
            "user_report",
            [signal("coercion", 0.2)],
            "user-report",
            ["signals[0].category=coercion", "source.kind=user_report"],
        ),
    ],
)
def test_fired_rule_names_the_conditions_that_held(
    kind: str, signals: list[dict[str, Any]], rule_id: str, matched: list[str]
) -> None:
    verdict = _verdict(kind, *signals)
    fired = {rule.rule_id: rule for rule in verdict.fired}
    assert fired[rule_id].matched == matched


def test_default_policy_is_versioned_and_its_rule_ids_are_unique() -> None:
    policy = default_policy()
    assert policy.version
    ids = [rule.rule_id for rule in policy.rules]
    assert len(ids) == len(set(ids))
