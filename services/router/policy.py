"""The reporting policy: rules as data, evaluated by a pure function from a flag to a verdict.

A rule matches a single signal of a flag. All signals are evaluated together: the verdict lists
every rule that fired, the union of their criteria, the most urgent priority, and refer over
review. Shadow rules are evaluated and listed, but never change the verdict.
"""

from dataclasses import dataclass, field
from typing import Literal

from schemas.flag import ModerationFlag, Signal, SignalCategory, SourceKind
from schemas.referral import Criterion, FiredRule, Outcome, Priority

CATEGORY_CRITERION: dict[SignalCategory, Criterion | None] = {
    SignalCategory.GROOMING: Criterion.GROOMING,
    SignalCategory.COERCION: Criterion.COERCION,
    SignalCategory.IIOC: Criterion.IIOC,
    SignalCategory.SAFETY: Criterion.SAFETY,
    SignalCategory.SELF_HARM: Criterion.SAFETY,
    SignalCategory.OTHER: None,
}

_REPORTABLE = frozenset(c for c, criterion in CATEGORY_CRITERION.items() if criterion is not None)
_AUTOMATED = frozenset({SourceKind.HASH_MATCH, SourceKind.CLASSIFIER, SourceKind.MODERATOR})


@dataclass(frozen=True, slots=True)
class Rule:
    """One reporting rule. Conditions left as None do not constrain."""

    rule_id: str
    outcome: Literal["refer", "review"]
    priority: Priority
    categories: frozenset[SignalCategory] = _REPORTABLE
    source_kinds: frozenset[SourceKind] | None = None
    min_confidence: float = 0.0
    below_confidence: float | None = None
    hash_match: Literal["exact", "perceptual"] | None = None
    immediate_danger: bool | None = None
    criteria: tuple[Criterion, ...] = ()
    """The criteria this rule establishes; empty means the matched signal's own."""
    mode: Literal["active", "shadow"] = "active"

    def match(self, flag: ModerationFlag, index: int, signal: Signal) -> list[str] | None:
        """The conditions that held for this signal, or None if any did not."""
        held = [f"signals[{index}].category={signal.category.value}"]
        if signal.category not in self.categories:
            return None
        if self.source_kinds is not None:
            if flag.source.kind not in self.source_kinds:
                return None
            held.append(f"source.kind={flag.source.kind.value}")
        if self.immediate_danger is not None:
            if signal.immediate_danger is not self.immediate_danger:
                return None
            held.append(f"signals[{index}].immediate_danger={str(signal.immediate_danger).lower()}")
        if self.hash_match is not None:
            if signal.hash_match is None or signal.hash_match.match != self.hash_match:
                return None
            held.append(f"signals[{index}].hash_match.match={self.hash_match}")
        if self.min_confidence > 0.0:
            if signal.confidence < self.min_confidence:
                return None
            held.append(f"signals[{index}].confidence>={self.min_confidence}")
        if self.below_confidence is not None:
            if signal.confidence >= self.below_confidence:
                return None
            held.append(f"signals[{index}].confidence<{self.below_confidence}")
        return held

    def criteria_for(self, signal: Signal) -> tuple[Criterion, ...]:
        if self.criteria:
            return self.criteria
        own = CATEGORY_CRITERION[signal.category]
        return (own,) if own is not None else (Criterion.SAFETY,)


@dataclass(frozen=True, slots=True)
class Policy:
    version: str
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the policy says about one flag."""

    outcome: Outcome
    priority: Priority | None
    criteria: tuple[Criterion, ...]
    immediate_danger: bool
    fired: tuple[FiredRule, ...] = field(default=())

    @property
    def active(self) -> tuple[FiredRule, ...]:
        return tuple(rule for rule in self.fired if rule.mode == "active")


_PRIORITY_ORDER = list(Priority)


def evaluate(policy: Policy, flag: ModerationFlag) -> Verdict:
    """Evaluate every rule against every signal of `flag` and combine what fired."""
    fired: list[FiredRule] = []
    for rule in policy.rules:
        matched: list[str] = []
        criteria: list[Criterion] = []
        for index, signal in enumerate(flag.signals):
            held = rule.match(flag, index, signal)
            if held is not None:
                matched.extend(held)
                criteria.extend(c for c in rule.criteria_for(signal) if c not in criteria)
        if matched:
            fired.append(
                FiredRule(
                    rule_id=rule.rule_id,
                    mode=rule.mode,
                    outcome=rule.outcome,
                    priority=rule.priority,
                    criteria=sorted(criteria),
                    matched=matched[:16],
                )
            )
    return _combine(flag, tuple(fired))


def _combine(flag: ModerationFlag, fired: tuple[FiredRule, ...]) -> Verdict:
    danger = any(signal.immediate_danger for signal in flag.signals)
    active = [rule for rule in fired if rule.mode == "active"]
    if not active:
        return Verdict(Outcome.NONE, None, (), danger, fired)
    outcome = Outcome.REFER if any(r.outcome == "refer" for r in active) else Outcome.REVIEW
    priority = min((r.priority for r in active), key=_PRIORITY_ORDER.index)
    criteria = tuple(sorted({c for r in active for c in r.criteria}))
    return Verdict(outcome, priority, criteria, danger, fired)


def default_policy() -> Policy:
    """The first reporting policy. Each rule says why it is there."""
    return Policy(version="2026-11-26.1", rules=DEFAULT_RULES)


DEFAULT_RULES: tuple[Rule, ...] = (
    # A child in immediate danger: a person calls 999 now, whatever else holds and whoever saw it.
    Rule(
        "immediate-danger",
        "refer",
        Priority.P0,
        categories=frozenset(SignalCategory),
        immediate_danger=True,
    ),
    # An exact match against a known-IIOC hash list is the image itself: report it.
    Rule(
        "iioc-hash-exact",
        "refer",
        Priority.P1,
        categories=frozenset({SignalCategory.IIOC}),
        hash_match="exact",
    ),
    # A perceptual match may be a near-duplicate or a false positive: a person confirms first.
    Rule(
        "iioc-hash-perceptual",
        "review",
        Priority.P2,
        categories=frozenset({SignalCategory.IIOC}),
        hash_match="perceptual",
    ),
    # A trained moderator who confirms an indecent image has already done the review.
    Rule(
        "iioc-moderator",
        "refer",
        Priority.P1,
        categories=frozenset({SignalCategory.IIOC}),
        source_kinds=frozenset({SourceKind.MODERATOR}),
    ),
    # A classifier alone finding new IIOC is strong but unconfirmed: review quickly.
    Rule(
        "iioc-classifier",
        "review",
        Priority.P2,
        categories=frozenset({SignalCategory.IIOC}),
        source_kinds=frozenset({SourceKind.CLASSIFIER}),
        min_confidence=0.7,
    ),
    # Coercion or blackmail of a child (sextortion) escalates fast: refer at P1.
    Rule(
        "coercion-high",
        "refer",
        Priority.P1,
        categories=frozenset({SignalCategory.COERCION}),
        source_kinds=_AUTOMATED,
        min_confidence=0.8,
    ),
    Rule(
        "coercion-medium",
        "review",
        Priority.P2,
        categories=frozenset({SignalCategory.COERCION}),
        source_kinds=_AUTOMATED,
        min_confidence=0.5,
        below_confidence=0.8,
    ),
    # Grooming: a high-confidence classifier refers; a middling one goes to a person.
    Rule(
        "grooming-high",
        "refer",
        Priority.P2,
        categories=frozenset({SignalCategory.GROOMING}),
        source_kinds=_AUTOMATED,
        min_confidence=0.9,
    ),
    Rule(
        "grooming-medium",
        "review",
        Priority.P3,
        categories=frozenset({SignalCategory.GROOMING}),
        source_kinds=_AUTOMATED,
        min_confidence=0.6,
        below_confidence=0.9,
    ),
    # A child's self-harm or suicide risk is a safety referral, urgent.
    Rule(
        "self-harm-high",
        "refer",
        Priority.P1,
        categories=frozenset({SignalCategory.SELF_HARM}),
        source_kinds=_AUTOMATED,
        min_confidence=0.8,
    ),
    Rule(
        "self-harm-medium",
        "review",
        Priority.P2,
        categories=frozenset({SignalCategory.SELF_HARM}),
        source_kinds=_AUTOMATED,
        min_confidence=0.5,
        below_confidence=0.8,
    ),
    # Other grounds to fear for a child's safety from crime or serious harm.
    Rule(
        "safety-high",
        "refer",
        Priority.P2,
        categories=frozenset({SignalCategory.SAFETY}),
        source_kinds=_AUTOMATED,
        min_confidence=0.8,
    ),
    Rule(
        "safety-medium",
        "review",
        Priority.P3,
        categories=frozenset({SignalCategory.SAFETY}),
        source_kinds=_AUTOMATED,
        min_confidence=0.5,
        below_confidence=0.8,
    ),
    # A user report alone is a lead, not a finding: a person reviews it.
    Rule("user-report", "review", Priority.P2, source_kinds=frozenset({SourceKind.USER_REPORT})),
)
