"""The policy file: a policy that does not validate is refused, naming the rule and the field."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from services.domain.policy import default_policy, load_policy
from services.domain.policy_file import PolicyError, read_policy_document
from tests.policies import default_policy_data


def _text(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)


def _rule(rule_id: str = "new-rule", **fields: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "id": rule_id,
        "mode": "active",
        "when": {"category": ["grooming"], "min_confidence": 0.5},
        "then": {"outcome": "review", "priority": "P3"},
    }
    rule.update(fields)
    return rule


def _refused(data: dict[str, Any]) -> str:
    with pytest.raises(PolicyError) as refused:
        read_policy_document(_text(data), source="candidate.yaml")
    return str(refused.value)


def _with_rule(rule: dict[str, Any]) -> dict[str, Any]:
    data = default_policy_data()
    data["rules"].append(rule)
    return data


def test_the_bundled_policy_validates_and_loads() -> None:
    policy = load_policy(None)
    assert policy == default_policy()
    assert policy.version == default_policy_data()["version"]
    assert len(policy.rules) == len(default_policy_data()["rules"])


def test_a_policy_file_is_loaded_from_its_path(tmp_path: Path) -> None:
    data = default_policy_data()
    data["version"] = "candidate.7"
    path = tmp_path / "policy.yaml"
    path.write_text(_text(data))
    assert load_policy(path).version == "candidate.7"


def test_a_missing_policy_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(PolicyError, match=r"absent\.yaml: cannot read the policy file"):
        load_policy(path)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            _rule(when={"category": ["grooming"], "min_confidnce": 0.5}),
            "candidate.yaml: rule 'new-rule': when.min_confidnce: Extra inputs are not permitted",
        ),
        (
            _rule(then={"outcome": "review", "priority": "P4"}),
            "rule 'new-rule': then.priority: Input should be 'P0', 'P1', 'P2' or 'P3'",
        ),
        (
            _rule(then={"outcome": "escalate", "priority": "P1"}),
            "rule 'new-rule': then.outcome: Input should be 'refer' or 'review'",
        ),
        (
            _rule(when={"category": ["grooming"], "min_confidence": 0.9, "max_confidence": 0.6}),
            "rule 'new-rule': when: min_confidence (0.9) must be below max_confidence (0.6)",
        ),
        (
            _rule(when={"category": ["grooming"], "min_confidence": 0.6, "max_confidence": 0.6}),
            "rule 'new-rule': when: min_confidence (0.6) must be below max_confidence (0.6)",
        ),
        (
            _rule(when={"category": ["grooming"], "min_confidence": 1.5}),
            "rule 'new-rule': when.min_confidence: Input should be less than or equal to 1",
        ),
        (_rule(when={}), "rule 'new-rule': when: a rule needs at least one condition"),
        (
            _rule(when={"source_kind": ["classifier"]}),
            "rule 'new-rule': then.criteria: required when the rule may match a signal of "
            "category 'other'",
        ),
        (
            _rule(when={"category": ["grooming"], "platform_country": ["gb"]}),
            "rule 'new-rule': when.platform_country.0: String should match pattern",
        ),
        (
            _rule(when={"category": ["grooming"], "source_kind": ["rumour"]}),
            "rule 'new-rule': when.source_kind.0: Input should be",
        ),
        (
            _rule(when={"category": ["grooming"], "min_confidence": 0.9, "max_confidence": 1.0}),
            "rule 'new-rule': when: max_confidence 1 would leave out a confidence of exactly 1",
        ),
        (
            _rule(when={"category": ["iioc"], "hash_match": "exact", "max_distance": 10}),
            "rule 'new-rule': when: max_distance with hash_match 'exact' can never hold",
        ),
        (
            _rule(
                when={"immediate_danger": True},
                then={"outcome": "refer", "priority": "P0", "criteria": ["safety", "iioc"]},
            ),
            "rule 'new-rule': then.criteria: a rule on 'immediate_danger: true' alone "
            "establishes exactly [safety]",
        ),
        (_rule(mode="dry-run"), "rule 'new-rule': mode: Input should be 'active' or 'shadow'"),
        (_rule("Bad Id"), "rule 'Bad Id': id: String should match pattern"),
        (_rule("grooming-high"), "rule 'grooming-high': id: used by another rule"),
        (
            {k: v for k, v in _rule().items() if k != "mode"},
            "rule 'new-rule': mode: Field required",
        ),
    ],
    ids=[
        "unknown-key",
        "priority-p4",
        "unknown-outcome",
        "min-above-max",
        "min-equals-max",
        "confidence-above-1",
        "no-condition",
        "may-match-other-without-criteria",
        "lower-case-country",
        "unknown-source-kind",
        "max-confidence-1",
        "exact-with-distance",
        "danger-alone-with-iioc",
        "unknown-mode",
        "bad-id",
        "duplicate-id",
        "no-mode",
    ],
)
def test_an_invalid_rule_is_refused_naming_the_rule_and_field(
    rule: dict[str, Any], message: str
) -> None:
    assert message in _refused(_with_rule(rule))


def test_every_problem_is_reported_on_its_own_line() -> None:
    data = _with_rule(_rule("first", mode="dry-run"))
    data["rules"].append(_rule("second", then={"outcome": "review", "priority": "P9"}))
    lines = _refused(data).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("candidate.yaml: rule 'first': mode:")
    assert lines[1].startswith("candidate.yaml: rule 'second': then.priority:")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["rules"].pop(0),
            "rules: no active rule whose only condition is 'immediate_danger: true'",
        ),
        (
            lambda d: d["rules"][0].update(mode="shadow"),
            "rules: no active rule whose only condition is 'immediate_danger: true'",
        ),
        (
            lambda d: d["rules"][0]["then"].update(priority="P1"),
            "rules: no active rule whose only condition is 'immediate_danger: true'",
        ),
        (
            lambda d: d["escalations"][0]["requires"].append(["no-such-rule"]),
            "rule 'sextortion-with-self-harm': requires[3]: not rules of this policy: "
            "['no-such-rule']",
        ),
        (
            lambda d: d["escalations"][0]["requires"].__setitem__(0, ["sextortion-with-self-harm"]),
            "rule 'sextortion-with-self-harm': requires[0]: not rules of this policy",
        ),
        (
            lambda d: (
                d["rules"].append(_rule("shadow-only", mode="shadow"))
                or d["escalations"][0]["requires"].__setitem__(0, ["shadow-only"])
            ),
            "rule 'sextortion-with-self-harm': requires[0]: an active escalation cannot wait "
            "on shadow rules only",
        ),
        (
            lambda d: d["escalations"][1]["requires"].pop(),
            "rule 'sextortion-with-self-harm-cues': requires: List should have at least 2 items",
        ),
        (
            lambda d: d["rules"].extend(_rule(f"extra-{n}") for n in range(50)),
            "rules and escalations: at most 64 in all",
        ),
        (
            lambda d: d["rules"][0]["then"].update(criteria=["iioc"]),
            "rule 'immediate-danger': then.criteria: a rule on 'immediate_danger: true' alone "
            "establishes exactly [safety]",
        ),
        (
            lambda d: d.update(
                rules=[r for r in d["rules"] if "iioc" not in r["when"].get("category", [])]
            ),
            "rules: no active rule with category 'iioc': every reportable category needs one",
        ),
        (
            lambda d: [
                r.update(mode="shadow")
                for r in d["rules"]
                if "safety" in r["when"].get("category", [])
            ],
            "rules: no active rule with category 'safety'",
        ),
        (
            lambda d: d["escalations"].append(
                {
                    "id": "shadow-escalation",
                    "mode": "shadow",
                    "requires": [["coercion-high"], []],
                    "then": {"outcome": "refer", "priority": "P0"},
                }
            ),
            "rule 'shadow-escalation': requires.1: List should have at least 1 item",
        ),
        (lambda d: d.pop("version"), "version: Field required"),
        (lambda d: d.update(owner="someone"), "owner: Extra inputs are not permitted"),
        (lambda d: d.update(rules=[]), "rules: List should have at least 1 item"),
    ],
    ids=[
        "no-immediate-danger-rule",
        "immediate-danger-in-shadow",
        "immediate-danger-not-p0",
        "escalation-unknown-rule",
        "escalation-requires-escalation",
        "active-escalation-on-shadow-rule",
        "escalation-of-one",
        "too-many-rules",
        "danger-floor-with-iioc",
        "no-iioc-rule",
        "safety-rules-only-in-shadow",
        "escalation-empty-line",
        "no-version",
        "unknown-top-level-key",
        "no-rules",
    ],
)
def test_an_inconsistent_policy_is_refused(change: Any, message: str) -> None:
    data = default_policy_data()
    change(data)
    assert message in _refused(data)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: '1'\nrules: [\n", "candidate.yaml: not valid YAML"),
        ("- a list", "candidate.yaml: expected a mapping"),
        ("version: '1'\nversion: '2'\nrules: []\n", "key 'version' appears twice in one mapping"),
        ("!!python/object/apply:os.system ['true']", "candidate.yaml: not valid YAML"),
    ],
    ids=["broken-yaml", "not-a-mapping", "duplicate-key", "python-tag"],
)
def test_a_file_that_is_not_a_policy_mapping_is_refused(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as refused:
        read_policy_document(text, source="candidate.yaml")
    assert message in str(refused.value)


def test_yaml_no_is_norway_not_false() -> None:
    data = _with_rule(_rule(when={"category": ["grooming"], "platform_country": ["GB"]}))
    text = _text(data).replace("- GB\n", "- NO\n")  # as a person would write it, unquoted
    assert "- NO\n" in text
    document = read_policy_document(text, source="candidate.yaml")
    assert document.rules[-1].when.platform_country == ["NO"]


def test_only_true_and_false_are_booleans_in_a_policy_file() -> None:
    data = _with_rule(_rule(when={"category": ["grooming"], "shared_externally": True}))
    text = _text(data).replace("shared_externally: true", "shared_externally: on")
    document = read_policy_document(text, source="candidate.yaml")
    # Read as the text "on", which a boolean condition still takes as true.
    assert document.rules[-1].when.shared_externally is True
