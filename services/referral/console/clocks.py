"""A case's status and clocks in words, for people: "ready: due in 42 s", "review: 3 min late".
Pure: the time is passed in."""

from datetime import datetime, timedelta

from services.referral.enums import CaseStatus

_UNITS = (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1))

WAITING_FOR = {
    CaseStatus.REVIEW: "a person to approve or dismiss it",
    CaseStatus.READY: "a person to send the packet and record the receiver's reference",
}


def duration(span: timedelta) -> str:
    """A length of time in its two largest units: `42 s`, `3 min 5 s`, `2 h 10 min`, `3 d 4 h`."""
    seconds = max(0, int(span.total_seconds()))
    parts: list[str] = []
    for unit, size in _UNITS:
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def late_by(due_at: datetime | None, now: datetime) -> timedelta | None:
    """How late the waiting stage is; None when it is not (yet) late, or nothing is due."""
    if due_at is None or due_at > now:
        return None
    return now - due_at


def in_words(status: CaseStatus, due_at: datetime | None, now: datetime) -> str:
    """`ready: due in 42 s`; `review: 3 min 5 s late`; `submitted: nothing due from us`."""
    if due_at is None:
        return f"{status.value}: nothing due from us"
    late = late_by(due_at, now)
    if late is not None:
        return f"{status.value}: {duration(late)} late"
    return f"{status.value}: due in {duration(due_at - now)}"
