"""Replaying flags through the current policy and a candidate one, to see what a change changes.

Pure: raw flags in, counts and changed decisions out. The decision time is the flag's own
`detected_at`, so a replay reads no clock and gives the same result every time. What it
reports is bounded to labels and flag ids: never a subject, a username, an address or a URL.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from schemas.flag import ModerationFlag
from schemas.referral import Decision
from services.domain.breaker import BreakerSettings, Source, source_label, would_open
from services.domain.forces import ForceDirectory
from services.domain.organisations import Organisations
from services.domain.policy import Policy
from services.pipeline.decode import Refusal, decode
from services.router.routing import route


@dataclass(slots=True)
class Tally:
    """How one policy decided the replayed flags."""

    outcome: Counter[str] = field(default_factory=Counter)
    priority: Counter[str] = field(default_factory=Counter)
    destination: Counter[str] = field(default_factory=Counter)
    shadow: Counter[str] = field(default_factory=Counter)
    """Shadow rules that fired, by id: what they would have done, had they been active."""
    fired: set[str] = field(default_factory=set)
    """Every rule that fired at least once, by id."""

    def add(self, decision: Decision) -> None:
        self.outcome[decision.outcome.value] += 1
        self.priority[decision.priority.value if decision.priority else "none"] += 1
        self.destination.update(destination.key for destination in decision.destinations)
        self.shadow.update(rule.rule_id for rule in decision.rules if rule.mode == "shadow")
        self.fired.update(rule.rule_id for rule in decision.rules)


@dataclass(frozen=True, slots=True)
class Change:
    flag_id: UUID
    current: str
    candidate: str


def summary(decision: Decision) -> str:
    """A decision in one line of labels: `refer P1 coercion,safety -> police:kent`."""
    priority = decision.priority.value if decision.priority else "-"
    criteria = ",".join(criterion.value for criterion in decision.criteria) or "-"
    where = ",".join(destination.key for destination in decision.destinations) or "-"
    return f"{decision.outcome.value} {priority} {criteria} -> {where}"


@dataclass(slots=True)
class Replay:
    """Flags run through `current` and, when given, `candidate`."""

    current: Policy
    candidate: Policy | None
    directory: ForceDirectory
    home_force_id: str
    max_bytes: int
    breaker: BreakerSettings | None = None
    """The flood breaker's thresholds: where it would have opened, under the current policy."""
    organisations: Organisations | None = None
    """The directory of reporting organisations: the NCA's tasks depend on it, as the router's."""
    flags: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    referred: list[tuple[Source, datetime]] = field(default_factory=list)
    """Each flag that made a task under the current policy: its source and detection time."""
    tallies: tuple[Tally, Tally] = field(default_factory=lambda: (Tally(), Tally()))
    changes: list[Change] = field(default_factory=list)

    def _decide(self, flag: ModerationFlag, policy: Policy) -> Decision:
        return route(
            flag,
            policy=policy,
            directory=self.directory,
            home_force_id=self.home_force_id,
            now=flag.detected_at,
            organisation=(
                self.organisations.find(flag.platform.org_id) if self.organisations else None
            ),
        ).decision

    def add(self, raw: bytes) -> None:
        """Replay one flag (one line of a JSON Lines file)."""
        flag = decode(raw, ModerationFlag, max_bytes=self.max_bytes)
        if isinstance(flag, Refusal):
            self.refused[flag.reason.value] += 1
            return
        self.flags += 1
        current = self._decide(flag, self.current)
        self.tallies[0].add(current)
        if current.destinations:
            self.referred.append(((flag.source.system, flag.source.version), flag.detected_at))
        if self.candidate is None:
            return
        candidate = self._decide(flag, self.candidate)
        self.tallies[1].add(candidate)
        before, after = summary(current), summary(candidate)
        if before != after:
            self.changes.append(Change(flag.flag_id, before, after))

    def report(self) -> list[str]:
        """The counts by outcome, priority and destination, and the flags whose decision changed."""
        versions = [self.current.version] + ([self.candidate.version] if self.candidate else [])
        tallies = self.tallies[: len(versions)]
        refused = sum(self.refused.values())
        lines = [f"{self.flags} flag(s) replayed, {refused} refused"]
        lines += [f"  refused {reason}: {n}" for reason, n in sorted(self.refused.items())]
        lines += ["", f"{'policy version':<34}" + "".join(f"{v:>16}" for v in versions)]
        for title, name in [
            ("outcome", "outcome"),
            ("priority", "priority"),
            ("destination", "destination"),
            ("shadow rules fired", "shadow"),
        ]:
            counters: list[Counter[str]] = [getattr(tally, name) for tally in tallies]
            keys = sorted(set().union(*counters))
            lines += ["", title]
            lines += [f"  {k:<32}" + "".join(f"{c[k]:>16}" for c in counters) for k in keys]
            if not keys:
                lines.append("  (none)")
        # Labels and lists are free-form: a typo (`label: [sextorsion]`) makes a rule that
        # validates and never fires. Over enough flags, a rule that never fired is worth a look.
        lines += ["", "active rules that never fired"]
        policies = [self.current] + ([self.candidate] if self.candidate else [])
        for policy, tally in zip(policies, tallies, strict=True):
            ids = [r.rule_id for r in policy.rules if r.mode == "active"]
            ids += [e.rule_id for e in policy.escalations if e.mode == "active"]
            idle = [rule_id for rule_id in ids if rule_id not in tally.fired]
            lines.append(f"  {policy.version}: {', '.join(idle) or '(none)'}")
        if self.breaker is not None:
            opened = would_open(self.referred, self.breaker)
            lines += ["", f"flood breaker would have opened ({self.current.version})"]
            lines += [
                f"  {source_label(source)} at {at.isoformat()}: {tripped.reason(self.breaker)}"
                for source, at, tripped in opened
            ] or ["  (never)"]
        if self.candidate is not None:
            lines += ["", f"decision changed for {len(self.changes)} flag(s)"]
            lines += [f"  {c.flag_id}  {c.current}  =>  {c.candidate}" for c in self.changes]
        return lines
