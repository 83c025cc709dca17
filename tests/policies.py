"""Policies for tests: the bundled default with rules added or changed, as the policy file would."""

from importlib import resources
from typing import Any

import yaml

from services.domain.policy import BUNDLED_POLICY, Policy
from services.domain.policy_file import PolicyDocument


def default_policy_data() -> dict[str, Any]:
    """The bundled policy file as data, to change and load again."""
    text = resources.files("services.domain").joinpath(BUNDLED_POLICY).read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def policy_with(
    *rules: dict[str, Any], escalations: list[dict[str, Any]] | None = None, version: str = "test.1"
) -> Policy:
    """The default policy plus `rules` (and `escalations`), validated as a policy file is."""
    data = default_policy_data()
    data["version"] = version
    data["rules"].extend(rules)
    data["escalations"].extend(escalations or [])
    return Policy.from_document(PolicyDocument.model_validate(data))
