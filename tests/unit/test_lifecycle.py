"""The case lifecycle: every move a person or the system may make, and every one refused."""

from datetime import timedelta
from itertools import product

import pytest
from pydantic import ValidationError

from schemas.referral import Priority
from services.domain.deadlines import DEFAULT_DEADLINES
from services.pipeline.settings import Settings
from services.referral.enums import CaseStatus
from services.referral.exceptions import IllegalTransition, InvalidRequest
from services.referral.lifecycle import PERSON_TRANSITIONS, SYSTEM_TRANSITIONS, check_transition

S = CaseStatus
LEGAL = {
    (S.REVIEW, S.READY),
    (S.REVIEW, S.DISMISSED),
    (S.READY, S.SUBMITTED),
    (S.SUBMITTED, S.ACKNOWLEDGED),
    (S.ACKNOWLEDGED, S.CLOSED),
}
# What each legal move needs to pass the checks.
NEEDS: dict[CaseStatus, dict[str, str]] = {
    S.SUBMITTED: {"external_reference": "KNT-20261126-0042"},
    S.DISMISSED: {"note": "a parent's report about a film clip; no child at risk"},
}


def _check(current: CaseStatus, to: CaseStatus) -> None:
    needs = NEEDS.get(to, {})
    check_transition(
        current,
        to,
        external_reference=needs.get("external_reference"),
        note=needs.get("note"),
        packet_version=1 if to is S.SUBMITTED else None,
    )


def test_the_person_transition_table_is_the_documented_lifecycle() -> None:
    table = {(a, b) for a, targets in PERSON_TRANSITIONS.items() for b in targets}
    assert table == LEGAL
    assert set(PERSON_TRANSITIONS) == set(CaseStatus)


@pytest.mark.parametrize(("current", "to"), sorted(LEGAL))
def test_every_legal_move_passes_with_what_it_needs(current: CaseStatus, to: CaseStatus) -> None:
    _check(current, to)


@pytest.mark.parametrize(
    ("current", "to"), [pair for pair in product(CaseStatus, CaseStatus) if pair not in LEGAL]
)
def test_every_other_move_is_refused_naming_the_state_and_the_allowed_moves(
    current: CaseStatus, to: CaseStatus
) -> None:
    with pytest.raises(IllegalTransition) as refused:
        _check(current, to)
    message = str(refused.value)
    assert f"the case is {current}" in message
    for allowed in PERSON_TRANSITIONS[current]:
        assert str(allowed) in message
    if not PERSON_TRANSITIONS[current]:
        assert "final" in message


def test_submitting_requires_the_receivers_reference_and_the_version_sent() -> None:
    with pytest.raises(InvalidRequest, match="external_reference"):
        check_transition(S.READY, S.SUBMITTED, packet_version=1)
    with pytest.raises(InvalidRequest, match="external_reference"):
        check_transition(S.READY, S.SUBMITTED, external_reference="", packet_version=1)
    with pytest.raises(InvalidRequest, match="packet_version"):
        check_transition(S.READY, S.SUBMITTED, external_reference="KNT-1")
    with pytest.raises(InvalidRequest, match="packet_version"):
        check_transition(S.SUBMITTED, S.ACKNOWLEDGED, packet_version=1)


def test_dismissing_requires_a_reason() -> None:
    for note in (None, "", "   "):
        with pytest.raises(InvalidRequest, match="reason"):
            check_transition(S.REVIEW, S.DISMISSED, note=note)


def test_a_reference_is_recorded_only_where_it_means_something() -> None:
    check_transition(S.SUBMITTED, S.ACKNOWLEDGED, external_reference="IWF-2026-000123")
    with pytest.raises(InvalidRequest, match="external_reference"):
        check_transition(S.REVIEW, S.READY, external_reference="KNT-1")


def test_the_system_moves_only_to_ready_and_only_from_review_or_after_submission() -> None:
    for current, to in product(CaseStatus, CaseStatus):
        if (current, to) in SYSTEM_TRANSITIONS:
            check_transition(current, to, by_system=True)
        else:
            with pytest.raises(IllegalTransition):
                check_transition(current, to, by_system=True)
    assert {to for _, to in SYSTEM_TRANSITIONS} == {S.READY}


def test_deadlines_default_to_the_design_and_a_partial_table_overrides_them() -> None:
    assert Settings().sla_deadlines == DEFAULT_DEADLINES
    custom = Settings.model_validate(
        {"sla_deadlines": {"P0": {"ready": 30}, "P3": {"submitted": "P5D"}}}
    )
    assert custom.sla_deadlines[Priority.P0].ready == timedelta(seconds=30)
    assert custom.sla_deadlines[Priority.P0].submitted == timedelta(minutes=15)
    assert custom.sla_deadlines[Priority.P3].submitted == timedelta(days=5)
    assert custom.sla_deadlines[Priority.P1] == DEFAULT_DEADLINES[Priority.P1]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"P0": {"ready": 3600}}, "ready deadline must not be later"),
        ({"P1": {"review": 0}}, "review deadline must be positive"),
        ({"P9": {"ready": 30}}, "P9"),
        ({"P2": {"ready": 30, "acknowledged": 60}}, "acknowledged"),
    ],
)
def test_a_deadline_table_that_makes_no_sense_is_refused_at_start(
    table: dict[str, dict[str, int]], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings.model_validate({"sla_deadlines": table})
