"""The alert rules in deploy/prometheus name only metrics and labels the code exports.

A rule over a metric that no longer exists never fires: that silence would hide a late referral.
"""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from services.pipeline.metrics import Metrics

RULES = Path(__file__).parents[2] / "deploy" / "prometheus" / "csae-alerts.yaml"
_SCRAPE_HEALTH = {"CsaeProcessDown"}
"""Alerts over Prometheus's scrape health, for a process that exports nothing because it is
down."""
_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")
_SELECTOR = re.compile(r"\b(csae_[a-z_]+)\s*(?:\{([^}]*)\})?")
_MATCHER = re.compile(r"([a-z_]+)\s*(?:=~|!~|!=|=)\s*\"")


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _exported() -> dict[str, set[str]]:
    """Metric family name → its label names, as the code registers them."""
    families: dict[str, set[str]] = {}
    metrics = Metrics(CollectorRegistry())
    for collector in vars(metrics).values():
        describe = getattr(collector, "describe", None)
        if describe is None:
            continue
        for family in describe():
            families[family.name] = set(getattr(collector, "_labelnames", ()))
    return families


def _family(name: str, families: dict[str, set[str]]) -> str | None:
    if name in families:
        return name
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in families:
            return name.removesuffix(suffix)
    return None


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule["alert"])
def test_each_alert_uses_metrics_and_labels_the_code_exports(rule: dict[str, Any]) -> None:
    families = _exported()
    selectors = _SELECTOR.findall(rule["expr"])
    if rule["alert"] in _SCRAPE_HEALTH:  # over Prometheus's own `up`: the process is gone
        assert "up{job=" in rule["expr"]
    else:
        assert selectors, "an alert over no csae metric"
    for name, matchers in selectors:
        family = _family(name, families)
        assert family is not None, f"{rule['alert']}: no metric {name}"
        # `job` is Prometheus's, from the scrape job (csae-router, csae-worker, csae-api).
        labels = set(_MATCHER.findall(matchers)) - {"le", "job"}
        assert labels <= families[family], f"{rule['alert']}: {name} has no label {labels}"
    assert rule["labels"]["severity"] in {"page", "ticket"}
    assert rule["annotations"]["summary"]


def test_every_sla_metric_has_an_alert() -> None:
    used = {name for rule in _rules() for name, _ in _SELECTOR.findall(rule["expr"])}
    for needed in (
        "csae_sla_breaches_total",
        "csae_cases_overdue",
        "csae_sla_last_sweep_timestamp_seconds",
        "csae_batch_failures_total",
        "csae_consumer_lag",
    ):
        assert needed in used, needed


RUNBOOKS = Path(__file__).parents[2] / "docs" / "runbooks"


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule["alert"])
def test_each_alert_links_its_runbook(rule: dict[str, Any]) -> None:
    """The on-call engineer woken by an alert opens its runbook from the alert itself."""
    url = rule["annotations"].get("runbook_url")
    assert url == f"docs/runbooks/{rule['alert']}.md", f"{rule['alert']}: runbook_url {url!r}"
    assert (RULES.parents[2] / url).is_file(), f"{rule['alert']}: no runbook at {url}"


def test_every_runbook_is_linked_by_an_alert() -> None:
    linked = {rule["annotations"].get("runbook_url") for rule in _rules()}
    for runbook in sorted(RUNBOOKS.glob("*.md")):
        assert f"docs/runbooks/{runbook.name}" in linked, f"{runbook.name}: no alert links it"
