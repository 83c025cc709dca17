"""The policy's memo of verdicts by a flag's traits gives the verdict its rules give, whatever
the rules and flags: flags are made of values at, just below and just above every threshold the
rules can hold, so flags that share traits but not values meet in the memo."""

from typing import Any

import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from schemas.flag import AgeBand, ModerationFlag, SignalCategory, SourceKind
from services.domain.policy import Policy, default_policy, evaluate, evaluate_rules, traits
from tests.factories import flag_document, signal
from tests.policies import policy_with
from tests.unit.test_policy_properties import rule_outcomes

CUTS = [0.3, 0.5, 0.7, 0.8, 0.9]
CONFIDENCES = sorted({0.0, 1.0, *CUTS, *(c - 1e-9 for c in CUTS), *(c + 1e-9 for c in CUTS)})
LIMITS = [10, 31]
DISTANCES = sorted({0, *LIMITS, *(d - 1 for d in LIMITS), *(d + 1 for d in LIMITS), 256})
LABELS = ["test_label", "test_other_label"]
LISTS = ["list-a", "list-b"]
COUNTRIES = ["GB", "US", "FR"]

CONDITIONS: dict[str, st.SearchStrategy[Any]] = {
    "category": st.lists(
        st.sampled_from([c.value for c in SignalCategory]), min_size=1, max_size=3, unique=True
    ),
    "source_kind": st.lists(
        st.sampled_from([k.value for k in SourceKind]), min_size=1, max_size=2, unique=True
    ),
    "label": st.lists(st.sampled_from(LABELS), min_size=1, max_size=1),
    "min_confidence": st.sampled_from(CUTS),
    "max_confidence": st.sampled_from(CUTS),
    "hash_match": st.sampled_from(["exact", "perceptual"]),
    "hash_list": st.lists(st.sampled_from(LISTS), min_size=1, max_size=1),
    "max_distance": st.sampled_from(LIMITS),
    "immediate_danger": st.booleans(),
    "shared_externally": st.booleans(),
    "child_age_band": st.lists(
        st.sampled_from([a.value for a in AgeBand]), min_size=1, max_size=2, unique=True
    ),
    "platform_country": st.lists(st.sampled_from(COUNTRIES), min_size=1, max_size=2),
}


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    """One or two conditions: rules of many rarely fire, and a memo's mistake shows only when
    a rule fires for one of two flags and not for the other."""
    names = draw(st.lists(st.sampled_from(sorted(CONDITIONS)), min_size=1, max_size=2, unique=True))
    return {name: draw(CONDITIONS[name]) for name in names}


rules = st.fixed_dictionaries(
    {
        "mode": st.sampled_from(["active", "shadow"]),
        "when": conditions(),
        "then": rule_outcomes,
    }
)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    drawn = draw(st.lists(rules, min_size=1, max_size=5))
    try:
        return policy_with(*[{**rule, "id": f"generated-{n}"} for n, rule in enumerate(drawn)])
    except ValueError:  # pydantic's ValidationError: a policy the file would refuse
        reject()


hash_matches = st.fixed_dictionaries(
    {
        "list": st.sampled_from([*LISTS, "list-unnamed"]),
        "match": st.sampled_from(["exact", "perceptual"]),
    },
    optional={"distance": st.sampled_from(DISTANCES)},
)
signals = st.fixed_dictionaries(
    {
        "category": st.sampled_from([c.value for c in SignalCategory]),
        "label": st.sampled_from([*LABELS, "test_unnamed_label"]),
        "confidence": st.sampled_from(CONFIDENCES),
    },
    optional={
        "hash_match": hash_matches,
        "shared_externally": st.booleans(),
        "immediate_danger": st.booleans(),
    },
)


def _flag(kind: str, country: str, band: str | None, drawn: list[dict[str, Any]]) -> ModerationFlag:
    document: dict[str, Any] = flag_document(
        source={"system": "test-source", "version": "1.0.0", "kind": kind},
        platform={"org_id": "org-test", "service": "chat", "country": country},
        signals=drawn,
    )
    if band is not None:
        document["child"] = {"age_band": band}
    return ModerationFlag.model_validate(document)


kinds = st.sampled_from([k.value for k in SourceKind])
countries = st.sampled_from([*COUNTRIES, "JP"])
bands = st.none() | st.sampled_from([a.value for a in AgeBand])


@st.composite
def neighbours(draw: st.DrawFn) -> list[ModerationFlag]:
    """A flag, then flags that each differ from it in one value (of the flag or of one of its
    signals): the ones the memo must tell apart, and the ones it must not."""
    kind, country, band = draw(kinds), draw(countries), draw(bands)
    drawn: list[dict[str, Any]] = draw(st.lists(signals, min_size=1, max_size=3))
    made = [_flag(kind, country, band, drawn)]
    for _ in range(draw(st.integers(1, 24))):  # cheap: one policy is made per example
        changed = draw(st.sampled_from(["kind", "country", "band", *["signal"] * 3]))
        if changed == "signal":
            n = draw(st.integers(0, len(drawn) - 1))
            again = [*drawn]
            field = draw(
                st.sampled_from(["label", "confidence", "confidence", "hash", "distance", "flags"])
            )
            if field == "hash":
                again[n] = {**drawn[n], "hash_match": draw(hash_matches)}
            elif field == "distance":  # the next distance up or down, or none
                match = drawn[n].get("hash_match") or {"list": "list-a", "match": "perceptual"}
                at = DISTANCES.index(match.get("distance", 0))
                distance = draw(
                    st.sampled_from(
                        [
                            None,
                            DISTANCES[max(at - 1, 0)],
                            DISTANCES[at],
                            DISTANCES[min(at + 1, len(DISTANCES) - 1)],
                        ]
                    )
                )
                match = {key: value for key, value in match.items() if key != "distance"}
                if distance is not None:
                    match["distance"] = distance
                again[n] = {**drawn[n], "hash_match": match}
            elif field == "flags":
                again[n] = {
                    **drawn[n],
                    "shared_externally": draw(st.booleans()),
                    "immediate_danger": draw(st.booleans()),
                }
            elif field == "confidence":  # the next value up or down: across a threshold or not
                at = CONFIDENCES.index(drawn[n]["confidence"])
                step = draw(st.sampled_from([-1, 1]))
                again[n] = {**drawn[n], "confidence": CONFIDENCES[(at + step) % len(CONFIDENCES)]}
            else:
                again[n] = {**drawn[n], field: draw(signals)[field]}
            made.append(_flag(kind, country, band, again))
        else:
            made.append(
                _flag(
                    draw(kinds) if changed == "kind" else kind,
                    draw(countries) if changed == "country" else country,
                    draw(bands) if changed == "band" else band,
                    drawn,
                )
            )
    return made


@settings(max_examples=200, deadline=None)
@given(policies(), neighbours())
def test_a_remembered_verdict_is_the_verdict_of_the_rules(
    policy: Policy, some: list[ModerationFlag]
) -> None:
    for flag in some:  # one policy: later flags meet what earlier ones left in its memo
        assert evaluate(policy, flag) == evaluate_rules(policy, flag)


def _with_confidences(*confidences: float) -> ModerationFlag:
    return ModerationFlag.model_validate(
        flag_document(signals=[signal("grooming", c) for c in confidences])
    )


def test_flags_between_the_same_thresholds_share_a_verdict_and_others_do_not() -> None:
    policy = default_policy()  # grooming refers from 0.9 (see data/policy.yaml)
    assert traits(policy, _with_confidences(0.91)) == traits(policy, _with_confidences(0.97))
    assert traits(policy, _with_confidences(0.89)) != traits(policy, _with_confidences(0.91))
    assert evaluate(policy, _with_confidences(0.97)) is evaluate(policy, _with_confidences(0.91))
    assert evaluate(policy, _with_confidences(0.89)) != evaluate(policy, _with_confidences(0.91))


FLAGGED = {"category": "grooming", "label": "test_label", "confidence": 0.95}
PERCEPTUAL = {"category": "iioc", "label": "test_label", "confidence": 1.0}


def _one(signal_fields: dict[str, Any], **flag_fields: Any) -> ModerationFlag:
    return _flag(
        flag_fields.get("kind", "classifier"),
        flag_fields.get("country", "GB"),
        flag_fields.get("band"),
        [signal_fields],
    )


def _rule(**when: Any) -> dict[str, Any]:
    then = {"outcome": "refer", "priority": "P0", "criteria": ["safety"]}
    return {
        "id": "test-trait",
        "mode": "active",
        "when": {"category": ["grooming"], **when},
        "then": then,
    }


# Two flags that differ in one value, on either side of what a rule looks at.
PAIRS: dict[str, tuple[Policy, ModerationFlag, ModerationFlag]] = {
    "confidence at a threshold": (
        default_policy(),  # grooming refers from 0.9
        _one({**FLAGGED, "confidence": 0.9}),
        _one({**FLAGGED, "confidence": 0.9 - 1e-9}),
    ),
    "distance at a limit": (
        default_policy(),  # a perceptual match within 31 refers
        _one({**PERCEPTUAL, "hash_match": {"list": "l", "match": "perceptual", "distance": 31}}),
        _one({**PERCEPTUAL, "hash_match": {"list": "l", "match": "perceptual", "distance": 32}}),
    ),
    "label": (
        policy_with(_rule(label=["test_label"])),
        _one(FLAGGED),
        _one({**FLAGGED, "label": "test_other_label"}),
    ),
    "hash list": (
        policy_with(_rule(category=["iioc"], hash_list=["list-a"])),
        _one({**PERCEPTUAL, "hash_match": {"list": "list-a", "match": "exact"}}),
        _one({**PERCEPTUAL, "hash_match": {"list": "list-b", "match": "exact"}}),
    ),
    "shared externally": (
        policy_with(_rule(shared_externally=True)),
        _one({**FLAGGED, "shared_externally": True}),
        _one({**FLAGGED, "shared_externally": False}),
    ),
    "immediate danger": (
        default_policy(),
        _one({**FLAGGED, "immediate_danger": True}),
        _one(FLAGGED),
    ),
    "source kind": (
        policy_with(_rule(source_kind=["user_report"])),
        _one(FLAGGED, kind="user_report"),
        _one(FLAGGED, kind="classifier"),
    ),
    "child's age band": (
        policy_with(_rule(child_age_band=["under_13"])),
        _one(FLAGGED, band="under_13"),
        _one(FLAGGED, band="16_17"),
    ),
    "platform country": (
        policy_with(_rule(platform_country=["FR"])),
        _one(FLAGGED, country="FR"),
        _one(FLAGGED, country="JP"),
    ),
}


@pytest.mark.parametrize("pair", PAIRS.values(), ids=PAIRS)
def test_flags_a_rule_tells_apart_are_told_apart(
    pair: tuple[Policy, ModerationFlag, ModerationFlag],
) -> None:
    policy, first, second = pair
    assert evaluate_rules(policy, first) != evaluate_rules(policy, second)  # the rule tells
    assert evaluate(policy, first) == evaluate_rules(policy, first)
    assert evaluate(policy, second) == evaluate_rules(policy, second)  # after the first's
