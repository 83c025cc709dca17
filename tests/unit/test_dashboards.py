"""The Grafana dashboards (deploy/grafana/): the committed JSON is what the generator makes, every
panel explains itself, links real runbooks, and queries metrics the services export."""

import asyncio
import json
import re
import time
from pathlib import Path
from types import ModuleType

import yaml
from prometheus_client import CollectorRegistry

from services.pipeline.metrics import Metrics, watch_event_loop
from tests.scripts import load_script

ROOT = Path(__file__).parents[2]
GRAFANA = ROOT / "deploy" / "grafana"


def load_generator() -> ModuleType:
    """deploy/grafana/dashboards.py, which is a script rather than a package module."""
    return load_script("deploy/grafana/dashboards.py", "csae_dashboards")


def test_committed_dashboards_are_what_the_generator_makes() -> None:
    rendered: dict[str, str] = load_generator().rendered()
    committed = {p.name for p in (GRAFANA / "dashboards").glob("*.json")}
    assert committed == set(rendered), "run: .venv/bin/python deploy/grafana/dashboards.py"
    for name, text in rendered.items():
        assert (GRAFANA / "dashboards" / name).read_text() == text, (
            f"{name} is stale: run .venv/bin/python deploy/grafana/dashboards.py"
        )


def test_every_panel_says_what_to_do_and_links_a_real_runbook() -> None:
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((ROOT / "deploy/prometheus/csae-alerts.yaml").read_text())[
            "groups"
        ]
        for rule in group["rules"]
    }
    for path in (GRAFANA / "dashboards").glob("*.json"):
        for panel in json.loads(path.read_text())["panels"]:
            assert len(panel["description"]) > 40, panel["title"]
            assert panel["targets"][0]["expr"], panel["title"]
            for link in panel["links"]:
                alert = Path(link["url"]).stem
                assert alert in alerts, f"{panel['title']}: no alert {alert}"
                assert (ROOT / link["url"]).is_file(), f"{panel['title']}: {link['url']}"


def test_panels_query_only_metrics_the_services_export() -> None:
    exported = set()
    for family in Metrics(CollectorRegistry()).registry.collect():
        exported |= {family.name, f"{family.name}_total", f"{family.name}_bucket"}
    for panel in load_generator().PANELS:
        for name in re.findall(r"\bcsae_[a-z_]+", panel.expr):
            assert name in exported, f"{panel.title}: {name} is not exported"


def test_dashboard_uids_and_titles_are_unique_and_provisioned_by_file() -> None:
    boards = [json.loads(p.read_text()) for p in (GRAFANA / "dashboards").glob("*.json")]
    assert len({b["uid"] for b in boards}) == len(boards) == 3
    for board in boards:
        titles = [p["title"] for p in board["panels"]]
        assert len(set(titles)) == len(titles), board["uid"]
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/csae.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"


async def test_the_event_loop_probe_reports_a_blocked_loop() -> None:
    metrics = Metrics(CollectorRegistry())
    stop = asyncio.Event()
    probe = asyncio.create_task(watch_event_loop(metrics, stop, interval=0.01))
    await asyncio.sleep(0.02)
    time.sleep(0.2)  # noqa: ASYNC251 - blocking the loop on purpose
    await asyncio.sleep(0.05)
    stop.set()
    await probe
    late = metrics.registry.get_sample_value("csae_event_loop_lag_seconds_sum")
    assert late is not None
    assert late >= 0.15
