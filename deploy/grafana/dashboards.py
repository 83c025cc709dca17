"""The Grafana dashboards, as code: `python deploy/grafana/dashboards.py` writes
deploy/grafana/dashboards/*.json (committed; tests/unit/test_dashboards.py fails when stale).

Plain dictionaries in Grafana's dashboard JSON model (schemaVersion 39), so no SDK is needed.
Every panel says what to do when it looks wrong and links the runbook of the alert that watches
the same thing. `PANELS` is read by tests/e2e/test_prometheus.py, which asks a real Prometheus
for every expression; `allow_empty` says why a panel may rightly have no data in a short run.
"""

import json
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
OUT = HERE / "dashboards"
RUNBOOKS = "docs/runbooks"
"""Runbook links are paths from the repository root, as the alert rules' `runbook_url` are."""
JOBS = 'job=~"csae-.*"'


@dataclass(frozen=True)
class Panel:
    title: str
    expr: str
    description: str
    legend: str = ""
    unit: str = "short"
    kind: str = "timeseries"
    runbook: str | None = None
    """The alert that watches this panel's metric; its runbook is linked from the panel."""
    allow_empty: str | None = None
    """Why the query may rightly return nothing in a short healthy run (None: it must not)."""


def _p95(stage: str, priority: str) -> str:
    return (
        "histogram_quantile(0.95, sum by (le) (rate(csae_stage_seconds_bucket"
        f'{{stage="{stage}", priority="{priority}"}}[5m])))'
    )


REFERRALS = [
    Panel(
        "Flags in per second, by outcome",
        "sum by (outcome) (rate(csae_router_flags_total[5m]))",
        "Flags the router read. Zero while platforms are sending: check the router is up "
        "(Services dashboard) and its consumer lag below. A jump in `rejected`: see dead letters.",
        "{{outcome}}",
        "reqps",
    ),
    Panel(
        "Decisions by outcome and criterion",
        "sum by (outcome, criterion, mode) (rate(csae_router_decisions_total[5m]))",
        "Router decisions. A criterion that stops appearing, or a shadow rule disagreeing with "
        "the active one, may mean a policy change went wrong: compare with the policy file's "
        "history before anything else.",
        "{{outcome}} {{criterion}} {{mode}}",
        "reqps",
    ),
    Panel(
        "Referral tasks by priority and destination",
        "sum by (priority, destination) (rate(csae_referral_tasks_total[5m]))",
        "Tasks the router emitted. P0 tasks mean a child may be in immediate danger: each one "
        "should reach `ready` within its deadline; watch the latency panels and overdue cases.",
        "{{priority}} {{destination}}",
        "reqps",
    ),
    Panel(
        "P0 detected → routed (p95)",
        _p95("detected_to_routed", "P0"),
        "From the platform's detection to the router's decision, for P0 flags. Rising: the "
        "router is behind (consumer lag) or platforms send late; scale routers or find the "
        "slow source.",
        "p95",
        "s",
        allow_empty="needs a P0 flag routed in the last 5 minutes",
    ),
    Panel(
        "P0 routed → ready (p95)",
        _p95("routed_to_ready", "P0"),
        "From decision to a case ready to send, for P0. Rising: the referral worker is behind "
        "or the database is slow; see consumer lag, batch failures and the Services dashboard.",
        "p95",
        "s",
        runbook="CsaeSlowToReady",
        allow_empty="needs a P0 case made ready in the last 5 minutes",
    ),
    Panel(
        "Cases overdue, by priority and stage",
        "max by (priority, stage) (csae_cases_overdue)",
        "Open cases past the deadline of their stage, at the last SLA sweep. Any P0 or P1: act "
        "now, the case may need a phone call to the police (runbook).",
        "{{priority}} {{stage}}",
        runbook="CsaeUrgentCasesOverdue",
        allow_empty="set only for (priority, stage) pairs with overdue cases; none in a fresh run",
    ),
    Panel(
        "SLA breaches (last hour)",
        "sum by (priority, stage) (increase(csae_sla_breaches_total[1h]))",
        "Stages done late or not done by their deadline. Any P0 breach pages: follow the "
        "runbook, then find why the case was late (overdue cases, lag, the worker's logs).",
        "{{priority}} {{stage}}",
        runbook="CsaeP0SlaBreach",
    ),
    Panel(
        "SLA sweep age",
        "time() - max(csae_sla_last_sweep_timestamp_seconds)",
        "Seconds since a worker last completed the SLA sweep. Above two minutes: overdue cases "
        "and breaches are not being found; check the referral workers and the database.",
        "age",
        "s",
        runbook="CsaeSlaSweepStale",
    ),
    Panel(
        "Consumer lag per group (from the broker)",
        "max by (group, topic) (csae_consumer_lag)",
        "Messages not yet committed by each consumer group. Rising steadily: the group is stuck "
        "or too slow; look for batch failures and parked messages, then scale out (up to the "
        "partition count).",
        "{{group}} {{topic}}",
        runbook="CsaeConsumerLag",
    ),
    Panel(
        "Batch failures (last 15 min)",
        "sum by (group) (increase(csae_batch_failures_total[15m]))",
        "Batches retried after a transient error (broker or database). Non-zero for minutes: a "
        "partition is blocked; check the database and broker, then the runbook.",
        "{{group}}",
        runbook="CsaeBatchFailing",
    ),
    Panel(
        "Dead letters by reason (last hour)",
        "sum by (topic, reason) (increase(csae_dlq_messages_total[1h]))",
        "Messages refused to the dead-letter topic. `unknown_organisation` and schema reasons "
        "mean a platform's integration is wrong: tell it; `unprocessable` needs the runbook.",
        "{{topic}} {{reason}}",
        runbook="CsaeFlagsRefused",
        allow_empty="needs a refused message in the run; the e2e sample flow sends two",
    ),
    Panel(
        "Unprocessable messages (last hour)",
        "sum by (group, topic) (increase(csae_unprocessable_total[1h]))",
        "Messages that could not be stored after bounded tries: parked and dead-lettered. Each "
        "may be a child's referral: replay it once the cause is fixed (`csae parked replay`).",
        "{{group}} {{topic}}",
        runbook="CsaeUnprocessableFlags",
    ),
    Panel(
        "Parked messages waiting for a person",
        "max(csae_parked_messages)",
        "Parked messages nobody has resolved. Above zero: list them (`csae parked list`), fix "
        "the cause and replay.",
        "parked",
        runbook="CsaeMessagesParked",
    ),
    Panel(
        "Flood breaker open, by source",
        "max by (source) (csae_breaker_open)",
        "1 while a source's referrals are held as reviews because it flooded. Check whether the "
        "source is broken or a real surge; close it with `csae breaker close` when safe.",
        "{{source}}",
        runbook="CsaeFloodBreakerOpen",
        allow_empty="exported only for sources with a breaker; none opens in a short run",
    ),
    Panel(
        "Referrals held or passed by a breaker (last hour)",
        "label_replace(sum by (source) (increase(csae_breaker_held_total[1h])),"
        ' "what", "held", "", "")'
        " or label_replace(sum by (source) (increase(csae_breaker_passed_total[1h])),"
        ' "what", "passed", "", "")',
        "Referral tasks a source's open breaker held as reviews, and immediate-danger ones it "
        "let through. Held referrals wait for a person: review them as soon as the breaker's "
        "cause is known (runbook).",
        "{{source}} {{what}}",
        runbook="CsaeFloodBreakerOpen",
        allow_empty="counted only when a breaker is open; the suite turns the breaker off",
    ),
    Panel(
        "Case escalations (last hour)",
        "sum by (rule, priority) (increase(csae_case_escalations_total[1h]))",
        "Tasks made because a policy escalation fired across a case's flags. A surge: check the "
        "escalation rules and the accounts involved; a P0 escalation needs the P0 panels.",
        "{{rule}} {{priority}}",
        allow_empty="needs several flags on one account that trigger an escalation",
    ),
    Panel(
        "Firing alerts",
        'sum by (alertname, severity) (ALERTS{alertstate="firing"})',
        "Alerts firing now. Each alert's runbook is docs/runbooks/<alertname>.md.",
        "{{alertname}} ({{severity}})",
        kind="table",
        allow_empty="no alert fires in a healthy run",
    ),
]

CASES = [
    Panel(
        "Cases written by destination and status",
        "sum by (destination, status) (rate(csae_cases_written_total[5m]))",
        "Case rows created or extended by the referral worker. Falls to zero while referrals "
        "flow in: the worker is stuck; see consumer lag and batch failures.",
        "{{destination}} {{status}}",
        "reqps",
    ),
    Panel(
        "Statutory reports to the NCA: cases written, by status",
        'sum by (status) (rate(csae_cases_written_total{destination="nca"}[5m]))',
        "NCA cases (Online Safety Act s.66) created or extended: a regulated service's CSEA "
        "content. Their clocks are the NCA's own, tighter than the police's (P1 sent within "
        "1 h): overdue ones page as any other case, by priority.",
        "{{status}}",
        "reqps",
        runbook="CsaeP1SlaBreach",
        allow_empty="needs an organisation listed with nca in reports_to (none in the sample flow)",
    ),
    Panel(
        "Review cases opened (last 24h)",
        'sum by (destination) (increase(csae_cases_written_total{status="review"}[24h]))',
        "Cases that need a person's review. A rising number with overdue reviews below: the "
        "review team needs more hands.",
        "{{destination}}",
        allow_empty="needs a review case in the run (the sample flow has one)",
    ),
    Panel(
        "Review backlog, by priority",
        "max by (priority) (csae_review_backlog_cases)",
        "Cases waiting for a person's review now (read at every SLA sweep). Growing while "
        "reviews are overdue: the review team needs more hands; P0 and P1 first.",
        "{{priority}}",
    ),
    Panel(
        "Oldest review waiting, by priority",
        "max by (priority) (csae_review_oldest_seconds)",
        "How long the oldest case waiting for review has waited. Near the review deadline (15 "
        "min for P0, 4 h otherwise): open GET /v1/cases?status=review and take it now.",
        "{{priority}}",
        "s",
        runbook="CsaeCasesOverdue",
    ),
    Panel(
        "Review backlog overdue, by priority",
        'max by (priority) (csae_cases_overdue{stage="review"})',
        "Cases waiting for review past their deadline. Above zero: reviewers must pick these "
        "first, oldest and highest priority first.",
        "{{priority}}",
        runbook="CsaeCasesOverdue",
        allow_empty="set only when reviews are overdue; none in a fresh run",
    ),
    Panel(
        "Supplements, by destination (last 24h)",
        "sum by (destination) (increase(csae_supplements_total[24h]))",
        "Cases already sent that are ready again with a supplementary packet: flags arrived "
        "after the referral was sent (counted by the worker), or a person sent an older version "
        "than the latest (counted by the API). Each one waits for a person to send it, quoting "
        "the first reference: rising for one destination while cases there are overdue at "
        "submitted, open GET /v1/cases?status=ready&destination=... and send them.",
        "{{destination}}",
        runbook="CsaeUrgentCasesOverdue",
    ),
    Panel(
        "Time in each stage (p95)",
        "histogram_quantile(0.95, sum by (le, stage) (rate(csae_stage_seconds_bucket[1h])))",
        "How long cases spend between stages. A stage creeping up toward its deadline: find "
        "whether people (review, submission) or the pipeline (routing, ready) are slow.",
        "{{stage}}",
        "s",
    ),
    Panel(
        "Time in each stage (median)",
        "histogram_quantile(0.5, sum by (le, stage) (rate(csae_stage_seconds_bucket[1h])))",
        "The typical time between stages; compare with the p95 to tell a few slow cases from "
        "a slow pipeline.",
        "{{stage}}",
        "s",
    ),
]

SERVICES = [
    Panel(
        "Up, per process",
        f"up{{{JOBS}}}",
        "1 while Prometheus can scrape the process. 0: the process is down or unreachable; "
        "check it and its logs. No referral moves while the worker is down.",
        "{{job}} {{instance}}",
    ),
    Panel(
        "Restarts and scrape gaps (last hour)",
        f"changes(up{{{JOBS}}}[1h])",
        "How often each process went down or came back. Repeated: it is crash-looping; read "
        "its logs (startup validation errors name the setting at fault).",
        "{{job}} {{instance}}",
    ),
    Panel(
        "Partitions owned, per consumer",
        "max by (group, job, instance) (csae_consumer_assigned_partitions)",
        "Partitions each router and worker owns in its consumer group; together they own all of "
        "their topics' partitions (12 each by default). One at 0 while others own many: it is "
        "rejoining, or there are more replicas than partitions. All at 0, or jumping: the group "
        "keeps rebalancing; look for 'partitions revoked' in the logs and a process that "
        "restarts (its /healthz on the metrics port says why).",
        "{{group}} {{instance}}",
        runbook="CsaeConsumerLag",
    ),
    Panel(
        "Event-loop lag (p99)",
        "histogram_quantile(0.99, sum by (le, job, instance)"
        " (rate(csae_event_loop_lag_seconds_bucket[5m])))",
        "How late each process's event loop runs timers. Above ~0.1 s: something blocks it "
        "(CPU-bound work, a synchronous call); throughput and heartbeats suffer.",
        "{{job}} {{instance}}",
        "s",
    ),
    Panel(
        "HTTP requests by route and status",
        "sum by (route, status) (rate(csae_http_requests_total[5m]))",
        "Case API traffic by route template. Many 401/403: a client lost its key or a key is "
        "being guessed; many 413: a client sends oversized bodies.",
        "{{route}} {{status}}",
        "reqps",
    ),
    Panel(
        "HTTP 5xx by route",
        'sum by (route) (rate(csae_http_requests_total{status=~"5.."}[5m]))'
        " or sum by (route) (rate(csae_http_requests_total[5m])) * 0",
        "Server errors of the case API. Any: read the API log by request id (errors are "
        "logged by type); usually the database.",
        "{{route}}",
        "reqps",
    ),
    Panel(
        "HTTP latency by route (p95)",
        "histogram_quantile(0.95, sum by (le, route) (rate(csae_http_request_seconds_bucket[5m])))",
        "Time to answer. Rising on every route: database or pool saturation (below); on one "
        "route: that query.",
        "{{route}}",
        "s",
    ),
    Panel(
        "Database pool in use",
        "max by (job, instance) (csae_db_pool_in_use_connections)"
        " / max by (job, instance) (csae_db_pool_size_connections)",
        "Share of the pool's connections checked out. Near or above 1 for long: requests wait "
        "for connections; look for slow queries or add API replicas.",
        "{{job}} {{instance}}",
        "percentunit",
    ),
]

DASHBOARDS = {
    "csae-referrals": ("CSAE referrals (on-call)", REFERRALS),
    "csae-cases": ("CSAE cases", CASES),
    "csae-services": ("CSAE services", SERVICES),
}
PANELS = [panel for _, panels in DASHBOARDS.values() for panel in panels]


def _panel(panel: Panel, index: int) -> dict[str, object]:
    links = []
    if panel.runbook is not None:
        links.append(
            {"title": f"Runbook: {panel.runbook}", "url": f"{RUNBOOKS}/{panel.runbook}.md"}
        )
    body: dict[str, object] = {
        "id": index + 1,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "targets": [
            {
                "refId": "A",
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "expr": panel.expr,
                "legendFormat": panel.legend,
                **({"instant": True, "format": "table"} if panel.kind == "table" else {}),
            }
        ],
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "links": links,
        "options": {},
    }
    return body


def dashboard(uid: str, title: str, panels: list[Panel]) -> dict[str, object]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["csae"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                }
            ]
        },
        "links": [
            {"title": t, "url": f"/d/{u}", "type": "link"}
            for u, (t, _) in DASHBOARDS.items()
            if u != uid
        ],
        "panels": [_panel(panel, i) for i, panel in enumerate(panels)],
    }


def rendered() -> dict[str, str]:
    """Each dashboard's file name and JSON text, as committed."""
    return {
        f"{uid}.json": json.dumps(dashboard(uid, title, panels), indent=2, ensure_ascii=False)
        + "\n"
        for uid, (title, panels) in DASHBOARDS.items()
    }


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, text in rendered().items():
        (OUT / name).write_text(text)
        sys.stdout.write(f"wrote {OUT / name}\n")


if __name__ == "__main__":
    main()
