"""The reporting policy: rules as data, evaluated by a pure function from a flag to a verdict.

The rules come from a YAML file (`data/policy.yaml` by default, `CSAE_POLICY_FILE` otherwise; the
format is in `policy_file.py`). A rule fires when its flag conditions hold and one signal or more
meets its signal conditions; an escalation fires when rules it names fired together. All signals
of a flag are evaluated together, and the verdict lists every rule that fired with the conditions
that held, the union of their criteria, the most urgent priority, and refer over review; a refer
carries only the criteria its refer rules established (`Verdict.referred`). Shadow rules are
evaluated and listed, but never change the verdict.

Evaluation works on plain dataclasses; the pydantic `FiredRule` is built once, when the decision
is (`Fired.contract`).
"""

import itertools
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal, NamedTuple, TypeVar

from schemas.flag import AgeBand, HashMatch, ModerationFlag, Signal, SignalCategory, SourceKind
from schemas.referral import Criterion, FiredRule, Outcome, Priority
from services.domain.policy_file import (
    EscalationSpec,
    PolicyDocument,
    PolicyError,
    RuleSpec,
    read_policy_document,
)

__all__ = ["Policy", "PolicyError", "Rule", "Verdict", "default_policy", "evaluate", "load_policy"]

CATEGORY_CRITERION: dict[SignalCategory, Criterion | None] = {
    SignalCategory.GROOMING: Criterion.GROOMING,
    SignalCategory.COERCION: Criterion.COERCION,
    SignalCategory.IIOC: Criterion.IIOC,
    SignalCategory.SAFETY: Criterion.SAFETY,
    SignalCategory.SELF_HARM: Criterion.SAFETY,
    SignalCategory.OTHER: None,
}
MAX_MATCHED = 16
"""`FiredRule.matched` holds at most 16 conditions."""
VERDICTS_KEPT = 1024

_HASH_KINDS: tuple[str | None, ...] = (None, "exact", "perceptual")
_Key = tuple[SourceKind, SignalCategory, bool, str | None]
Mode = Literal["active", "shadow"]
Kind = Literal["refer", "review"]
T = TypeVar("T")
_RANK = {priority: rank for rank, priority in enumerate(Priority)}


def _known(values: list[T] | None) -> frozenset[T] | None:
    """The values as a set, or None (no constraint) when there are none."""
    return frozenset(values) if values is not None else None


def _text(value: bool) -> str:
    return "true" if value else "false"


@dataclass(frozen=True, slots=True)
class Rule:
    """One reporting rule. A condition left as None does not constrain."""

    rule_id: str
    mode: Mode
    outcome: Kind
    priority: Priority
    criteria: frozenset[Criterion] = frozenset()
    """Criteria the rule establishes besides the matched signal's own."""
    categories: frozenset[SignalCategory] | None = None
    source_kinds: frozenset[SourceKind] | None = None
    labels: frozenset[str] | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    hash_match: str | None = None
    hash_lists: frozenset[str] | None = None
    max_distance: int | None = None
    immediate_danger: bool | None = None
    shared_externally: bool | None = None
    age_bands: frozenset[AgeBand] | None = None
    countries: frozenset[str] | None = None
    _fixed: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """The signal conditions whose words do not depend on the signal (made once)."""
    _established: dict[SignalCategory, frozenset[Criterion]] = field(
        init=False, repr=False, compare=False
    )
    """The criteria the rule establishes for a signal of each category (made once)."""

    def __post_init__(self) -> None:
        fixed = [
            f"immediate_danger={_text(self.immediate_danger)}"
            if self.immediate_danger is not None
            else "",
            f"hash_match.match={self.hash_match}" if self.hash_match is not None else "",
            f"hash_match.distance<={self.max_distance}" if self.max_distance is not None else "",
            f"shared_externally={_text(self.shared_externally)}"
            if self.shared_externally is not None
            else "",
            f"confidence>={self.min_confidence}" if self.min_confidence is not None else "",
            f"confidence<{self.max_confidence}" if self.max_confidence is not None else "",
        ]
        object.__setattr__(self, "_fixed", tuple(condition for condition in fixed if condition))
        object.__setattr__(self, "_established", {c: self._criteria_for(c) for c in SignalCategory})

    @classmethod
    def from_spec(cls, spec: RuleSpec) -> "Rule":
        when, then = spec.when, spec.then
        return cls(
            rule_id=spec.id,
            mode=spec.mode,
            outcome=then.outcome,
            priority=then.priority,
            criteria=frozenset(then.criteria),
            categories=_known(when.category),
            source_kinds=_known(when.source_kind),
            labels=_known(when.label),
            min_confidence=when.min_confidence,
            max_confidence=when.max_confidence,
            hash_match=when.hash_match,
            hash_lists=_known(when.hash_list),
            max_distance=when.max_distance,
            immediate_danger=when.immediate_danger,
            shared_externally=when.shared_externally,
            age_bands=_known(when.child_age_band),
            countries=_known(when.platform_country),
        )

    def may_fire(
        self, kind: SourceKind, category: SignalCategory, danger: bool, hash_kind: str | None
    ) -> bool:
        """Whether the rule may fire for a signal with these traits (to index the rules by)."""
        return (
            (self.source_kinds is None or kind in self.source_kinds)
            and (self.categories is None or category in self.categories)
            and (self.immediate_danger is None or self.immediate_danger is danger)
            and (self.hash_match is None or self.hash_match == hash_kind)
            and (hash_kind is not None or (self.hash_lists is None and self.max_distance is None))
        )

    def match_flag(self, flag: ModerationFlag, source_held: str) -> list[str] | None:
        """The flag conditions that held, or None if one did not. `source_held` is the source
        condition in words, made once per flag."""
        held: list[str] = []
        if self.source_kinds is not None:
            if flag.source.kind not in self.source_kinds:
                return None
            held.append(source_held)
        if self.age_bands is not None:
            band = flag.child.age_band if flag.child else None
            if band is None or band not in self.age_bands:
                return None
            held.append(f"child.age_band={band}")
        if self.countries is not None:
            if flag.platform.country not in self.countries:
                return None
            held.append(f"platform.country={flag.platform.country}")
        return held

    def match_signal(self, index: int, signal: Signal) -> list[str] | None:
        """The signal conditions that held for `signal`, or None if one did not."""
        if self.categories is not None and signal.category not in self.categories:
            return None
        if self.immediate_danger is not None and signal.immediate_danger is not (
            self.immediate_danger
        ):
            return None
        if self.min_confidence is not None and signal.confidence < self.min_confidence:
            return None
        if self.max_confidence is not None and signal.confidence >= self.max_confidence:
            return None
        if self.labels is not None and signal.label not in self.labels:
            return None
        if self.shared_externally is not None and (
            bool(signal.shared_externally) is not self.shared_externally
        ):
            return None
        hash_match = signal.hash_match
        if (
            self.hash_match is not None
            or self.hash_lists is not None
            or self.max_distance is not None
        ):
            if hash_match is None:
                return None
            if self.hash_match is not None and hash_match.match != self.hash_match:
                return None
            if self.hash_lists is not None and hash_match.list not in self.hash_lists:
                return None
            if self.max_distance is not None and (
                hash_match.distance is None or hash_match.distance > self.max_distance
            ):
                return None
        return self._held(f"signals[{index}].", signal)

    def _held(self, at: str, signal: Signal) -> list[str]:
        """The signal conditions of this rule, in words, once they are known to hold."""
        held = [f"{at}category={signal.category}"] if self.categories is not None else []
        if self.labels is not None:
            held.append(f"{at}label={signal.label}")
        if self.hash_lists is not None and signal.hash_match is not None:
            held.append(f"{at}hash_match.list={signal.hash_match.list}")
        held.extend([at + condition for condition in self._fixed])
        return held

    def criteria_for(self, signal: Signal) -> frozenset[Criterion]:
        """The criteria the rule establishes for `signal`: its own, and the signal's category's
        only when the rule looks at the category. The danger floor looks at danger alone, so it
        establishes `safety`, never `iioc` (which only a hash match or a person establishes)."""
        return self._established[signal.category]

    def _criteria_for(self, category: SignalCategory) -> frozenset[Criterion]:
        if self.categories is None:
            return self.criteria
        own = CATEGORY_CRITERION[category]
        return self.criteria | {own} if own is not None else self.criteria


@dataclass(frozen=True, slots=True)
class Escalation:
    """Fires when, for each line of `requires`, one of its rules fired for the flag."""

    rule_id: str
    mode: Mode
    outcome: Kind
    priority: Priority
    requires: tuple[tuple[str, ...], ...]
    criteria: frozenset[Criterion] = frozenset()

    @classmethod
    def from_spec(cls, spec: EscalationSpec) -> "Escalation":
        return cls(
            rule_id=spec.id,
            mode=spec.mode,
            outcome=spec.then.outcome,
            priority=spec.then.priority,
            requires=tuple(tuple(line) for line in spec.requires),
            criteria=frozenset(spec.then.criteria),
        )


@dataclass(frozen=True, slots=True)
class Policy:
    version: str
    rules: tuple[Rule, ...]
    escalations: tuple[Escalation, ...] = ()
    escalated_from: frozenset[str] = field(init=False, repr=False, compare=False)
    """The rules some escalation requires: when none fired, escalations are not looked at."""
    _candidates: dict[_Key, tuple[tuple[int, Rule], ...]] = field(
        init=False, repr=False, compare=False
    )
    """For each source kind, category, danger and hash-match kind, the rules that may fire."""
    verdicts: "dict[tuple[tuple[Fired, ...], bool], Verdict]" = field(
        init=False, repr=False, compare=False
    )
    """Verdicts made so far, by the rules that fired and danger (see `_verdict`)."""
    by_traits: "dict[_Traits, Verdict]" = field(init=False, repr=False, compare=False)
    """Verdicts made so far, by what the rules can tell of the flag (see `traits`)."""
    _confidence_cuts: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _distance_cuts: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _labels: frozenset[str] = field(init=False, repr=False, compare=False)
    _hash_lists: frozenset[str] = field(init=False, repr=False, compare=False)
    _countries: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdicts", {})
        object.__setattr__(self, "by_traits", {})
        rules = self.rules
        cuts = {r.min_confidence for r in rules} | {r.max_confidence for r in rules}
        object.__setattr__(
            self, "_confidence_cuts", tuple(sorted(c for c in cuts if c is not None))
        )
        distances = {r.max_distance for r in rules if r.max_distance is not None}
        object.__setattr__(self, "_distance_cuts", tuple(sorted(distances)))
        object.__setattr__(self, "_labels", frozenset().union(*(r.labels or () for r in rules)))
        lists = frozenset().union(*(r.hash_lists or () for r in rules))
        object.__setattr__(self, "_hash_lists", lists)
        countries = frozenset().union(*(r.countries or () for r in rules))
        object.__setattr__(self, "_countries", countries)
        required = {rule_id for e in self.escalations for line in e.requires for rule_id in line}
        object.__setattr__(self, "escalated_from", frozenset(required))
        candidates = {
            key: tuple((n, rule) for n, rule in enumerate(self.rules) if rule.may_fire(*key))
            for key in itertools.product(SourceKind, SignalCategory, (False, True), _HASH_KINDS)
        }
        object.__setattr__(self, "_candidates", candidates)

    @classmethod
    def from_document(cls, document: PolicyDocument) -> "Policy":
        return cls(
            version=document.version,
            rules=tuple(Rule.from_spec(spec) for spec in document.rules),
            escalations=tuple(Escalation.from_spec(spec) for spec in document.escalations),
        )

    def candidates(self, kind: SourceKind, signal: Signal) -> tuple[tuple[int, Rule], ...]:
        """The rules (and their positions) that may fire for `signal` from a `kind` source."""
        hash_kind = signal.hash_match.match if signal.hash_match is not None else None
        return self._candidates[kind, signal.category, signal.immediate_danger, hash_kind]


class Fired(NamedTuple):
    """A rule that fired for a flag, and the conditions that held (a tuple: cheap to make)."""

    rule_id: str
    mode: Mode
    outcome: Kind
    priority: Priority
    criteria: tuple[Criterion, ...]
    matched: tuple[str, ...]

    def contract(self) -> FiredRule:
        """The contract of a fired rule. Built from a validated policy and flag, so not
        validated again (the consumers validate every message they read; the tests check
        routing's output)."""
        return FiredRule.model_construct(
            rule_id=self.rule_id,
            mode=self.mode,
            outcome=self.outcome,
            priority=self.priority,
            criteria=list(self.criteria),
            matched=list(self.matched),
        )


class Verdict(NamedTuple):
    """What the policy says about one flag."""

    outcome: Outcome
    priority: Priority | None
    criteria: tuple[Criterion, ...]
    """Every criterion an active rule established, review rules included (the decision's)."""
    immediate_danger: bool
    fired: tuple[Fired, ...] = ()
    referred: tuple[Criterion, ...] = ()
    """For a refer, the criteria that active refer rules established: what its referrals carry.
    A criterion only a review rule established is not referred unseen (see `_combine`)."""
    rules: tuple[FiredRule, ...] = ()
    """`fired` as contracts, made once per verdict (see `_verdict`)."""
    rules_json: bytes = b"[]"
    active_json: bytes = b"[]"
    """`rules`, and the active ones alone, as JSON: spliced into the decision and the tasks."""

    @property
    def active(self) -> tuple[Fired, ...]:
        return tuple(rule for rule in self.fired if rule.mode == "active")


_Traits = tuple[object, ...]


def traits(policy: Policy, flag: ModerationFlag) -> _Traits:
    """What the policy's rules can tell of `flag`: every value `evaluate_rules` reads, with a
    confidence as the count of the policy's confidence thresholds at or below it, a hash
    distance as the count of its distance limits below it, and a label, hash list or country
    only when some rule names it. Two flags of the same traits get the same verdict (a
    property test compares `evaluate` with `evaluate_rules` on flags made to share them)."""
    child = flag.child
    country = flag.platform.country
    cuts, labels = policy._confidence_cuts, policy._labels
    return (
        flag.source.kind,
        child.age_band if child is not None else None,
        country if country in policy._countries else None,
        tuple(
            [
                (
                    signal.category,
                    signal.immediate_danger,
                    bisect_right(cuts, signal.confidence),
                    signal.label if signal.label in labels else None,
                    bool(signal.shared_externally),
                    None if signal.hash_match is None else _hash_traits(policy, signal.hash_match),
                )
                for signal in flag.signals
            ]
        ),
    )


def _hash_traits(policy: Policy, match: HashMatch) -> tuple[str, str | None, int | None]:
    return (
        match.match,
        match.list if match.list in policy._hash_lists else None,
        None if match.distance is None else bisect_left(policy._distance_cuts, match.distance),
    )


def evaluate(policy: Policy, flag: ModerationFlag) -> Verdict:
    """`evaluate_rules`, made once per policy for the flags of the same traits (`traits`): the
    patterns a platform's traffic repeats cost a lookup. Bounded as `_verdict`'s memo is."""
    key = traits(policy, flag)
    memo = policy.by_traits
    verdict = memo.get(key)
    if verdict is None:
        if len(memo) >= VERDICTS_KEPT:
            memo.clear()
        verdict = memo[key] = evaluate_rules(policy, flag)
    return verdict


def evaluate_rules(policy: Policy, flag: ModerationFlag) -> Verdict:
    """Evaluate every rule against every signal of `flag` and combine what fired."""
    held: dict[int, list[str]] = {}
    criteria: dict[int, frozenset[Criterion]] = {}
    kind = flag.source.kind
    for index, signal in enumerate(flag.signals):
        for position, rule in policy.candidates(kind, signal):
            matched = rule.match_signal(index, signal)
            if matched is None:
                continue
            if position in held:
                held[position].extend(matched)
                criteria[position] |= rule.criteria_for(signal)
            else:
                held[position] = matched
                criteria[position] = rule.criteria_for(signal)
    fired: list[Fired] = []
    source_held = f"source.kind={kind}"
    for position in sorted(held):  # policy order, so the same flag always lists the same way
        rule = policy.rules[position]
        flag_held = rule.match_flag(flag, source_held)
        if flag_held is not None:
            fired.append(
                Fired(
                    rule.rule_id,
                    rule.mode,
                    rule.outcome,
                    rule.priority,
                    tuple(sorted(criteria[position])),
                    (*flag_held, *held[position])[:MAX_MATCHED],
                )
            )
    danger = True in [signal.immediate_danger for signal in flag.signals]
    return _verdict(policy, tuple(fired), danger)


def _verdict(policy: Policy, fired: tuple[Fired, ...], danger: bool) -> Verdict:
    """The verdict from the rules that fired: escalations added, then combined. Made once per
    policy for the same rules firing the same way (a rule's conditions in words hold its
    thresholds, never a flag's own values), so the patterns a platform's traffic repeats cost
    a lookup. The memo is bounded: emptied when it holds `VERDICTS_KEPT` verdicts."""
    memo = policy.verdicts
    verdict = memo.get((fired, danger))
    if verdict is None:
        if len(memo) >= VERDICTS_KEPT:
            memo.clear()
        every = fired
        if policy.escalated_from.intersection([rule.rule_id for rule in fired]):
            every = (*fired, *_escalations(policy.escalations, fired))
        verdict = memo[fired, danger] = _rendered(_combine(danger, every))
    return verdict


def _rendered(verdict: Verdict) -> Verdict:
    """The verdict with its fired rules as contracts and as JSON."""
    rules = tuple(fired.contract() for fired in verdict.fired)
    return verdict._replace(
        rules=rules,
        rules_json=_json_list(rules),
        active_json=_json_list(rule for rule in rules if rule.mode == "active"),
    )


def _json_list(rules: Iterable[FiredRule]) -> bytes:
    return b"[" + b",".join(rule.model_dump_json().encode() for rule in rules) + b"]"


def _escalations(escalations: tuple[Escalation, ...], fired: tuple[Fired, ...]) -> list[Fired]:
    """The escalations whose required rules fired (active ones only, for an active escalation)."""
    active = {rule.rule_id: rule for rule in fired if rule.mode == "active"}
    every: dict[str, Fired] | None = None
    escalated: list[Fired] = []
    for escalation in escalations:
        if escalation.mode == "active":
            pool = active
        else:
            every = every if every is not None else {rule.rule_id: rule for rule in fired}
            pool = every
        used: list[str] = []
        for line in escalation.requires:
            hits = [rule_id for rule_id in line if rule_id in pool]
            if not hits:  # a line with nothing fired: this escalation cannot fire
                break
            used.extend(hits)
        else:
            used = list(dict.fromkeys(used))
            criteria = escalation.criteria.union(*(pool[rule_id].criteria for rule_id in used))
            escalated.append(
                Fired(
                    escalation.rule_id,
                    escalation.mode,
                    escalation.outcome,
                    escalation.priority,
                    tuple(sorted(criteria)),
                    tuple(f"fired={rule_id}" for rule_id in used[:MAX_MATCHED]),
                )
            )
    return escalated


def _combine(danger: bool, fired: tuple[Fired, ...]) -> Verdict:
    active = [rule for rule in fired if rule.mode == "active"]
    if not active:
        return Verdict(Outcome.NONE, None, (), danger, fired)
    refer = [r for r in active if r.outcome == "refer"]
    outcome = Outcome.REFER if refer else Outcome.REVIEW
    priority = min((r.priority for r in active), key=_RANK.__getitem__)
    criteria = tuple(sorted({c for r in active for c in r.criteria}))
    # A refer carries only what refer rules established: evidence that earned a review (say
    # classifier imagery, "never referred unseen") must not ride along as a referred criterion
    # (and so reach the IWF) because another signal of the flag was referred.
    referred = tuple(sorted({c for r in refer for c in r.criteria}))
    return Verdict(outcome, priority, criteria, danger, fired, referred)


BUNDLED_POLICY = "data/policy.yaml"


def load_policy(path: Path | None = None) -> Policy:
    """The policy in `path`, or the bundled default; raises `PolicyError` naming what is wrong."""
    if path is None:
        text = resources.files("services.domain").joinpath(BUNDLED_POLICY).read_text("utf-8")
        source = f"services/domain/{BUNDLED_POLICY}"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"{path}: cannot read the policy file: {exc}") from None
        source = str(path)
    return Policy.from_document(read_policy_document(text, source=source))


@cache
def default_policy() -> Policy:
    """The bundled policy (`data/policy.yaml`), read once on first use, never at import."""
    return load_policy(None)
