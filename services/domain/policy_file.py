"""The policy file: its YAML format as pydantic models, read and checked before anything runs.

A policy that does not validate is refused with one line per problem, each naming the rule and
the field (`rule 'grooming-high': when.min_confidence: ...`), so whoever edited it can fix it.
"""

import re
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.base import CountryCode, Label
from schemas.flag import AgeBand, SignalCategory, SourceKind
from schemas.referral import Criterion, Priority

MAX_RULES = 64
"""A decision lists at most 64 fired rules (`Decision.rules`), so a policy holds at most 64."""


class PolicyError(ValueError):
    """The policy file is unreadable or invalid; the message names each rule and field at fault."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Confidence = Annotated[float, Field(ge=0.0, le=1.0)]


class Conditions(_Strict):
    """What must hold for a rule to fire. Every condition given must hold; none given is refused.

    Flag conditions (`source_kind`, `child_age_band`, `platform_country`) hold for the flag; the
    others must all hold for one signal of it. A list means "any of these".
    """

    category: list[SignalCategory] | None = Field(default=None, min_length=1)
    source_kind: list[SourceKind] | None = Field(default=None, min_length=1)
    label: list[Label] | None = Field(default=None, min_length=1)
    min_confidence: Confidence | None = None
    """The signal's confidence is at least this."""
    max_confidence: Confidence | None = None
    """The signal's confidence is below this (so adjacent bands neither overlap nor leave a gap).
    1 is refused: no confidence is above 1, so a band up to 1 inclusive leaves it out."""
    hash_match: Literal["exact", "perceptual"] | None = None
    hash_list: list[Label] | None = Field(default=None, min_length=1)
    max_distance: int | None = Field(default=None, ge=0, le=1024)
    """The hash match reports a distance, and it is at most this."""
    immediate_danger: bool | None = None
    shared_externally: bool | None = None
    child_age_band: list[AgeBand] | None = Field(default=None, min_length=1)
    platform_country: list[CountryCode] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if not self.given():
            raise ValueError("a rule needs at least one condition (it would fire for every flag)")
        low, high = self.min_confidence, self.max_confidence
        if low is not None and high is not None and low >= high:
            raise ValueError(
                f"min_confidence ({low}) must be below max_confidence ({high}): "
                "no confidence could satisfy both"
            )
        if high == 0.0:
            raise ValueError("max_confidence 0 can never hold (confidence is at least 0)")
        if high == 1.0:
            # Refused rather than read as "up to 1 inclusive": one reading everywhere (below
            # max_confidence), and a band meant to reach the top says so by having no top.
            raise ValueError(
                "max_confidence 1 would leave out a confidence of exactly 1 (the bound is "
                "exclusive): leave max_confidence out for a band that reaches 1"
            )
        if self.hash_match == "exact" and self.max_distance is not None:
            raise ValueError(
                "max_distance with hash_match 'exact' can never hold (an exact match reports no "
                "distance): drop one of them"
            )
        return self

    def given(self) -> set[str]:
        """The names of the conditions set (not None)."""
        return {name for name, value in self if value is not None}

    def may_match_other(self) -> bool:
        """Whether a signal of category `other` (which has no criterion of its own) may match."""
        return self.category is None or SignalCategory.OTHER in self.category


class Then(_Strict):
    """What a rule decides when it fires."""

    outcome: Literal["refer", "review"]
    priority: Priority
    criteria: list[Criterion] = Field(default_factory=list, max_length=4)
    """Criteria the rule establishes, besides the matched signal's own."""


class RuleSpec(_Strict):
    id: Label
    mode: Literal["active", "shadow"]
    when: Conditions
    then: Then

    @model_validator(mode="after")
    def _has_criteria(self) -> Self:
        if self.when.may_match_other() and not self.then.criteria:
            raise ValueError(
                "then.criteria: required when the rule may match a signal of category 'other', "
                "which has no criterion of its own (or restrict when.category)"
            )
        return self


class EscalationSpec(_Strict):
    """A rule over rules: fires when, for each line of `requires`, one of its rules fired."""

    id: Label
    mode: Literal["active", "shadow"]
    requires: list[Annotated[list[Label], Field(min_length=1)]] = Field(min_length=2, max_length=8)
    then: Then


class PolicyDocument(_Strict):
    version: Label
    rules: list[RuleSpec] = Field(min_length=1)
    escalations: list[EscalationSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[str] = []
        if len(self.rules) + len(self.escalations) > MAX_RULES:
            problems.append(f"rules and escalations: at most {MAX_RULES} in all")
        seen: set[str] = set()
        specs: list[RuleSpec | EscalationSpec] = [*self.rules, *self.escalations]
        for spec in specs:
            if spec.id in seen:
                problems.append(f"rule {spec.id!r}: id: used by another rule")
            seen.add(spec.id)
        modes = {rule.id: rule.mode for rule in self.rules}
        for esc in self.escalations:
            for line, ids in enumerate(esc.requires):
                unknown = [i for i in ids if i not in modes]
                if unknown:
                    problems.append(
                        f"rule {esc.id!r}: requires[{line}]: not rules of this policy: {unknown}"
                    )
                elif esc.mode == "active" and all(modes[i] == "shadow" for i in ids):
                    problems.append(
                        f"rule {esc.id!r}: requires[{line}]: an active escalation cannot wait "
                        "on shadow rules only (they never count for active decisions)"
                    )
        if not any(_refers_all_danger(rule) for rule in self.rules):
            problems.append(
                "rules: no active rule whose only condition is 'immediate_danger: true' with "
                "outcome refer and priority P0; a child in immediate danger must always be P0"
            )
        for rule in self.rules:
            if _on_danger_alone(rule) and rule.then.criteria != [Criterion.SAFETY]:
                # Danger says a child is at risk now, not what the images are: iioc (and with it
                # the IWF) is established by a hash match or a person, never by danger alone.
                problems.append(
                    f"rule {rule.id!r}: then.criteria: a rule on 'immediate_danger: true' alone "
                    "establishes exactly [safety] (the signal's own category adds the rest)"
                )
        for category in _REPORTABLE:
            if not any(
                rule.mode == "active" and rule.when.category and category in rule.when.category
                for rule in self.rules
            ):
                problems.append(
                    f"rules: no active rule with category {category.value!r}: every reportable "
                    "category needs one, or its signals are never reported"
                )
        if problems:
            raise ValueError("\n".join(problems))
        return self


_REPORTABLE = [category for category in SignalCategory if category is not SignalCategory.OTHER]


def _on_danger_alone(rule: RuleSpec) -> bool:
    return rule.when.given() == {"immediate_danger"} and rule.when.immediate_danger is True


def _refers_all_danger(rule: RuleSpec) -> bool:
    return (
        rule.mode == "active"
        and _on_danger_alone(rule)
        and (rule.then.outcome, rule.then.priority) == ("refer", Priority.P0)
    )


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a mapping with a key twice (PyYAML keeps the last silently),
    and reads only true and false as booleans (YAML 1.2): YAML 1.1 also reads yes, no, on and
    off, so Norway's `NO` in `platform_country: [NO]` would become false."""


_BOOL = "tag:yaml.org,2002:bool"
_UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_UniqueKeyLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys = [loader.construct_object(key) for key, _ in node.value]
    for key in keys:
        if keys.count(key) > 1:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping", node.start_mark
            )
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_policy_document(text: str, *, source: str) -> PolicyDocument:
    """Parse and validate a policy file's text; `source` names it in error messages."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: expected a mapping with version, rules and escalations")
    try:
        return PolicyDocument.model_validate(data)
    except ValidationError as exc:
        lines = [
            line
            for error in exc.errors(include_input=False)
            for line in _describe(data, error).splitlines()
        ]
        raise PolicyError("\n".join(f"{source}: {line}" for line in lines)) from None


def _describe(data: dict[str, Any], error: Any) -> str:
    """One problem as `rule 'id': field.path: message`."""
    loc: tuple[str | int, ...] = tuple(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if len(loc) >= 2 and loc[0] in ("rules", "escalations") and isinstance(loc[1], int):
        items = data.get(str(loc[0]))
        item = items[loc[1]] if isinstance(items, list) and loc[1] < len(items) else None
        rule_id = item.get("id") if isinstance(item, dict) else None
        where = f"rule {rule_id!r}" if isinstance(rule_id, str) else f"{loc[0]}[{loc[1]}]"
        field = ".".join(str(part) for part in loc[2:])
        return f"{where}: {field}: {message}" if field else f"{where}: {message}"
    field = ".".join(str(part) for part in loc)
    return f"{field}: {message}" if field else message
