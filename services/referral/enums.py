from enum import StrEnum


class CaseStatus(StrEnum):
    """A case's lifecycle: review → ready → submitted → acknowledged → closed, or dismissed."""

    REVIEW = "review"
    READY = "ready"
    SUBMITTED = "submitted"
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"
    DISMISSED = "dismissed"


OPEN_STATUSES = (
    CaseStatus.REVIEW,
    CaseStatus.READY,
    CaseStatus.SUBMITTED,
    CaseStatus.ACKNOWLEDGED,
)
