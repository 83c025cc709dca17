"""`make bench`: how long the pure core takes per flag (median of repeated runs), then the
pipeline on the real Kafka broker and PostgreSQL (`benchmarks/pipeline.py`).

Not part of `make test`: timings belong here, never in assertions of the test suite.
"""

import asyncio
import json
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from benchmarks import api, pipeline
from schemas.flag import ModerationFlag
from services.domain.forces import uk_forces
from services.domain.policy import default_policy, evaluate
from services.pipeline.decode import decode
from services.router.routing import Routing, route
from tests.factories import flag_document, image, signal

ROUNDS = 31
PER_ROUND = 2000


def median_microseconds(work: Callable[[], object]) -> float:
    """Median over ROUNDS of the mean time of PER_ROUND calls, in microseconds."""
    for _ in range(PER_ROUND):  # warm up
        work()
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter_ns()
        for _ in range(PER_ROUND):
            work()
        samples.append((time.perf_counter_ns() - start) / PER_ROUND / 1000)
    return statistics.median(samples)


def main() -> None:
    document = flag_document(
        signals=[
            signal("coercion", 0.91),
            signal("self_harm", 0.85),
            signal("iioc", 1.0, hash_match={"list": "synthetic-list", "match": "exact"}),
        ],
        content=[image("content-bench-1", public=True), image("content-bench-2")],
        child={"age_band": "13_15", "location": {"country": "GB", "postcode_district": "CV1"}},
    )
    raw = json.dumps(document).encode()
    flag = ModerationFlag.model_validate(document)
    policy, directory, now = default_policy(), uk_forces(), datetime.now(UTC)

    def routed() -> Routing:
        return route(flag, policy=policy, directory=directory, home_force_id="kent", now=now)

    def routed_cold() -> Routing:
        policy.verdicts.clear()  # as if these rules had never fired this way before,
        policy.by_traits.clear()  # nor a flag of these traits been seen
        return routed()

    def serialised() -> list[bytes]:
        routing = routed()
        return [routing.decision_json(), *(routing.task_json(t, raw) for t in routing.tasks)]

    results = {
        "policy evaluate (3 signals)": median_microseconds(lambda: evaluate(policy, flag)),
        "route: decision + tasks (3 signals)": median_microseconds(routed),
        "route, its rules firing so the first time": median_microseconds(routed_cold),
        "route + decision and tasks as JSON": median_microseconds(serialised),
        f"decode + validate ({len(raw)} bytes)": median_microseconds(
            lambda: decode(raw, ModerationFlag, max_bytes=256 * 1024)
        ),
    }
    print(f"median of {ROUNDS} rounds x {PER_ROUND} calls, one core")
    for name, micros in results.items():
        print(f"  {name:<40} {micros:8.1f} µs/flag")


if __name__ == "__main__":
    if os.environ.get("CSAE_BENCH_API") == "1":  # the case API's reads alone (benchmarks/api.py)
        asyncio.run(api.main())
    else:
        main()
        asyncio.run(pipeline.main())
