"""Escalation across the flags of a case: the same facts give the same priority whether they
arrive on one flag or on several; IWF cases never escalate; clocks start from the flag that
completed the escalation; a P0 gets the emergency route."""

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.flag import ModerationFlag, Signal
from schemas.referral import Destination, DestinationKind, Priority, ReferralTask
from services.domain.deadlines import DEFAULT_DEADLINES
from services.domain.destinations import IWF, police, police_force
from services.domain.forces import uk_forces
from services.domain.policy import default_policy
from services.referral import cases, escalation
from services.referral.cases import CaseState
from services.referral.enums import CaseStatus
from services.referral.escalation import Escalator
from services.router.routing import route
from tests.factories import make_flag, signal
from tests.unit.test_policy_properties import flags

NOW = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
HOME = "kent"
ESCALATOR = Escalator(default_policy(), uk_forces(), HOME)


def tasks_of(flag: ModerationFlag) -> list[ReferralTask]:
    routing = route(
        flag, policy=default_policy(), directory=uk_forces(), home_force_id=HOME, now=NOW
    )
    return list(routing.tasks)


def case_after(
    flags: list[ModerationFlag], destination: Destination, escalator: Escalator | None = ESCALATOR
) -> tuple[CaseState | None, list[ReferralTask]]:
    """The case at `destination` after the flags arrive one by one, as the store applies them
    (without a database), and every task escalations made for other destinations."""
    state: CaseState | None = None
    ledger: escalation.Ledger = {}
    elsewhere: list[ReferralTask] = []
    for flag in flags:
        arriving = [t for t in tasks_of(flag) if t.destination == destination]
        if not arriving:
            continue
        done = escalation.escalate(
            escalator,
            destination=destination,
            case_version=state.policy_version if state else arriving[0].policy_version,
            ledger=ledger,
            arriving=arriving,
            now=NOW,
        )
        ledger = done.ledger
        joining = [*arriving, *(t for t in done.tasks if t.destination == destination)]
        elsewhere += [t for t in done.tasks if t.destination != destination]
        opened = state is None
        if state is None:
            state = cases.open_case(joining, NOW)
            state.policy_version = arriving[0].policy_version
        cases.join(
            state,
            joining,
            [c.value for t in joining for c in t.criteria],
            opened=opened,
            now=NOW,
            flags=len(arriving),
        )
        state.fired_rules = ledger
    return state, elsewhere


def coercion_then_self_harm(**child: object) -> list[ModerationFlag]:
    """Sextortion and self-harm about one child, published by two models as two flags."""
    facts = {"subject": {"account_id": "acct-escalation"}, "child": child or None}
    return [
        make_flag(signals=[signal("coercion", 0.92)], **facts),
        make_flag(
            signals=[signal("self_harm", 0.93)],
            detected_at=(datetime(2026, 11, 26, 9, 20, tzinfo=UTC)).isoformat(),
            published_at=(datetime(2026, 11, 26, 9, 20, tzinfo=UTC)).isoformat(),
            **facts,
        ),
    ]


@st.composite
def split(draw: st.DrawFn) -> tuple[ModerationFlag, list[ModerationFlag]]:
    """A UK organisation's flag, and the same signals spread over several flags that share
    every other fact (as separate upstream models would publish them)."""
    whole = draw(flags())
    # Signals near the policy's thresholds, of the categories its escalations combine, so the
    # patterns that escalate (coercion with self-harm) are drawn often, not by rare chance.
    near = st.builds(
        lambda category, confidence: Signal.model_validate(signal(category, confidence)),
        st.sampled_from(["coercion", "self_harm", "grooming", "safety", "iioc", "other"]),
        st.sampled_from([0.3, 0.55, 0.79, 0.8, 0.93]) | st.floats(0.0, 1.0),
    )
    chosen = draw(st.lists(near, min_size=1, max_size=5))
    whole = whole.model_copy(
        update={
            "platform": whole.platform.model_copy(update={"country": "GB"}),
            "signals": draw(st.sampled_from([chosen, [*whole.signals, *chosen][:8]])),
        }
    )
    groups = draw(
        st.lists(st.integers(0, 3), min_size=len(whole.signals), max_size=len(whole.signals))
    )
    parts = [
        whole.model_copy(
            update={
                "flag_id": uuid4(),
                "signals": [s for s, g in zip(whole.signals, groups, strict=True) if g == group],
            }
        )
        for group in sorted(set(groups))
    ]
    return whole, draw(st.permutations(parts))


@settings(max_examples=300, deadline=None)
@given(split())
def test_the_same_facts_give_the_same_priority_on_one_flag_or_several(
    facts: tuple[ModerationFlag, list[ModerationFlag]],
) -> None:
    whole, parts = facts
    where = police(police_force(whole, uk_forces(), HOME))
    one, _ = case_after([whole], where)
    several, _ = case_after(parts, where)
    assert (one is None) == (several is None)
    if one is not None and several is not None:
        assert several.priority == one.priority
        assert (several.status is CaseStatus.READY) == (one.status is CaseStatus.READY)


def test_sextortion_and_self_harm_on_two_flags_make_the_case_p0() -> None:
    first, second = coercion_then_self_harm(location={"country": "GB", "postcode_district": "CV1"})
    where = police("west-midlands")
    alone, _ = case_after([first], where)
    assert alone is not None
    assert alone.priority == "P1"

    case, elsewhere = case_after([first, second], where)
    assert case is not None
    assert (case.status, case.priority) == (CaseStatus.READY, "P0")
    assert "sextortion-with-self-harm" in case.fired_rules
    assert case.fired_rules["sextortion-with-self-harm"]["from"] == [
        str(first.flag_id),
        str(second.flag_id),
    ]
    assert case.flag_count == 2, "an escalation's task is not one more flag"
    assert elsewhere == [], "the child is in this force's area: its own police case is the route"


def test_the_clocks_start_from_the_flag_that_completed_the_escalation() -> None:
    first, second = coercion_then_self_harm(location={"country": "GB", "postcode_district": "CV1"})
    case, _ = case_after([first, second], police("west-midlands"))
    assert case is not None
    p0 = DEFAULT_DEADLINES[Priority.P0]
    assert case.submitted_due_at == second.detected_at + p0.submitted
    assert case.submitted_due_priority == "P0"
    assert case.submitted_due_at < first.detected_at + DEFAULT_DEADLINES[Priority.P1].submitted


def test_a_case_that_becomes_p0_gets_the_emergency_route_of_a_p0_flag() -> None:
    # A UK platform; the child is in France: only the police there can reach the child now.
    first, second = coercion_then_self_harm(location={"country": "FR"})
    where = police(HOME)
    single = tasks_of(first.model_copy(update={"signals": [*first.signals, *second.signals]}))
    _, elsewhere = case_after([first, second], where)
    emergency = [t.destination for t in single if t.destination != where]
    assert (
        [t.destination for t in elsewhere]
        == emergency
        == [Destination(kind=DestinationKind.INTL, mechanism="local_police", country="FR")]
    )
    (task,) = elsewhere
    assert (task.priority, task.decision, task.escalation) == (
        Priority.P0,
        "refer",
        "sextortion-with-self-harm",
    )
    assert task.flag_id == second.flag_id
    assert task.escalated_from == [first.flag_id, second.flag_id]
    assert ReferralTask.model_validate_json(task.model_dump_json()) == task


def test_an_iwf_case_never_escalates() -> None:
    image_flags = [
        make_flag(
            subject={"account_id": "acct-iwf"},
            signals=[
                signal("iioc", 1.0, hash_match={"list": "l", "match": "exact", "external": True}),
                signal(category, 0.95),
            ],
        )
        for category in ("coercion", "self_harm")
    ]
    assert all(IWF in [t.destination for t in tasks_of(f)] for f in image_flags)
    case, elsewhere = case_after(image_flags, IWF)
    assert case is not None
    assert (case.priority, elsewhere) == ("P1", [])
    assert "sextortion-with-self-harm" not in case.fired_rules


def test_a_case_opened_under_another_policy_version_is_re_evaluated_by_this_one() -> None:
    first, second = coercion_then_self_harm(location={"country": "GB", "postcode_district": "CV1"})
    arriving = [t for t in tasks_of(second) if t.destination == police("west-midlands")]
    done = escalation.escalate(
        ESCALATOR,
        destination=police("west-midlands"),
        case_version="an-older-version",
        ledger={"coercion-high": {"flag_id": str(first.flag_id), "criteria": ["coercion"]}},
        arriving=arriving,
        now=NOW,
    )
    assert done.fired == ("sextortion-with-self-harm", "sextortion-with-self-harm-cues")
    assert done.reevaluated
    entry = done.ledger["sextortion-with-self-harm"]
    assert entry["policy_version"] == default_policy().version


def test_a_late_completing_flag_never_moves_a_clock_later_and_the_clock_becomes_p0() -> None:
    first, second = coercion_then_self_harm(location={"country": "GB", "postcode_district": "CV1"})
    two_days_on = first.detected_at + timedelta(days=2)
    late = second.model_copy(update={"detected_at": two_days_on, "published_at": two_days_on})
    case, _ = case_after([first, late], police("west-midlands"))
    assert case is not None
    assert case.priority == "P0"
    assert case.submitted_due_at == first.detected_at + DEFAULT_DEADLINES[Priority.P1].submitted
    # The case says P0: the clock it waits on follows P0, so a P0 breach pages for it (the
    # ready stage was done when the first flag made the case ready).
    assert (case.due_stage, case.submitted_due_priority) == ("submitted", "P0")
