"""The dashboards and alert rules against a real Prometheus (Debian's package, as promtool):
it scrapes the router, worker and API that the pipeline test starts, the sample flags flow, and
every panel's query returns data (or the panel says why it may not) and every rule evaluates."""

import asyncio
import re
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.pipeline.publish import publish_lines, read_lines
from tests.e2e.test_pipeline import EXPECTED, SAMPLES, Pipeline, _decisions, free_port, pipeline
from tests.unit.test_dashboards import load_generator

__all__ = ["pipeline"]  # the fixture, imported to be reused

ROOT = Path(__file__).parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"


def _start_prometheus(config: Path, port: int, data: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                str(PROMETHEUS / "prometheus.sh"),
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture(autouse=True)
def _fast_timers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lag read and SLA swept every second, so a short run exports every gauge."""
    monkeypatch.setenv("CSAE_LAG_INTERVAL_SECONDS", "1")
    monkeypatch.setenv("CSAE_SLA_SWEEP_SECONDS", "1")


@pytest.fixture
async def prometheus(pipeline: Pipeline, tmp_path: Path) -> AsyncIterator[str]:
    """A Prometheus scraping the pipeline's three processes every second, with the alert rules."""
    s = pipeline.settings
    jobs = {
        "csae-router": s.router_metrics_port,
        "csae-worker": s.worker_metrics_port,
        "csae-api": s.api_port,
    }
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(PROMETHEUS / "csae-alerts.yaml")],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            for job, port in jobs.items()
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = _start_prometheus(
        tmp_path / "prometheus.yml", port, tmp_path / "tsdb", tmp_path / "prometheus.log"
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    raise AssertionError((tmp_path / "prometheus.log").read_text())
                try:
                    if (await client.get(f"{url}/-/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "Prometheus not ready after 30 s"
                await asyncio.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _query(client: httpx.AsyncClient, url: str, expr: str) -> list[Any]:
    response = await client.get(f"{url}/api/v1/query", params={"query": expr})
    body = response.json()
    assert body["status"] == "success", (expr, body)
    result: list[Any] = body["data"]["result"]
    return result


async def test_every_panel_has_data_and_every_rule_evaluates(
    pipeline: Pipeline, prometheus: str
) -> None:
    published = await publish_lines(pipeline.settings, read_lines(SAMPLES, fresh=True))
    panels = load_generator().PANELS
    async with httpx.AsyncClient() as client:
        await _decisions(
            client, pipeline, [p.flag_id for p in published[: len(EXPECTED)] if p.flag_id]
        )
        empty = {p.title: p for p in panels}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for title, panel in list(empty.items()):
                if await _query(client, prometheus, panel.expr):
                    del empty[title]
            if all(p.allow_empty for p in empty.values()):
                break
            await asyncio.sleep(1)
        missing = [title for title, p in empty.items() if not p.allow_empty]
        assert not missing, f"panels without data: {missing}"

        up = await _query(client, prometheus, 'up{job=~"csae-.*"} == 1')
        assert {r["metric"]["job"] for r in up} == {"csae-router", "csae-worker", "csae-api"}
        # Route templates only: a raw path would put case and flag ids in a label.
        routes = await _query(client, prometheus, "count by (route) (csae_http_requests_total)")
        labels = {r["metric"]["route"] for r in routes}
        assert "/v1/flags/{flag_id}" in labels, labels
        assert all(not re.search(r"[0-9a-f]{8}-", label) for label in labels), labels

        unknown: list[str] = ["(not read yet)"]
        while unknown and time.monotonic() < deadline + 10:
            body = (await client.get(f"{prometheus}/api/v1/rules")).json()
            rules = [r for g in body["data"]["groups"] for r in g["rules"]]
            bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] == "err"]
            assert not bad, f"rules that fail to evaluate: {bad}"
            unknown = [r["name"] for r in rules if r["health"] != "ok"]
            await asyncio.sleep(0.5)
        assert len(rules) == len(_alert_names())
        assert not unknown, f"rules never evaluated: {unknown}"
        down = [r["state"] for r in rules if r["name"] == "CsaeProcessDown"]
        assert down == ["inactive"], "every process is scraped under the job the alert expects"
    print("allowed empty:", {t: p.allow_empty for t, p in empty.items()})


def _alert_names() -> list[str]:
    rules = Path(__file__).parents[2] / "deploy" / "prometheus" / "csae-alerts.yaml"
    document = yaml.safe_load(rules.read_text(encoding="utf-8"))
    return [rule["alert"] for group in document["groups"] for rule in group["rules"]]
