"""People's words for what a packet says: criteria, findings, ages, sources, priorities, times.

A packet is read by a police call handler, not by this service: "coercion or blackmail
(sextortion)", never `coercion`; "aged 13 to 15", never `13_15`. Pure.
"""

from collections.abc import Iterable
from datetime import UTC, datetime

from schemas.flag import AgeBand, SignalCategory
from schemas.referral import Criterion, FiredRule, Priority

CRITERIA = {
    Criterion.GROOMING: "grooming",
    Criterion.COERCION: "coercion or blackmail (sextortion)",
    Criterion.IIOC: "indecent images of children",
    Criterion.SAFETY: "a risk to a child's safety (crime or serious harm)",
}
"""The UK reporting criteria."""

SELF_HARM = "self-harm or suicide risk"

FINDINGS = {
    SignalCategory.GROOMING: "grooming",
    SignalCategory.COERCION: "coercion or blackmail",
    SignalCategory.IIOC: "indecent image of a child",
    SignalCategory.SAFETY: "a risk to a child's safety",
    SignalCategory.SELF_HARM: SELF_HARM,
    SignalCategory.OTHER: "other",
}
"""A signal's category, as what the source found."""

AGES = {
    AgeBand.UNDER_13: "aged under 13",
    AgeBand.AGE_13_15: "aged 13 to 15",
    AgeBand.AGE_16_17: "aged 16 or 17",
    AgeBand.UNKNOWN: "age unknown",
}

SOURCE_KINDS = {
    "hash_match": "a hash match",
    "classifier": "a classifier",
    "user_report": "a user report",
    "moderator": "a moderator",
}

PRIORITIES = {
    Priority.P0: "a child may be in immediate danger",
    Priority.P1: "risk of serious harm, report immediately",
    Priority.P2: "report as soon as reasonably practicable",
    Priority.P3: "report without undue delay",
}


def at(value: datetime) -> str:
    """The one time format of a packet's words: `2026-11-26 09:00:00 UTC`."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def label(value: str) -> str:
    """A source's machine label in words: `sextortion_threat` → "sextortion threat"."""
    for mark in "_.:-":
        value = value.replace(mark, " ")
    return " ".join(value.split())


def source_kind(value: str) -> str:
    return SOURCE_KINDS.get(value, label(value))


def criterion(value: Criterion, findings: Iterable[SignalCategory] = ()) -> str:
    """A criterion in words; a child's safety names self-harm when that is what was found."""
    found = set(findings)
    if value is Criterion.SAFETY and SignalCategory.SELF_HARM in found:
        if SignalCategory.SAFETY in found:
            return f"a risk to a child's safety, {SELF_HARM} included"
        return SELF_HARM
    return CRITERIA[value]


def listed(words: Iterable[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    items = list(words)
    if len(items) < 2:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def counted(number: int, noun: str) -> str:
    """`1 flag`, `2 flags`."""
    return f"{number} {noun}" + ("" if number == 1 else "s")


def referrals_first(rules: Iterable[FiredRule]) -> list[FiredRule]:
    """Rules that referred before rules that asked for a review, the most urgent first; the
    order they fired in otherwise."""
    order = list(Priority)
    return sorted(rules, key=lambda r: (r.outcome != "refer", order.index(r.priority)))
