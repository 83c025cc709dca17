"""The case rules without a database: status, clocks, versions and breaches as flags join and
people move a case."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest

from schemas.referral import Priority
from services.domain.deadlines import DEFAULT_DEADLINES
from services.referral import cases
from services.referral.enums import CaseStatus, Stage
from services.referral.exceptions import IllegalTransition, InvalidRequest

DETECTED = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Facts:
    priority: Priority
    decision: Literal["refer", "review"]
    detected_at: datetime = DETECTED


def opened(*tasks: Facts, now: datetime) -> tuple[cases.CaseState, cases.Moved]:
    state = cases.open_case(tasks, now)
    return state, cases.join(state, tasks, ["coercion"], opened=True, now=now)


def test_a_referral_opens_a_ready_case_with_version_1_and_its_clocks() -> None:
    now = DETECTED + timedelta(seconds=20)
    state, moved = opened(Facts(Priority.P0, "refer"), now=now)
    assert (state.status, state.packet_version, state.flag_count) == (CaseStatus.READY, 1, 1)
    assert moved.previous is None
    assert moved.new_version
    assert moved.note == "opened"
    assert state.ready_at == now
    assert state.ready_due_at == DETECTED + DEFAULT_DEADLINES[Priority.P0].ready
    assert (state.due_at, state.due_stage) == (
        DETECTED + DEFAULT_DEADLINES[Priority.P0].submitted,
        Stage.SUBMITTED.value,
    )
    assert moved.breaches == ()


def test_a_review_opens_without_a_version_and_waits_on_its_review_clock() -> None:
    state, moved = opened(Facts(Priority.P2, "review"), now=DETECTED)
    assert (state.status, state.packet_version) == (CaseStatus.REVIEW, 0)
    assert not moved.new_version
    assert state.due_stage == Stage.REVIEW.value
    assert state.due_at == DETECTED + DEFAULT_DEADLINES[Priority.P2].review


def test_each_batch_joining_a_ready_case_numbers_one_version_whatever_the_case_holds() -> None:
    state, _ = opened(Facts(Priority.P2, "refer"), now=DETECTED)
    for n in range(2, 12):
        batch = [Facts(Priority.P2, "refer")] * 3
        moved = cases.join(state, batch, ["grooming"], opened=False, now=DETECTED)
        assert moved.new_version
        assert moved.note is None
        assert state.packet_version == n
    assert state.flag_count == 31
    assert state.criteria == ["coercion", "grooming"]


def test_a_more_urgent_flag_raises_the_priority_and_brings_the_deadline_forward() -> None:
    state, _ = opened(Facts(Priority.P2, "refer"), now=DETECTED)
    cases.join(state, [Facts(Priority.P0, "refer")], ["safety"], opened=False, now=DETECTED)
    assert state.priority == "P0"
    assert state.due_at == DETECTED + DEFAULT_DEADLINES[Priority.P0].submitted
    assert state.submitted_due_priority == "P0"


def test_a_referral_joining_a_review_makes_it_ready_and_a_late_review_is_a_breach() -> None:
    state, _ = opened(Facts(Priority.P1, "review"), now=DETECTED)
    late = DETECTED + timedelta(hours=5)
    moved = cases.join(
        state, [Facts(Priority.P1, "refer", late)], ["coercion"], opened=False, now=late
    )
    assert (moved.previous, state.status) == (CaseStatus.REVIEW, CaseStatus.READY)
    assert moved.note == "a referral joined the case under review"
    assert moved.breaches == ((Priority.P1, Stage.REVIEW),)
    assert state.review_breached_at == late
    again = cases.join(
        state, [Facts(Priority.P1, "refer", late)], ["coercion"], opened=False, now=late
    )
    assert again.breaches == (), "a breach is marked once"


def test_a_case_ready_after_its_deadline_is_a_ready_breach_at_once() -> None:
    late = DETECTED + timedelta(minutes=2)
    _, moved = opened(Facts(Priority.P0, "refer"), now=late)
    assert moved.breaches == ((Priority.P0, Stage.READY),)


def test_submitting_names_a_version_and_a_late_submission_is_a_breach() -> None:
    state, _ = opened(Facts(Priority.P1, "refer"), now=DETECTED)
    cases.join(state, [Facts(Priority.P1, "refer")], ["coercion"], opened=False, now=DETECTED)
    with pytest.raises(InvalidRequest, match=r"one of 1\.\.2"):
        cases.move(
            state, CaseStatus.SUBMITTED, now=DETECTED, external_reference="K", packet_version=3
        )
    late = DETECTED + timedelta(hours=25)
    moved = cases.move(
        state, CaseStatus.SUBMITTED, now=late, external_reference="KNT-1", packet_version=1
    )
    assert moved.breaches == ((Priority.P1, Stage.SUBMITTED),)
    assert (state.status, state.submitted_version, state.due_at) == (CaseStatus.SUBMITTED, 1, None)
    assert cases.needs_supplement(state), "version 2 was not sent"
    again = cases.resend_later_flags(
        state, [Facts(Priority.P1, "refer")], deadlines=DEFAULT_DEADLINES, now=late
    )
    assert (state.status, state.packet_version, again.new_version) == (CaseStatus.READY, 3, True)
    assert state.ready_due_at is None, "the flags were ready on time in version 2"
    assert state.submitted_breached_at is None, "a new round starts unbreached"


def test_new_evidence_on_a_sent_case_starts_a_supplement_round() -> None:
    state, _ = opened(Facts(Priority.P1, "refer"), now=DETECTED)
    cases.move(state, CaseStatus.SUBMITTED, now=DETECTED, external_reference="K", packet_version=1)
    later = DETECTED + timedelta(hours=1)
    moved = cases.join(
        state, [Facts(Priority.P3, "refer", later)], ["iioc"], opened=False, now=later
    )
    assert (moved.previous, state.status, state.packet_version) == (
        CaseStatus.SUBMITTED,
        CaseStatus.READY,
        2,
    )
    assert state.submitted_due_at == later + DEFAULT_DEADLINES[Priority.P3].submitted
    assert state.submitted_due_priority == "P3", "the supplement follows its own flags' clock"


def test_a_person_cannot_make_a_move_the_lifecycle_forbids() -> None:
    state, _ = opened(Facts(Priority.P1, "refer"), now=DETECTED)
    with pytest.raises(IllegalTransition):
        cases.move(state, CaseStatus.CLOSED, now=DETECTED)
    assert state.status is CaseStatus.READY, "a refused move changes nothing"
