"""The whole pipeline as a user runs it: `csae router`, `csae referral worker` and
`csae referral api` as processes, the sample flags published to the real broker, the results
read back through the API, the dead-letter topic and the metrics endpoints."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from schemas.referral import RejectedMessage
from services.pipeline.kafka import ensure_topics
from services.pipeline.publish import publish_lines, read_lines
from services.pipeline.settings import Settings
from services.referral.keys import Role, create_key
from tests.infra import delete_topics, isolated_settings
from tests.kafka_reading import read_topic, wait_for_commit

SAMPLES = Path(__file__).parents[2] / "schemas" / "examples" / "sample-flags.jsonl"
CSAE = str(Path(sys.executable).with_name("csae"))

# What the default policy makes of each line of the sample file, in order.
EXPECTED = [
    ("refer", "P1", ["iioc"], {"police:metropolitan", "iwf"}),
    ("refer", "P2", ["grooming"], {"police:greater-manchester"}),
    ("refer", "P1", ["coercion"], {"police:kent"}),
    ("refer", "P1", ["safety"], {"police:police-scotland"}),
    ("refer", "P0", ["grooming", "safety"], {"police:west-yorkshire"}),
    ("refer", "P2", ["grooming"], {"intl:US:ncmec_cybertipline"}),
    ("review", "P2", ["grooming"], {"police:metropolitan"}),
    ("none", None, [], set()),
]
REFUSED = ["embedded_media", "invalid_json"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Pipeline:
    settings: Settings
    key: str
    api: str
    processes: dict[str, subprocess.Popen[bytes]]
    logs: Path

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every process and return each exit code (None if it had to be killed)."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name, process in self.processes.items():
            try:
                codes[name] = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                codes[name] = None
        return codes


def _start(env: dict[str, str], logs: Path) -> dict[str, subprocess.Popen[bytes]]:
    processes: dict[str, subprocess.Popen[bytes]] = {}
    for name, command in {
        "router": [CSAE, "router"],
        "worker": [CSAE, "referral", "worker"],
        "api": [CSAE, "referral", "api"],
    }.items():
        with (logs / f"{name}.log").open("wb") as log:
            processes[name] = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT
            )
    return processes


def _environment(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process exactly `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSAE_")}
    plain = settings.model_dump(mode="json")
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            env[f"CSAE_{name.upper()}"] = value.get_secret_value()
        elif isinstance(plain[name], dict | list):
            env[f"CSAE_{name.upper()}"] = json.dumps(plain[name])
        elif value is not None:
            env[f"CSAE_{name.upper()}"] = str(value)
    return env


@pytest.fixture
async def pipeline(database_url: str, tmp_path: Path) -> AsyncIterator[Pipeline]:
    keys = tmp_path / "api-keys"
    key = create_key(keys, Role.INVESTIGATOR)
    ports = {
        "api_port": free_port(),
        "router_metrics_port": free_port(),
        "worker_metrics_port": free_port(),
    }
    settings = isolated_settings(database_url, api_keys_file=keys, **ports)
    await ensure_topics(settings)
    env = _environment(settings)
    processes = _start(env, tmp_path)
    running = Pipeline(settings, key, f"http://127.0.0.1:{ports['api_port']}", processes, tmp_path)
    try:
        await _until_ready(running)
        yield running
    finally:
        running.stop()
        await delete_topics(settings)


async def _until_ready(pipeline: Pipeline, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            for name, process in pipeline.processes.items():
                if process.poll() is not None:
                    log = (pipeline.logs / f"{name}.log").read_text()
                    raise AssertionError(f"{name} exited with {process.returncode}:\n{log}")
            try:
                if (await client.get(f"{pipeline.api}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"the API was not ready after {within} s")


async def _decisions(
    client: httpx.AsyncClient, pipeline: Pipeline, flag_ids: list[str], within: float = 60.0
) -> dict[str, Any]:
    """Each flag's view from the API, polling until every one is decided and in its cases."""
    headers = {"Authorization": f"Bearer {pipeline.key}"}
    found: dict[str, Any] = {}
    deadline = time.monotonic() + within
    while len(found) < len(flag_ids):
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} of {len(flag_ids)} flags decided after {within} s")
        for flag_id in flag_ids:
            if flag_id not in found:
                response = await client.get(f"{pipeline.api}/v1/flags/{flag_id}", headers=headers)
                view = response.json() if response.status_code == 200 else None
                if view and len(view["case_ids"]) == len(view["decision"]["destinations"]):
                    found[flag_id] = view
        await asyncio.sleep(0.2)
    return found


def _processes_alive(pipeline: Pipeline) -> Iterator[str]:
    return (name for name, p in pipeline.processes.items() if p.poll() is None)


async def test_sample_flags_become_decisions_cases_packets_and_dead_letters(
    pipeline: Pipeline,
) -> None:
    lines = read_lines(SAMPLES, fresh=True)
    published = await publish_lines(pipeline.settings, lines)
    valid = [p.flag_id for p in published[: len(EXPECTED)]]
    assert all(valid)
    headers = {"Authorization": f"Bearer {pipeline.key}"}

    async with httpx.AsyncClient() as client:
        views = await _decisions(client, pipeline, [f for f in valid if f])
        for flag_id, (outcome, priority, criteria, destinations) in zip(
            valid, EXPECTED, strict=True
        ):
            decision = views[flag_id or ""]["decision"]
            assert (decision["outcome"], decision["priority"]) == (outcome, priority), decision
            assert decision["criteria"] == criteria
            assert set(_destination_keys(decision)) == destinations
            assert len(views[flag_id or ""]["case_ids"]) == len(destinations)

        danger = views[valid[4] or ""]
        case_id = danger["case_ids"][0]
        case = (await client.get(f"{pipeline.api}/v1/cases/{case_id}", headers=headers)).json()
        assert (case["status"], case["priority"], case["force_id"]) == (
            "ready",
            "P0",
            "west-yorkshire",
        )
        packet = (
            await client.get(f"{pipeline.api}/v1/cases/{case_id}/packets/1", headers=headers)
        ).json()
        assert "999" in packet["authority"]["instruction"]
        assert packet["authority"]["name"] == "West Yorkshire Police"
        assert "No images" in packet["no_images_attached"]

        review = views[valid[6] or ""]["case_ids"][0]
        review_case = (
            await client.get(f"{pipeline.api}/v1/cases/{review}", headers=headers)
        ).json()
        assert (review_case["status"], review_case["packet_versions"]) == ("review", [])

        # A safeguarding lead approves the review and records the P0 referral as sent.
        approved = await client.post(
            f"{pipeline.api}/v1/cases/{review}/transitions",
            json={"to": "ready", "note": "confirmed by the safeguarding lead"},
            headers=headers,
        )
        assert (approved.status_code, approved.json()["packet_versions"]) == (200, [1])
        sent = await client.post(
            f"{pipeline.api}/v1/cases/{case_id}/transitions",
            json={
                "to": "submitted",
                "external_reference": "WYP-20261126-0001",
                "packet_version": 1,
            },
            headers=headers,
        )
        assert (sent.status_code, sent.json()["status"]) == (200, "submitted")
        text = await client.get(
            f"{pipeline.api}/v1/cases/{case_id}/packets/1?format=text", headers=headers
        )
        assert text.text.startswith("A CHILD MAY BE IN IMMEDIATE DANGER: CALL 999 NOW.")

        # The worker's SLA sweep runs from its start: its gauge is exported for every stage.
        worker_port = pipeline.settings.worker_metrics_port
        # (Its value counts every test's cases in the shared database: only its presence is ours.)
        gauge = 'csae_cases_overdue{priority="P0",stage="submitted"} '
        deadline = time.monotonic() + 30
        while gauge not in (await client.get(f"http://127.0.0.1:{worker_port}/metrics")).text:
            assert time.monotonic() < deadline, "the worker exported no SLA gauge in 30 s"
            await asyncio.sleep(0.2)

    letters = [
        RejectedMessage.model_validate_json(r.value)
        for r in await read_topic(pipeline.settings, pipeline.settings.topic_dlq, len(REFUSED))
    ]
    assert sorted(letter.reason.value for letter in letters) == REFUSED
    assert {letter.sha256 for letter in letters} == {p.sha256 for p in published[len(EXPECTED) :]}

    committed = await wait_for_commit(
        pipeline.settings, pipeline.settings.topic_flags, pipeline.settings.router_group, len(lines)
    )
    assert committed == len(lines)
    # The router counts a batch before it commits it, so after the commit the counts are final.
    async with httpx.AsyncClient() as client:
        router_port = pipeline.settings.router_metrics_port
        metrics = (await client.get(f"http://127.0.0.1:{router_port}/metrics")).text
    assert 'csae_router_flags_total{outcome="refer"} 6.0' in metrics
    assert 'csae_router_flags_total{outcome="rejected"} 2.0' in metrics
    assert sorted(_processes_alive(pipeline)) == ["api", "router", "worker"]
    codes = pipeline.stop()
    assert (codes["router"], codes["worker"]) == (0, 0)
    # uvicorn re-raises SIGTERM after its graceful shutdown, so the API's code is -15.
    assert codes["api"] in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in (pipeline.logs / "api.log").read_text()


def _destination_keys(decision: dict[str, Any]) -> Iterator[str]:
    for d in decision["destinations"]:
        match d["kind"]:
            case "police":
                yield f"police:{d['force_id']}"
            case "iwf":
                yield "iwf"
            case _:
                yield f"intl:{d['country']}:{d['mechanism']}"
