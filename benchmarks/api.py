"""`CSAE_BENCH_API=1 make bench`: case API reads at a fixed rate on a database of N cases.

1. A private database migrated to head is filled with N synthetic cases by SQL
   (`generate_series`, seconds per 100,000), one transition each, and one large case holding
   many flags and transitions (the bounded case detail).
2. "Before": a real `csae referral api`, one process, serves it; an open-loop generator sends
   requests at a fixed rate (each timed from when it was due, so a saturated server shows as
   queueing, not as a slower sender) for: `/healthz` (the floor: the machine at this rate), a
   case read, the large case's read, and each list filter. p50/p95 in milliseconds; first the
   same requests one at a time ("alone": what one request costs, without a queue). A flag read
   reads the decisions of the large case's flags (the router's decision, and the case it
   joined). With
   `CSAE_BENCH_API_BEFORE_SOURCE=DIR` (an older tree, e.g. `git archive COMMIT | tar -x -C DIR`)
   the "before" API is that tree's, run without uvloop and httptools (which it did not have), so
   old and new code are measured in one run on one database.
3. "After": this tree's API with `CSAE_API_WORKERS` = WORKERS, the same figures beside the first.

Sizes from `CSAE_BENCH_API_*`: CASES (100,000), RATE (200/s), SECONDS (5 per figure),
BIG_CASE (2,000 flags and transitions), WORKERS (2). The database is removed at the end.
"""

import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from uuid import UUID

import asyncpg
import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from services.referral.keys import Role, create_key
from tests.infra import create_database, drop_database

CSAE = Path(sys.executable).with_name("csae")


class ApiBenchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CSAE_BENCH_API_", frozen=True, extra="ignore")

    cases: int = Field(default=100_000, ge=1000)
    rate: float = Field(default=200.0, gt=0)
    seconds: float = Field(default=5.0, gt=0)
    big_case: int = Field(default=2000, ge=1)
    workers: int = Field(default=2, ge=1)
    before_source: Path | None = None


# Cases i = 1..N: created 30 s apart, ending now; a status mix like a year of work (most closed);
# destination, force, priority and criteria spread so each filter selects a realistic share.
FILL = """
INSERT INTO cases (
    case_id, case_key, destination, destination_key, force_id, status, priority, criteria,
    org_id, subject_account_id, first_detected_at, created_at, updated_at, review_due_at,
    ready_due_at, submitted_due_at, due_at, due_stage, packet_version, submitted_due_priority,
    flag_count
)
SELECT
    md5('case' || i)::uuid,
    'bench|' || i,
    (ARRAY['police', 'police', 'iwf', 'intl'])[1 + i % 4],
    CASE WHEN i % 4 < 2 THEN 'force-' || (i % 43) ELSE 'dest' END,
    CASE WHEN i % 4 < 2 THEN 'force-' || (i % 43) END,
    s.status,
    CASE WHEN i % 97 = 0 THEN 'P0' ELSE (ARRAY['P1', 'P2', 'P3'])[1 + i % 3] END,
    CASE (i / 7) % 5 WHEN 0 THEN ARRAY['grooming'] WHEN 1 THEN ARRAY['coercion']
        WHEN 2 THEN ARRAY['iioc'] WHEN 3 THEN ARRAY['iioc', 'safety']
        ELSE ARRAY['grooming', 'coercion'] END::varchar(16)[],
    'org-bench', 'account-' || i,
    c.at - interval '1 hour', c.at, c.at, c.at + interval '1 day',
    c.at + interval '2 days', c.at + interval '3 days',
    CASE WHEN s.status IN ('review', 'ready', 'submitted') THEN c.at + interval '1 day' END,
    CASE WHEN s.status IN ('review', 'ready', 'submitted') THEN s.status::text END,
    1, 'P2', 1
FROM generate_series(1, $1::int) AS i
CROSS JOIN LATERAL (SELECT $2::timestamptz - ($1::int - i) * interval '30 seconds' AS at) AS c
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN i % 50 = 0 THEN 'review' WHEN i % 50 = 1 THEN 'ready'
        WHEN i % 50 = 2 THEN 'submitted' WHEN i % 50 = 3 THEN 'acknowledged'
        WHEN i % 50 < 8 THEN 'dismissed' ELSE 'closed' END AS status
) AS s
"""
TRANSITIONS = """
INSERT INTO case_transitions (case_id, at, actor, from_status, to_status)
SELECT case_id, created_at, 'system', NULL, status FROM cases
"""
BIG_FLAGS = """
INSERT INTO flags (flag_id, org_id, source_kind, detected_at, received_at, body)
SELECT md5('flag' || j)::uuid, 'org-bench', 'bench', $2, $2, '{}'::jsonb
FROM generate_series(1, $1::int) AS j
"""
BIG_TASKS = """
INSERT INTO tasks (task_id, case_id, flag_id, decision, priority, routed_at, received_at, body,
                   attached_version)
SELECT md5('task' || j)::uuid, $3, md5('flag' || j)::uuid, 'refer', 'P2',
       $2::timestamptz + j * interval '1 ms', $2, '{}'::jsonb, 1
FROM generate_series(1, $1::int) AS j
"""
BIG_DECISIONS = """
INSERT INTO decisions (flag_id, outcome, priority, criteria, immediate_danger, policy_version,
                       decided_at, body)
SELECT md5('flag' || j)::uuid, 'refer', 'P2', ARRAY['grooming']::varchar(16)[], false, 'bench',
       $2, '{"outcome": "refer"}'::jsonb
FROM generate_series(1, $1::int) AS j
"""
BIG_TRANSITIONS = """
INSERT INTO case_transitions (case_id, at, actor, from_status, to_status, note)
SELECT $3, $2::timestamptz + j * interval '1 ms', 'system', 'ready', 'ready', 'supplement'
FROM generate_series(1, $1::int) AS j
"""


def plain_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def fill(url: str, bench: ApiBenchSettings, now: datetime) -> tuple[float, UUID]:
    """Fill the database; the seconds it took and the large case's id."""
    started = time.perf_counter()
    connection = await asyncpg.connect(plain_dsn(url))
    try:
        await connection.execute(FILL, bench.cases, now)
        await connection.execute(TRANSITIONS)
        big: UUID = await connection.fetchval(
            "SELECT case_id FROM cases WHERE status = 'ready' ORDER BY created_at LIMIT 1"
        )
        await connection.execute(BIG_FLAGS, bench.big_case, now)
        await connection.execute(BIG_TASKS, bench.big_case, now, big)
        await connection.execute(BIG_DECISIONS, bench.big_case, now)
        await connection.execute(BIG_TRANSITIONS, bench.big_case, now, big)
        await connection.execute(
            "UPDATE cases SET flag_count = $1 WHERE case_id = $2", bench.big_case + 1, big
        )
        # The steady state, not a bulk load's aftermath: vacuumed (hint bits set, so first
        # reads write nothing; no autovacuum of a million new rows mid-measurement), analysed,
        # and checkpointed (no checkpoint flushing the load's pages mid-measurement).
        await connection.execute("VACUUM ANALYZE")
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()
    return time.perf_counter() - started, big


def routes(bench: ApiBenchSettings, big: UUID, now: datetime) -> dict[str, str]:
    since = (now - timedelta(seconds=30 * bench.cases // 2)).isoformat().replace("+", "%2B")
    return {
        "/healthz (floor)": "/healthz",
        "case read": "/v1/cases/{case}",
        f"case read, {bench.big_case} flags+moves": f"/v1/cases/{big}",
        "flag read": "/v1/flags/{flag}",
        "list (no filter)": "/v1/cases",
        "list status=review": "/v1/cases?status=review",
        "list destination=iwf": "/v1/cases?destination=iwf",
        "list priority=P0": "/v1/cases?priority=P0",
        "list force": "/v1/cases?force=force-7",
        "list force+priority": "/v1/cases?force=force-7&priority=P1",
        "list criterion=safety": "/v1/cases?criterion=safety",
        "list since (middle)": f"/v1/cases?since={since}",
        "list status+since": f"/v1/cases?status=ready&since={since}",
        "list overdue": "/v1/cases?overdue=true",
        "list status=closed, 2nd page": "/v1/cases?status=closed&cursor={cursor}",
    }


def percentile(samples: list[float], p: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


async def at_rate(
    client: httpx.AsyncClient, paths: list[str], rate: float, seconds: float
) -> tuple[float, float, int]:
    """p50, p95 (ms) and non-200 answers of `rate` requests per second for `seconds`, open
    loop: each timed from when it was due."""
    count = max(int(rate * seconds), 1)
    latencies: list[float] = []
    errors = 0

    async def one(k: int, due: float) -> None:
        nonlocal errors
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            answer = await client.get(paths[k % len(paths)])
        except httpx.TransportError:
            errors += 1
        else:
            errors += answer.status_code != 200
        latencies.append((time.perf_counter() - due) * 1000)

    start = time.perf_counter() + 0.05
    await asyncio.gather(*(one(k, start + k / rate) for k in range(count)))
    return percentile(latencies, 50), percentile(latencies, 95), errors


@dataclass(frozen=True, slots=True)
class Api:
    """Which API to run: this tree's, or an older tree's (`source`), with `workers` processes."""

    workers: int = 1
    source: Path | None = None

    def command(self, port: int) -> list[str]:
        if self.source is None:
            return [str(CSAE), "referral", "api", "--port", str(port)]
        run = "import sys; from services.cli import main; sys.exit(main())"
        return [sys.executable, "-c", run, "referral", "api", "--port", str(port)]

    def environment(self, shims: Path) -> dict[str, str]:
        if self.source is None:
            return {"CSAE_API_WORKERS": str(self.workers)}
        # The older tree first on the path, and uvloop and httptools hidden: uvicorn then
        # runs asyncio's loop and h11, as that tree did.
        for module in ("uvloop", "httptools"):
            (shims / f"{module}.py").write_text("raise ImportError('not installed then')\n")
        return {"PYTHONPATH": f"{shims}:{self.source}"}

    def __str__(self) -> str:
        where = f"the tree at {self.source}" if self.source else "this tree"
        return f"{where}, {self.workers} process{'es' if self.workers > 1 else ''}"


async def serve(url: str, keys: Path, port: int, api: Api) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "CSAE_DATABASE_URL": url,
        "CSAE_API_KEYS_FILE": str(keys),
        "CSAE_API_CURSOR_SECRET": "bench",
        "CSAE_LOG_LEVEL": "WARNING",
        **api.environment(keys.parent),
    }
    process = await asyncio.create_subprocess_exec(*api.command(port), env=env, cwd=api.source)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as probe:
        for _ in range(300):
            try:
                if (await probe.get("/healthz")).status_code == 200:
                    return process
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the API did not start")


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=30)
        except TimeoutError:
            process.kill()
            await process.wait()


async def measure(
    url: str, keys: Path, key: str, bench: ApiBenchSettings, big: UUID, now: datetime, api: Api
) -> dict[str, tuple[float, float, int]]:
    from benchmarks.pipeline import free_port

    port = free_port()
    process = await serve(url, keys, port, api)
    results: dict[str, tuple[float, float, int]] = {}
    try:
        connection = await asyncpg.connect(plain_dsn(url))
        try:
            ids = [
                str(r["case_id"])
                for r in await connection.fetch(
                    "SELECT case_id FROM cases ORDER BY random() LIMIT 2000"
                )
            ]
            flags = [
                str(r["flag_id"])
                for r in await connection.fetch("SELECT flag_id FROM decisions ORDER BY random()")
            ]
        finally:
            await connection.close()
        # Idle connections are let go before uvicorn's keep-alive (5 s) closes them under us.
        limits = httpx.Limits(
            max_connections=256, max_keepalive_connections=256, keepalive_expiry=2
        )
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {key}"},
            limits=limits,
            timeout=60,
        ) as client:
            first = (await client.get("/v1/cases?status=closed")).json()
            cursor = first["next_cursor"]
            for name, path in routes(bench, big, now).items():
                if "{case}" in path:
                    paths = [path.format(case=i) for i in ids]
                elif "{flag}" in path:
                    paths = [path.format(flag=f) for f in flags]
                else:
                    paths = [path.format(cursor=cursor)]
                alone = []
                for p in (paths * 50)[:50]:  # one at a time: the cost of one request, no queue
                    started = time.perf_counter()
                    await client.get(p)
                    alone.append((time.perf_counter() - started) * 1000)
                results[f"{name} alone"] = (percentile(alone, 50), percentile(alone, 95), 0)
                results[name] = await at_rate(client, paths, bench.rate, bench.seconds)
    finally:
        await stop(process)
    return results


async def main() -> None:
    bench = ApiBenchSettings()
    now = datetime.now(UTC)
    url = await create_database("head")
    first, then = Api(1, bench.before_source), Api(bench.workers)
    try:
        seconds, big = await fill(url, bench, now)
        print(
            f"API reads: {bench.cases:,} cases made by SQL in {seconds:.1f} s; "
            f"{bench.rate:.0f} requests/s for {bench.seconds:.0f} s each; "
            f"before: {first}; after: {then}"
        )
        with TemporaryDirectory() as directory:
            keys = Path(directory) / "api_keys"
            key = create_key(keys, Role.INVESTIGATOR, holder="bench")
            before = await measure(url, keys, key, bench, big, now, first)
            after = await measure(url, keys, key, bench, big, now, then)
        print(f"  {'p50 / p95 ms (non-200)':<42} {'before':>22} {'after':>22}")
        for name, (b50, b95, berr) in before.items():
            a50, a95, aerr = after[name]
            print(
                f"  {name:<42} {b50:8.1f} / {b95:8.1f} ({berr})  {a50:8.1f} / {a95:8.1f} ({aerr})"
            )
    finally:
        await drop_database(url)


if __name__ == "__main__":
    asyncio.run(main())
