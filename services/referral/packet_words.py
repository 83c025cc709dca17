"""People's words for what a packet says: criteria, findings, ages, sources, priorities, times.

A packet is read by a police call handler, not by this service: "coercion or blackmail
(sextortion)", never `coercion`; "aged 13 to 15", never `13_15`. Pure.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.flag import AgeBand, SignalCategory
from schemas.packets import TimelineEntry
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


@dataclass(frozen=True, slots=True)
class Grounds:
    """What a rule matched: the categories of its signals, and whether a child was in immediate
    danger. A criterion is worded from these, never from every signal of the case."""

    categories: frozenset[SignalCategory] = frozenset()
    danger: bool = False

    def __or__(self, other: "Grounds") -> "Grounds":
        return Grounds(self.categories | other.categories, self.danger or other.danger)


_CATEGORY = re.compile(r"(?:^|\.)category=([a-z_]+)$")
_FIRED = "fired="
_CATEGORIES = frozenset(category.value for category in SignalCategory)


def grounds(rule: FiredRule, rules: Sequence[FiredRule] = ()) -> Grounds:
    """A rule's grounds, from its own conditions (`signals[0].category=self_harm`,
    `signals[0].immediate_danger=true`); an escalation's (`fired=coercion-high`) are those of
    the rules it names, found among `rules`."""
    found = Grounds()
    for condition in rule.matched:
        if condition.startswith(_FIRED):
            named = condition.removeprefix(_FIRED)
            found |= next(
                (grounds(r) for r in rules if r.rule_id == named and r.rule_id != rule.rule_id),
                Grounds(),
            )
        elif condition.endswith("immediate_danger=true"):
            found = Grounds(found.categories, danger=True)
        elif (match := _CATEGORY.search(condition)) and match[1] in _CATEGORIES:
            found |= Grounds(frozenset({SignalCategory(match[1])}))
    return found


DANGER = "a child in immediate danger"


def criterion(value: Criterion, found: Grounds | None = None, *, held: bool = False) -> str:
    """A criterion in words. A child's safety says what it came from: a child in immediate
    danger, self-harm or suicide risk, or both; self-harm never stands in for immediate danger.
    `held`: the self-harm part came only from rules held for a person's review."""
    if value is not Criterion.SAFETY or found is None:
        return CRITERIA[value]
    harm = SignalCategory.SELF_HARM in found.categories
    if found.danger:
        head = f"{DANGER} (a risk to a child's safety)"
    elif harm and SignalCategory.SAFETY not in found.categories:
        return SELF_HARM
    else:
        head = CRITERIA[value]
    if not harm:
        return head
    return f"{head}, {SELF_HARM} included" + (f" ({HELD})" if held else "")


HELD = "held for a person's review by the policy"
BREAKER_HELD = "held for a person's review: the flood breaker was open"
HELD_BY_BREAKER = (
    "held for a person's review: its source was sending far more flags than usual (the flood "
    "breaker was open)"
)


def decision(entry: TimelineEntry) -> str:
    """Whether a flag was referred, or held for a person's review (and confirmed by one)."""
    if entry.decision == "refer":
        return "referred"
    held = HELD_BY_BREAKER if entry.held == "flood_breaker" else HELD
    if entry.confirmed_at:
        return f"{held}, confirmed by a person at {at(entry.confirmed_at)}"
    return held


def _review_note(value: Criterion, timeline: Sequence[TimelineEntry]) -> str | None:
    """For a criterion only flags held for review established: held, or confirmed and when.
    None when a referral carries it, or when no flag listed carries it."""
    carrying = [entry for entry in timeline if value in entry.criteria]
    if not carrying or any(entry.decision == "refer" for entry in carrying):
        return None
    confirmed = [entry.confirmed_at for entry in carrying if entry.confirmed_at]
    if len(confirmed) == len(carrying):
        return f"held for review by the policy, confirmed by a person at {at(max(confirmed))}"
    if all(entry.held == "flood_breaker" for entry in carrying):
        return BREAKER_HELD  # short: it is part of the summary, which packets bound
    return HELD


def criteria_words(
    criteria: Iterable[Criterion], rules: Sequence[FiredRule], timeline: Sequence[TimelineEntry]
) -> list[str]:
    """Each criterion of a case in words, from the rules that established it, marked when only
    flags held for a person's review established it."""
    held = any(entry.decision == "review" and not entry.confirmed_at for entry in timeline)
    words = []
    for value in criteria:
        establishing = [rule for rule in rules if value in rule.criteria]
        every = Grounds()
        referred = Grounds()
        for rule in establishing:
            found = grounds(rule, rules)
            every |= found
            if rule.outcome == "refer":
                referred |= found
        harm_held = (
            held
            and SignalCategory.SELF_HARM in every.categories
            and SignalCategory.SELF_HARM not in referred.categories
            and (referred.danger or bool(referred.categories))
        )
        text = criterion(value, every if establishing else None, held=harm_held)
        note = _review_note(value, timeline)
        words.append(f"{text} ({note})" if note else text)
    return words


def escalated(entry: TimelineEntry, rules: Sequence[FiredRule]) -> str:
    """An escalation across a case's flags in words: `sextortion-with-self-harm, from flags A
    and B (coercion or blackmail with self-harm or suicide risk)`."""
    rule = next((r for r in rules if r.rule_id == entry.escalation), None)
    named = [c.removeprefix(_FIRED) for c in rule.matched if c.startswith(_FIRED)] if rule else []
    found = [grounds(r) for name in named for r in rules if r.rule_id == name]
    what = [
        DANGER if g.danger else listed(FINDINGS[c] for c in sorted(g.categories)) for g in found
    ]
    what = [w for w in dict.fromkeys(what) if w]
    because = " with ".join(what) if what else listed(criterion(c) for c in sorted(entry.criteria))
    flags = listed(str(flag_id) for flag_id in entry.escalated_from) or str(entry.flag_id)
    sources = "flag" if len(entry.escalated_from) == 1 else "flags"
    return f"{entry.escalation}, from {sources} {flags} ({because})"


def raising(timeline: Sequence[TimelineEntry], priority: Priority) -> list[TimelineEntry]:
    """The escalations that set a case's priority: none of its flags has it on its own."""
    if any(e.priority is priority for e in timeline if e.escalation is None):
        return []
    return [e for e in timeline if e.escalation is not None and e.priority is priority]


def capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def number(dial: str, also: str | None = None) -> str:
    """An emergency number in words: `911`, or `110 (police; 112 also works)`."""
    return f"{dial} (police; {also} also works)" if also else dial


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
