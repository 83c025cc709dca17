"""A consumer's liveness and readiness: what each check says, and how they are served."""

import json
import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry

from services.pipeline.health import ConsumerHealth, serve
from services.pipeline.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _health(clock: Clock, *, needs_database: bool = False) -> ConsumerHealth:
    return ConsumerHealth(
        stall_seconds=60, stale_seconds=35, needs_database=needs_database, clock=clock
    )


def test_live_while_the_loop_comes_round_and_not_once_it_stalls() -> None:
    clock = Clock()
    health = _health(clock)
    clock.now += 59  # start-up counts as progress
    assert health.live()[0]
    clock.now += 2
    alive, checks = health.live()
    assert not alive
    assert checks == {"consume_loop": "stalled: no round for 61 s"}
    health.loop_ran()
    assert health.live()[0]


def test_ready_only_as_a_group_member_that_hears_from_the_broker() -> None:
    clock = Clock()
    health = _health(clock)
    assert health.ready() == (
        False,
        {
            "consumer_group": "not a member (joining or rejoining)",
            "broker": "no answer yet",
            "consume_loop": "ok",
        },
    )
    health.broker_answered()
    assert not health.ready()[0]  # not in the group yet
    health.joined()
    assert health.ready() == (
        True,
        {"consumer_group": "member", "broker": "ok", "consume_loop": "ok"},
    )
    health.left()  # a rebalance revoked everything: rejoining
    assert not health.ready()[0]
    health.joined()
    clock.now += 36  # the broker has not answered the lag read since
    ready, checks = health.ready()
    assert not ready
    assert checks["broker"] == "no answer for 36 s"
    health.broker_answered()
    assert health.ready()[0]


def test_the_worker_is_ready_only_while_its_database_answers() -> None:
    clock = Clock()
    health = _health(clock, needs_database=True)
    health.joined()
    health.broker_answered()
    ready, checks = health.ready()
    assert (ready, checks["database"]) == (False, "no answer yet")
    health.database_answered()
    assert health.ready()[0]
    clock.now += 30
    health.broker_answered()
    clock.now += 10
    assert health.ready() == (
        False,
        {
            "consumer_group": "member",
            "broker": "ok",
            "database": "no answer for 40 s",
            "consume_loop": "ok",
        },
    )


def test_a_stalled_loop_is_not_ready_either() -> None:
    clock = Clock()
    health = _health(clock)
    health.joined()
    clock.now += 61
    health.broker_answered()  # the lag reader still runs: the consume loop does not
    assert not health.ready()[0]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (our test server)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_served_beside_the_metrics_as_200_or_503_with_each_check() -> None:
    clock = Clock()
    health = _health(clock)
    metrics = Metrics(CollectorRegistry())
    metrics.assigned_partitions.labels("csae-router").set(4)
    server, thread = serve(metrics.registry, health, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        assert _get(f"{base}/healthz")[0] == 200
        status, body = _get(f"{base}/readyz")
        assert status == 503
        assert json.loads(body)["checks"]["consumer_group"].startswith("not a member")
        health.joined()
        health.broker_answered()
        assert _get(f"{base}/readyz") == (
            200,
            json.dumps(
                {
                    "status": "ok",
                    "checks": {"consumer_group": "member", "broker": "ok", "consume_loop": "ok"},
                }
            ),
        )
        clock.now += 61
        assert _get(f"{base}/healthz")[0] == 503
        status, metrics_text = _get(f"{base}/metrics")
        assert status == 200
        assert 'csae_consumer_assigned_partitions{group="csae-router"} 4.0' in metrics_text
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
