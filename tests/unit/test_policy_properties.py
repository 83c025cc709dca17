"""Invariants of routing under the default policy, for any flag hypothesis can make."""

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, reject, settings
from hypothesis import strategies as st

from schemas.flag import AgeBand, ModerationFlag, SignalCategory, SourceKind
from schemas.referral import Criterion, Decision, DestinationKind, Outcome, Priority, ReferralTask
from services.domain.forces import uk_forces
from services.domain.policy import Policy, default_policy
from services.router.routing import Routing, route
from tests.factories import flag_document, image
from tests.policies import policy_with

NOW = datetime(2026, 11, 26, 9, 0, 5, tzinfo=UTC)
HOME = "thames-valley"
MANY = settings(max_examples=300, deadline=None)

hash_matches = st.fixed_dictionaries(
    {
        "list": st.sampled_from(["list-a", "list-b"]),
        "match": st.sampled_from(["exact", "perceptual"]),
        "external": st.booleans(),
    },
    optional={"distance": st.integers(0, 256)},
)
signals = st.fixed_dictionaries(
    {
        "category": st.sampled_from([c.value for c in SignalCategory]),
        "label": st.sampled_from(["test_label", "test_other_label"]),
        "confidence": st.floats(0.0, 1.0),
    },
    optional={"hash_match": hash_matches, "shared_externally": st.booleans()},
)
locations = st.fixed_dictionaries(
    {"country": st.sampled_from(["GB", "FR"])},
    optional={
        "postcode_district": st.sampled_from(["M1", "CV1", "EH1", "BT1", "SW1A", "LA9", "QQ1"]),
        "force_id": st.sampled_from(["kent", "btp", "not-a-force"]),
    },
)
children = st.none() | st.fixed_dictionaries(
    {}, optional={"age_band": st.sampled_from([a.value for a in AgeBand]), "location": locations}
)


@st.composite
def flags(draw: st.DrawFn, danger: bool | None = None) -> ModerationFlag:
    """A flag; in immediate danger about one time in ten (a property about danger asks for it:
    `danger=True`), so most flags exercise the rest of the policy."""
    kind = draw(st.sampled_from([k.value for k in SourceKind]))
    drawn = draw(st.lists(signals, min_size=1, max_size=5))
    if danger if danger is not None else draw(st.integers(0, 9)) == 0:
        at_risk = draw(st.sets(st.integers(0, len(drawn) - 1), min_size=1))
        drawn = [{**sig, "immediate_danger": n in at_risk} for n, sig in enumerate(drawn)]
    document: dict[str, Any] = flag_document(
        source={"system": "test-source", "version": "1.0.0", "kind": kind},
        platform={
            "org_id": "org-test",
            "service": "chat",
            "country": draw(st.sampled_from(["GB", "GB", "US", "FR", "JP", "NZ"])),
        },
        signals=drawn,
        content=[
            image(f"content-{n}", public=p)
            for n, p in enumerate(draw(st.lists(st.booleans(), max_size=2)))
        ],
        subject={
            "account_id": "acct-test-property",
            **draw(st.fixed_dictionaries({}, optional={"location": locations})),
        },
    )
    child = draw(children)
    if child is not None:
        document["child"] = child
    return ModerationFlag.model_validate(document)


def _route(flag: ModerationFlag, policy: Policy | None = None) -> Routing:
    return route(
        flag, policy=policy or default_policy(), directory=uk_forces(), home_force_id=HOME, now=NOW
    )


@MANY
@given(flags(danger=True))
def test_immediate_danger_always_gives_p0_and_a_police_destination(flag: ModerationFlag) -> None:
    assert_the_p0_floor_holds(flag, default_policy())


def assert_the_p0_floor_holds(flag: ModerationFlag, policy: Policy) -> None:
    """A child in immediate danger: refer at P0, first to the police where the child is."""
    routing = _route(flag, policy)
    decision = routing.decision
    assert (decision.outcome, decision.priority) == (Outcome.REFER, Priority.P0)
    # Every referral is P0; only evidence that earned a review alone, sent where the police
    # are not (the IWF, or a hotline for what only it takes), waits for a person.
    assert {task.priority for task in routing.tasks if task.decision == "refer"} == {Priority.P0}
    assert all(
        task.destination.kind is DestinationKind.IWF
        or (
            task.destination.kind is DestinationKind.INTL
            and task.destination.mechanism != "local_police"
        )
        for task in routing.tasks
        if task.decision == "review"
    )
    # The emergency route comes first: the police where the child is, when that is known, else
    # where the organisation is.
    first = decision.destinations[0]
    location = flag.child.location if flag.child else None
    country = location.country if location else flag.platform.country
    if country == "GB":
        assert first.kind is DestinationKind.POLICE
        assert first.force_id in uk_forces().forces
    else:
        assert (first.kind, first.mechanism, first.country) == (
            DestinationKind.INTL,
            "local_police",
            country,
        )
    assert len([d for d in decision.destinations if d.kind is DestinationKind.POLICE]) <= 1
    assert len(set(decision.destinations)) == len(decision.destinations)


@MANY
@given(flags())
def test_no_task_without_a_criterion_and_an_active_rule(flag: ModerationFlag) -> None:
    routing = _route(flag)
    if routing.decision.outcome is Outcome.NONE:
        assert routing.tasks == ()
    for task in routing.tasks:
        assert task.criteria
        assert task.rules
        assert all(rule.mode == "active" for rule in task.rules)
        established = {c for rule in task.rules for c in rule.criteria if rule.outcome == "refer"}
        if task.decision == "refer":  # only what refer rules established is referred
            assert set(task.criteria) == established
        else:  # the rest goes to a person first
            assert set(task.criteria) <= {c for rule in task.rules for c in rule.criteria}
            assert set(task.criteria).isdisjoint(established)


@MANY
@given(flags())
def test_iwf_only_with_iioc(flag: ModerationFlag) -> None:
    for task in _route(flag).tasks:
        if task.destination.kind is DestinationKind.IWF:
            assert Criterion.IIOC in task.criteria


@MANY
@given(flags())
def test_an_iwf_referral_only_when_a_refer_rule_established_iioc(flag: ModerationFlag) -> None:
    routing = _route(flag)
    # Only a rule that looks at imagery (an iioc category condition) may establish iioc:
    # danger alone, or an escalation over other rules, never does.
    looks_at_imagery = {
        rule.rule_id
        for rule in default_policy().rules
        if rule.categories is not None and SignalCategory.IIOC in rule.categories
    }
    refer_iioc = any(
        rule.mode == "active"
        and rule.outcome == "refer"
        and Criterion.IIOC in rule.criteria
        and rule.rule_id in looks_at_imagery
        for rule in routing.decision.rules
    )
    for task in routing.tasks:
        if task.destination.kind is DestinationKind.IWF and task.decision == "refer":
            assert refer_iioc
        if task.destination.kind is DestinationKind.IWF and not refer_iioc:
            assert task.decision == "review"


@MANY
@given(flags())
def test_every_uk_referral_to_the_police_has_exactly_one_known_force(
    flag: ModerationFlag,
) -> None:
    decision = _route(flag).decision
    if flag.platform.country != "GB" or decision.outcome is Outcome.NONE:
        return
    police = [d for d in decision.destinations if d.kind is DestinationKind.POLICE]
    assert len(police) == 1
    assert police[0].force_id in uk_forces().forces


@MANY
@given(flags())
def test_the_same_flag_always_gets_the_same_decision(flag: ModerationFlag) -> None:
    again = ModerationFlag.model_validate_json(flag.model_dump_json())
    first, second, third = _route(flag), _route(flag), _route(again)
    assert first.decision == second.decision == third.decision
    assert first.tasks == second.tasks == third.tasks


SHADOWS = policy_with(
    {
        "id": "shadow-everything",
        "mode": "shadow",
        "when": {"category": [c.value for c in SignalCategory]},
        "then": {"outcome": "refer", "priority": "P0", "criteria": ["iioc"]},
    },
    {
        "id": "shadow-danger-off",
        "mode": "shadow",
        "when": {"immediate_danger": False},
        "then": {"outcome": "review", "priority": "P3", "criteria": ["grooming"]},
    },
    escalations=[
        {
            "id": "shadow-escalation",
            "mode": "shadow",
            "requires": [["shadow-everything"], ["shadow-danger-off", "grooming-medium"]],
            "then": {"outcome": "refer", "priority": "P0"},
        }
    ],
)


@MANY
@given(flags())
def test_shadow_rules_never_emit_nor_change_the_decision(flag: ModerationFlag) -> None:
    with_shadows = _route(flag, SHADOWS)
    _assert_shadows_change_nothing(_route(flag), with_shadows)
    assert "shadow-everything" in [rule.rule_id for rule in with_shadows.decision.rules]


def _assert_shadows_change_nothing(without: Routing, with_shadows: Routing) -> None:
    """Shadow rules are listed in the decision, and change nothing else: no task, no outcome."""
    version = with_shadows.decision.policy_version
    assert with_shadows.tasks == tuple(
        task.model_copy(update={"policy_version": version}) for task in without.tasks
    )
    ignore = {"rules", "policy_version"}
    assert with_shadows.decision.model_dump(exclude=ignore) == without.decision.model_dump(
        exclude=ignore
    )
    active = [rule for rule in with_shadows.decision.rules if rule.mode == "active"]
    assert active == without.decision.rules


def _outcome(routing: Routing) -> tuple[Any, ...]:
    """What a routing decides, without the words for where each condition held."""
    decision = routing.decision
    return (
        decision.outcome,
        decision.priority,
        decision.criteria,
        decision.immediate_danger,
        sorted((rule.rule_id, rule.mode) for rule in decision.rules),
        decision.destinations,
        [(t.destination, t.criteria, t.priority, t.decision, t.due_at) for t in routing.tasks],
    )


@MANY
@given(flags(), st.data())
def test_the_order_of_signals_does_not_change_the_decision(
    flag: ModerationFlag, data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(flag.signals))
    again = flag.model_copy(update={"signals": shuffled})
    assert _outcome(_route(again)) == _outcome(_route(flag))


rule_outcomes = st.fixed_dictionaries(
    {
        "outcome": st.sampled_from(["refer", "review"]),
        "priority": st.sampled_from([p.value for p in Priority]),
        "criteria": st.lists(
            st.sampled_from([c.value for c in Criterion]), min_size=1, max_size=2, unique=True
        ),
    }
)
"""What a generated rule does when it fires (its `then`)."""

# Policies a person could write: the default one with a few more rules, active or shadow, of any
# shape the policy file accepts.
generated_rules = st.fixed_dictionaries(
    {
        "mode": st.sampled_from(["active", "shadow"]),
        "when": st.fixed_dictionaries(
            {},
            optional={
                "category": st.lists(
                    st.sampled_from([c.value for c in SignalCategory]),
                    min_size=1,
                    max_size=3,
                    unique=True,
                ),
                "source_kind": st.lists(
                    st.sampled_from([k.value for k in SourceKind]),
                    min_size=1,
                    max_size=2,
                    unique=True,
                ),
                "min_confidence": st.sampled_from([0.0, 0.3, 0.5]),
                "max_confidence": st.sampled_from([0.6, 0.9]),
                "hash_match": st.sampled_from(["exact", "perceptual"]),
                "immediate_danger": st.booleans(),
                "shared_externally": st.booleans(),
                "child_age_band": st.lists(
                    st.sampled_from([a.value for a in AgeBand]), min_size=1, max_size=2, unique=True
                ),
            },
        ),
        "then": rule_outcomes,
    }
)


@st.composite
def policies(draw: st.DrawFn) -> tuple[Policy, Policy]:
    """A valid policy with generated active rules, and the same with generated shadow rules too."""
    drawn = draw(st.lists(generated_rules, max_size=4))
    rules = [{**rule, "id": f"generated-{n}"} for n, rule in enumerate(drawn)]
    active = [rule for rule in rules if rule["mode"] == "active"]
    try:
        return policy_with(*active), policy_with(*rules, version="test.2")
    except ValueError:  # pydantic's ValidationError: a policy the file would refuse
        reject()


POLICIES = settings(max_examples=60, deadline=None)  # making a policy costs more than routing


@POLICIES
@given(policies(), st.lists(flags(danger=True), min_size=1, max_size=4))
def test_the_p0_floor_holds_under_any_valid_policy(
    pair: tuple[Policy, Policy], in_danger: list[ModerationFlag]
) -> None:
    for policy in pair:
        for flag in in_danger:
            assert_the_p0_floor_holds(flag, policy)


@POLICIES
@given(policies(), st.lists(flags(), min_size=1, max_size=4))
def test_shadow_rules_change_nothing_under_any_valid_policy(
    pair: tuple[Policy, Policy], some: list[ModerationFlag]
) -> None:
    for flag in some:
        _assert_shadows_change_nothing(*(_route(flag, policy) for policy in pair))


@given(flags())
def test_every_decision_and_task_validates_against_its_contract(flag: ModerationFlag) -> None:
    """Routing builds its records without validating them (for speed): the consumers validate
    what they read, and so does this test, for every flag the strategies make."""
    routing = _route(flag)
    assert Decision.model_validate_json(routing.decision.model_dump_json()) == routing.decision
    for task in routing.tasks:
        again = ReferralTask.model_validate_json(task.model_dump_json())
        assert again == task


@given(flags())
def test_the_router_writes_what_the_contracts_serialise(flag: ModerationFlag) -> None:
    """The router splices JSON made once (each fired rule's, the flag's own bytes) instead of
    serialising each record whole: the bytes are the contract's own serialisation, byte for byte."""
    routing = _route(flag)
    flag_json = flag.model_dump_json().encode()
    assert routing.decision_json() == routing.decision.model_dump_json().encode()
    for task in routing.tasks:
        assert routing.task_json(task, flag_json) == task.model_dump_json().encode()
