"""Liveness and readiness of a consumer (router or worker), served beside its /metrics.

- Live (`/healthz`): the consume loop came round within `stall_seconds`. A transient fault is
  retried within one round (`batch_retry_seconds`, then the tries in flight, each bounded by the
  database's connect timeout) and a quiet topic still comes round every half second, so only a
  loop that hangs (a call that never returns, an event loop blocked by synchronous work) fails
  it: a restart is then the fix.
- Ready (`/readyz`): a member of its consumer group (an assignment received since the last
  revocation, empty when the group has more members than partitions), the broker answered the
  lag read lately, and for the worker the database answered lately. A broker or database outage
  makes it not ready, never not live: a restart would not bring either back, and would only
  rebalance the group.

The loop writes times and flags; the HTTP thread reads them (single assignments, safe under the
GIL). Answers are JSON naming each check, never an identifier.
"""

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

log = logging.getLogger(__name__)


class ConsumerHealth:
    """What the consume loop, the group listener and the periodic checks last said."""

    def __init__(
        self,
        *,
        stall_seconds: float,
        stale_seconds: float,
        needs_database: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stall_seconds = stall_seconds
        self.stale_seconds = stale_seconds
        self.needs_database = needs_database
        self._clock = clock
        self._loop_at = clock()  # start-up counts as progress until the loop first runs
        self._broker_at: float | None = None
        self._database_at: float | None = None
        self._member = False

    def loop_ran(self) -> None:
        self._loop_at = self._clock()

    def broker_answered(self) -> None:
        self._broker_at = self._clock()

    def database_answered(self) -> None:
        self._database_at = self._clock()

    def joined(self) -> None:
        self._member = True

    def left(self) -> None:
        self._member = False

    def live(self) -> tuple[bool, dict[str, str]]:
        since = self._clock() - self._loop_at
        if since > self.stall_seconds:
            return False, {"consume_loop": f"stalled: no round for {since:.0f} s"}
        return True, {"consume_loop": "ok"}

    def ready(self) -> tuple[bool, dict[str, str]]:
        checks = {
            "consumer_group": "member" if self._member else "not a member (joining or rejoining)",
            "broker": self._fresh(self._broker_at),
        }
        if self.needs_database:
            checks["database"] = self._fresh(self._database_at)
        alive, loop = self.live()
        checks |= loop
        ok = (
            alive
            and self._member
            and all(v == "ok" for k, v in checks.items() if k != "consumer_group")
        )
        return ok, checks

    def _fresh(self, at: float | None) -> str:
        if at is None:
            return "no answer yet"
        since = self._clock() - at
        return "ok" if since <= self.stale_seconds else f"no answer for {since:.0f} s"


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def health_app(registry: CollectorRegistry, health: ConsumerHealth) -> WsgiApp:
    """/healthz and /readyz from `health` (200 or 503, JSON); anything else is /metrics."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            ok, checks = health.live()
        elif path == "/readyz":
            ok, checks = health.ready()
        else:
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        body = json.dumps({"status": "ok" if ok else "failing", "checks": checks}).encode()
        start_response(
            "200 OK" if ok else "503 Service Unavailable",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes every few seconds: not worth a log line each."""


def serve(
    registry: CollectorRegistry, health: ConsumerHealth, host: str, port: int
) -> tuple[WSGIServer, threading.Thread]:
    """Serve /metrics, /healthz and /readyz on http://host:port from a daemon thread."""
    server = make_server(host, port, health_app(registry, health), _Server, _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="health")
    thread.start()
    log.info("metrics and health served", extra={"host": host, "port": port})
    return server, thread
