"""`csae policy check` and `csae policy replay`: what a policy author runs before deploying."""

import json
from pathlib import Path

import pytest
import yaml

from services.cli import main
from tests.factories import flag_document, signal
from tests.policies import default_policy_data


@pytest.fixture(autouse=True)
def _no_policy_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CSAE_POLICY_FILE", raising=False)
    monkeypatch.delenv("CSAE_HOME_FORCE_ID", raising=False)


def _policy_file(tmp_path: Path, change: object = None, version: str = "candidate.1") -> Path:
    data = default_policy_data()
    data["version"] = version
    if callable(change):
        change(data)
    path = tmp_path / f"{version}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_check_accepts_a_valid_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _policy_file(tmp_path)
    assert main(["policy", "check", str(path)]) == 0
    assert capsys.readouterr().out == (
        f"{path}: valid, version candidate.1: 23 rule(s), 2 escalation(s), 0 in shadow mode\n"
    )


def test_check_refuses_an_invalid_policy_naming_rule_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(data: dict[str, object]) -> None:
        rules = {rule["id"]: rule for rule in data["rules"]}  # type: ignore[attr-defined]
        rules["grooming-high"]["when"]["max_confidence"] = 0.2

    path = _policy_file(tmp_path, broken)
    assert main(["policy", "check", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: rule 'grooming-high': when: min_confidence (0.9) must be below" in err


def _flags(tmp_path: Path) -> tuple[Path, list[dict[str, object]]]:
    flags = [
        flag_document(signals=[signal("grooming", 0.87)]),
        flag_document(signals=[signal("grooming", 0.95)]),
        flag_document(signals=[signal("other", 0.9)]),
        flag_document(
            signals=[signal("iioc", 1.0, hash_match={"list": "synthetic-list", "match": "exact"})],
            source={"system": "test-hasher", "version": "1", "kind": "hash_match"},
        ),
    ]
    path = tmp_path / "flags.jsonl"
    lines = [json.dumps(flag) for flag in flags] + ["", "not json"]
    path.write_text("\n".join(lines) + "\n")
    return path, flags


def test_replay_counts_by_outcome_priority_and_destination(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _flags(tmp_path)
    assert main(["policy", "replay", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["4 flag(s) replayed, 1 refused", "  refused invalid_json: 1"]
    rows = {line.split()[0]: line.split()[1:] for line in out if line.startswith("  ")}
    assert rows["refer"] == ["2"]
    assert rows["review"] == ["1"]
    assert rows["none"] == ["1"]
    assert rows["police:metropolitan"] == ["3"]
    assert rows["P1"] == ["1"]


def test_replay_with_a_candidate_lists_the_flags_whose_decision_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def lower_grooming_threshold(data: dict[str, object]) -> None:
        rules = {rule["id"]: rule for rule in data["rules"]}  # type: ignore[attr-defined]
        rules["grooming-high"]["when"]["min_confidence"] = 0.85
        rules["grooming-medium"]["when"]["max_confidence"] = 0.85
        data["rules"].append(  # type: ignore[attr-defined]
            {
                "id": "shadow-trial",
                "mode": "shadow",
                "when": {"category": ["other"]},
                "then": {"outcome": "review", "priority": "P3", "criteria": ["safety"]},
            }
        )

    path, flags = _flags(tmp_path)
    candidate = _policy_file(tmp_path, lower_grooming_threshold)
    assert main(["policy", "replay", str(path), "--policy", str(candidate)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ")}
    assert rows["refer"] == ["2", "3"]
    assert rows["review"] == ["1", "0"]
    assert rows["shadow-trial"] == ["0", "1"]
    assert out.splitlines()[-2:] == [
        "decision changed for 1 flag(s)",
        f"  {flags[0]['flag_id']}  review P3 grooming -> police:metropolitan  =>  "
        "refer P2 grooming -> police:metropolitan",
    ]
    for flag in flags:  # identifiers of people never reach the output
        assert flag["subject"]["account_id"] not in out  # type: ignore[index]


def test_replay_refuses_an_invalid_candidate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _flags(tmp_path)
    candidate = _policy_file(tmp_path, lambda data: data["rules"].pop(0))
    assert main(["policy", "replay", str(path), "--policy", str(candidate)]) == 1
    assert "no active rule whose only condition is 'immediate_danger: true'" in (
        capsys.readouterr().err
    )


def test_replay_lists_the_active_rules_that_never_fired(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def typo(data: dict[str, object]) -> None:
        rules = {rule["id"]: rule for rule in data["rules"]}  # type: ignore[attr-defined]
        rules["grooming-high"]["when"]["label"] = ["test_grooming_typo"]  # validates, never fires

    path, _ = _flags(tmp_path)
    candidate = _policy_file(tmp_path, typo)
    assert main(["policy", "replay", str(path), "--policy", str(candidate)]) == 0
    out = capsys.readouterr().out.splitlines()
    at = out.index("active rules that never fired")
    current, changed = out[at + 1], out[at + 2]
    assert current.startswith(f"  {default_policy_data()['version']}: ")
    assert changed.startswith("  candidate.1: ")
    assert "grooming-high," not in current
    assert "grooming-high," in changed
    assert "immediate-danger" in current  # no flag in danger was replayed


def test_replay_routes_to_the_nca_as_the_directory_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a directory naming the organisation a regulated service, the replay counts the NCA
    tasks the router makes: a policy change that moves CSEA content shows there too."""
    directory = tmp_path / "organisations.yaml"
    directory.write_text(
        yaml.safe_dump(
            {
                "organisations": [
                    {
                        "org_id": "org-test",
                        "name": "Example Ltd",
                        "safeguarding_contact": "Safeguarding desk, 020 0000 0000",
                        "country": "GB",
                        "reports_to": ["police", "iwf", "nca"],
                    }
                ]
            }
        )
    )
    monkeypatch.setenv("CSAE_ORG_DIRECTORY_FILE", str(directory))
    path, _ = _flags(tmp_path)
    assert main(["policy", "replay", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in out if line.startswith("  ")}
    assert rows["police:metropolitan"] == ["3"]
    assert rows["nca"] == ["3"], "grooming reviewed and referred, and the hash-matched image"
