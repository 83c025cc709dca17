"""The case lifecycle as data: which transitions are legal, for whom, and what each requires.

review → ready → submitted → acknowledged → closed, and review → dismissed. People move cases
along that path; the system makes two moves of its own: a referral joining a case under review
makes it ready, and new evidence on a case already sent makes it ready again, with a
supplementary packet to send. Pure: no I/O, no clock.
"""

from services.referral.enums import CaseStatus
from services.referral.exceptions import IllegalTransition, InvalidRequest

SYSTEM_ACTOR = "system"

PERSON_TRANSITIONS: dict[CaseStatus, tuple[CaseStatus, ...]] = {
    CaseStatus.REVIEW: (CaseStatus.READY, CaseStatus.DISMISSED),
    CaseStatus.READY: (CaseStatus.SUBMITTED,),
    CaseStatus.SUBMITTED: (CaseStatus.ACKNOWLEDGED,),
    CaseStatus.ACKNOWLEDGED: (CaseStatus.CLOSED,),
    CaseStatus.CLOSED: (),
    CaseStatus.DISMISSED: (),
}

SYSTEM_TRANSITIONS: dict[tuple[CaseStatus, CaseStatus], str] = {
    (CaseStatus.REVIEW, CaseStatus.READY): "a referral joined the case under review",
    (CaseStatus.SUBMITTED, CaseStatus.READY): "new flags after submission: supplementary packet",
    (CaseStatus.ACKNOWLEDGED, CaseStatus.READY): "new flags after submission: supplementary packet",
}

TAKES_EXTERNAL_REFERENCE = (CaseStatus.SUBMITTED, CaseStatus.ACKNOWLEDGED)


def check_transition(
    current: CaseStatus,
    to: CaseStatus,
    *,
    by_system: bool = False,
    external_reference: str | None = None,
    note: str | None = None,
    packet_version: int | None = None,
) -> None:
    """Raise unless the move is legal and carries what it requires."""
    if by_system:
        if (current, to) not in SYSTEM_TRANSITIONS:
            raise IllegalTransition(
                f"the system cannot move a case from {current} to {to}", current, ()
            )
        return
    allowed = PERSON_TRANSITIONS[current]
    if to not in allowed:
        if not allowed:
            raise IllegalTransition(
                f"the case is {current}, a final state: it cannot move to {to}", current, allowed
            )
        raise IllegalTransition(
            f"the case is {current}; from {current} it can move only to "
            + " or ".join(str(s) for s in allowed),
            current,
            allowed,
        )
    if to is CaseStatus.SUBMITTED and not external_reference:
        raise InvalidRequest(
            "moving a case to submitted requires external_reference: the police incident "
            "number or the IWF report reference"
        )
    if to is CaseStatus.SUBMITTED and packet_version is None:
        raise InvalidRequest(
            "moving a case to submitted requires packet_version: the packet version that was sent"
        )
    if packet_version is not None and to is not CaseStatus.SUBMITTED:
        raise InvalidRequest("packet_version is recorded only when moving to submitted")
    if external_reference and to not in TAKES_EXTERNAL_REFERENCE:
        raise InvalidRequest(
            "external_reference is recorded only when moving to submitted or acknowledged"
        )
    if to is CaseStatus.DISMISSED and not (note and note.strip()):
        raise InvalidRequest("dismissing a case requires a note giving the reason")
