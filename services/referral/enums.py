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


class Stage(StrEnum):
    """A stage with an SLA clock: a review decided, a packet ready, a packet submitted."""

    REVIEW = "review"
    READY = "ready"
    SUBMITTED = "submitted"
