"""The container image, compose stack and Kubernetes manifests, checked offline.

No Docker engine or cluster here. `make lint` runs deploy/validate.py: hadolint on the
Dockerfile, compose against the Compose Specification's JSON Schema, every Kubernetes manifest
and kustomize render against the pinned Kubernetes version's schemas. Here: that those checks
refuse what they must (so a green lint means something), and what the schemas cannot say: the
Dockerfile's stages, compose's and the pods' lock-down, and the CRDs (KEDA, Prometheus
Operator), which have no schema there.
"""

import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.domain.organisations import read_directory
from services.pipeline.settings import Settings
from tests.scripts import load_script

validate = load_script("deploy/validate.py", "csae_deploy_validate")
generate = load_script("deploy/kubernetes/generate.py", "csae_kubernetes_generate")

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose.yaml"
K8S = ROOT / "deploy" / "kubernetes"
NON_ROOT_UID = 10001


def _documents(path: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = validate.documents(path.read_text())
    return found


def _manifests() -> list[Path]:
    found: list[Path] = validate.manifests(K8S)
    return found


def _all_resources() -> list[dict[str, Any]]:
    return [d for path in _manifests() for d in _documents(path)]


def _stages() -> dict[str, list[str]]:
    """The Dockerfile's instructions by stage name, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = match.group(1)
            stages[current] = []
        elif current:
            stages[current].append(line)
    return stages


def _csae_commands_work(args: list[str]) -> None:
    done = subprocess.run(
        [str(BIN / "csae"), *args, "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, (args, done.stderr)


# --- the image ---------------------------------------------------------------------------------


def test_hadolint_refuses_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install -y gcc\n")
    (problem,) = validate.tool_problems([str(BIN / "hadolint"), "--no-color", str(bad)])
    assert "DL3007" in problem  # the latest tag
    assert "DL3008" in problem  # unpinned apt packages


def test_dockerfile_builds_in_one_stage_and_runs_in_a_clean_one() -> None:
    stages = _stages()
    assert list(stages) == ["uv", "builder", "runtime"]
    builder = " ".join(stages["builder"])
    assert "uv sync --frozen --no-dev --no-install-project" in builder
    assert "uv sync --frozen --no-dev --no-editable" in builder
    assert "UV_COMPILE_BYTECODE=1" in builder
    runtime = stages["runtime"]
    joined = " ".join(runtime)
    # No compiler, package install or uv in the final stage: only the built venv is copied.
    for banned in ("apt-get", "gcc", "build-essential", "pip install", "uv sync", "/uv "):
        assert banned not in joined, banned
    assert "COPY --from=builder /opt/csae /opt/csae" in runtime
    assert "PYTHONDONTWRITEBYTECODE=1" in joined
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users == [f"{NON_ROOT_UID}:{NON_ROOT_UID}"], "a numeric non-root user, last"
    assert runtime[-2:] == ['ENTRYPOINT ["csae"]', 'CMD ["--help"]']


def test_dockerfile_uses_the_makefiles_uv() -> None:
    wanted = re.search(r"^UV_VERSION := (\S+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert wanted is not None
    assert f"ghcr.io/astral-sh/uv:{wanted.group(1)} AS uv" in DOCKERFILE.read_text()


def test_dockerignore_lets_in_only_the_sources() -> None:
    lines = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!uv.lock", "!README.md", "!schemas/", "!services/"} <= set(lines)


# --- compose -----------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_schema_check_refuses_a_typo(tmp_path: Path) -> None:
    broken = _compose()
    broken["services"]["router"]["helthcheck"] = {}
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    check = [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]
    (problem,) = validate.tool_problems([*check, str(path)])
    assert "helthcheck" in problem


def test_compose_runs_the_pipeline_locked_down() -> None:
    compose = _compose()
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    csae = {name: s for name, s in services.items() if s.get("image") == "csae-referrals:local"}
    assert set(csae) == {"migrate", "topics", "router", "worker", "api"}
    for name, service in csae.items():
        assert service["read_only"] is True, name
        assert service["user"] == f"{NON_ROOT_UID}:{NON_ROOT_UID}", name
        assert service["cap_drop"] == ["ALL"], name
        assert "csae_database_url" in service["secrets"], name
        env = service["environment"]
        assert not any("PASSWORD" in key or key == "CSAE_DATABASE_URL" for key in env), name
        _csae_commands_work(service["command"])
    for name in ("router", "worker", "api", "kafka", "postgres", "prometheus", "grafana"):
        assert "healthcheck" in services[name], name
    for name, port in (("api", 8000), ("router", 9101), ("worker", 9102)):
        assert f"127.0.0.1:{port}/readyz" in " ".join(services[name]["healthcheck"]["test"]), name
    for name in ("router", "worker"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "topics": {"condition": "service_completed_successfully"},
        }
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./compose/secrets/"), "by make-secrets.sh, git-ignored"
    assert (COMPOSE.parent / "compose" / ".gitignore").read_text().count("secrets/") == 1
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), source
    assert (COMPOSE.parent / services["migrate"]["build"]["context"] / "Dockerfile").exists()


# --- Kubernetes --------------------------------------------------------------------------------


def test_kubernetes_check_refuses_unknown_fields_and_kinds_and_skips_only_named_crds(
    tmp_path: Path,
) -> None:
    router = _documents(K8S / "base" / "router.yaml")
    router[0]["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    typo = {"apiVersion": "v1", "kind": "ConfigMapp", "metadata": {"name": "x"}}
    crd = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "y"}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump_all([*router, typo, crd]))
    problems = validate.kubernetes_problems(tmp_path)
    assert len(problems) == 2, problems
    assert "Deployment/csae-router" in problems[0]
    assert "livenessprobe" in problems[0]
    assert "ConfigMapp/x: no schema" in problems[1]
    # Every kind skipped is one the manifests use (no stale reason stays behind).
    used = {r["kind"] for r in _all_resources()}
    assert set(validate.CRD_KINDS) <= used


def _workloads() -> dict[str, dict[str, Any]]:
    return {
        r["metadata"]["name"]: r for r in _all_resources() if r["kind"] in {"Deployment", "Job"}
    }


def test_every_pod_runs_restricted() -> None:
    workloads = _workloads()
    assert set(workloads) == {"csae-router", "csae-worker", "csae-api", "csae-db-upgrade"}
    for name, workload in workloads.items():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == NON_ROOT_UID, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["requests"], name
            assert container["resources"]["limits"]["memory"], name
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts, name  # noqa: S108 (the writable emptyDir)
            env = {e["name"]: e for e in container.get("env", [])}
            assert "secretKeyRef" in env["CSAE_DATABASE_URL"]["valueFrom"], name
            _csae_commands_work(container["args"])


def test_long_running_pods_have_probes_that_mean_something() -> None:
    workloads = _workloads()
    api = workloads["csae-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e for e in api["env"]}
    assert "secretKeyRef" in env["CSAE_API_CURSOR_SECRET"]["valueFrom"], "shared by replicas"
    for name in ("csae-router", "csae-worker"):
        container = workloads[name]["spec"]["template"]["spec"]["containers"][0]
        paths = {
            probe: container[probe]["httpGet"]
            for probe in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        assert paths == {
            "startupProbe": {"path": "/healthz", "port": "metrics"},
            "livenessProbe": {"path": "/healthz", "port": "metrics"},
            "readinessProbe": {"path": "/readyz", "port": "metrics"},
        }, name
        # Restarted only after longer than a stall takes to show, so a hang, not a slow batch.
        live = container["livenessProbe"]
        assert live["periodSeconds"] * live["failureThreshold"] >= 60, name


def test_every_deployment_has_a_disruption_budget() -> None:
    resources = _all_resources()
    budgets = {
        r["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for r in resources
        if r["kind"] == "PodDisruptionBudget"
    }
    deployments = {r["metadata"]["name"] for r in resources if r["kind"] == "Deployment"}
    assert deployments == budgets


def test_keda_scales_on_lag_within_partitions() -> None:
    partitions = Settings().kafka_topic_partitions
    settings = Settings()
    scaled = {r["metadata"]["name"]: r for r in _all_resources() if r["kind"] == "ScaledObject"}
    wanted = {
        "csae-router": (settings.router_group, settings.topic_flags),
        "csae-worker": (settings.referral_group, settings.topic_referrals),
    }
    assert set(scaled) == set(wanted)
    for name, (group, topic) in wanted.items():
        spec = scaled[name]["spec"]
        assert spec["scaleTargetRef"]["name"] == name
        assert 1 < spec["minReplicaCount"] <= spec["maxReplicaCount"] == partitions
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert (meta["consumerGroup"], meta["topic"]) == (group, topic)
        assert meta["allowIdleConsumers"] == "false"
        assert int(meta["lagThreshold"]) > 0
    (auth,) = [r for r in _all_resources() if r["kind"] == "TriggerAuthentication"]
    assert {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]} == {
        "username",
        "password",
        "ca",
    }


def test_service_monitor_scrapes_all() -> None:
    (monitor,) = [r for r in _all_resources() if r["kind"] == "ServiceMonitor"]
    (selector,) = monitor["spec"]["selector"]["matchExpressions"]
    assert set(selector["values"]) == {"csae-router", "csae-worker", "csae-api"}
    ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    services = [r for r in _all_resources() if r["kind"] == "Service"]
    for service in services:
        assert {p["name"] for p in service["spec"]["ports"]} <= ports
    # Each target's job is the one the alert rules name (CsaeProcessDown, CsaeUnprocessableFlags).
    rules = (ROOT / "deploy" / "prometheus" / "csae-alerts.yaml").read_text()
    label = monitor["spec"]["jobLabel"]
    jobs = {service["metadata"]["labels"][label] for service in services}
    assert jobs == {"csae-router", "csae-worker", "csae-api"}
    assert all(f'job="{job}"' in rules for job in jobs)


def test_no_secret_is_committed() -> None:
    assert not [r for r in _all_resources() if r["kind"] == "Secret"]


@pytest.mark.parametrize("overlay", ["base", "overlays/production"])
def test_kustomize_labels_every_resource_and_pod(overlay: str) -> None:
    rendered = _rendered(overlay)
    assert len(rendered) >= 20
    for resource in rendered:
        assert resource["metadata"]["labels"]["app.kubernetes.io/part-of"] == "csae-referrals"
        if resource["kind"] == "Deployment":
            labels = resource["spec"]["template"]["metadata"]["labels"]
            assert labels["app.kubernetes.io/part-of"] == "csae-referrals", "NetworkPolicies"


def test_generated_kubernetes_files_are_fresh() -> None:
    for path, text in generate.rendered().items():
        assert path.read_text() == text, (
            f"{path.relative_to(ROOT)} is stale: run .venv/bin/python deploy/kubernetes/generate.py"
        )


@functools.cache
def _rendered(overlay: str) -> list[dict[str, Any]]:
    """What `kubectl kustomize` makes of the overlay (once per run: each takes a second)."""
    if shutil.which("kubectl") is None:
        pytest.skip("no kubectl on this machine to render the kustomizations")
    done = subprocess.run(
        ["kubectl", "kustomize", str(K8S / overlay)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d is not None]


def test_prometheus_rule_is_the_rules_file() -> None:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "csae-alerts.yaml").read_text())
    (rule,) = [r for r in _all_resources() if r["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == rules["groups"]
    alerts = [a for g in rule["spec"]["groups"] for a in g["rules"]]
    assert all((ROOT / a["annotations"]["runbook_url"]).exists() for a in alerts)


def test_dashboards_config_map_holds_every_dashboard_for_grafanas_sidecar() -> None:
    (maps,) = [
        r for r in _all_resources() if r.get("metadata", {}).get("name") == "csae-dashboards"
    ]
    assert maps["metadata"]["labels"]["grafana_dashboard"] == "1"
    committed = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
    assert maps["data"] == {p.name: p.read_text() for p in committed}
    # Under the 262,144 bytes `kubectl apply` can keep in its last-applied annotation.
    assert len((K8S / "base" / "grafana-dashboards.yaml").read_bytes()) < 200_000


@pytest.mark.parametrize("overlay", ["base", "overlays/production"])
def test_every_process_reads_the_policy_forces_and_directory_from_config_maps(
    overlay: str,
) -> None:
    rendered = _rendered(overlay)
    maps = {r["metadata"]["name"]: r for r in rendered if r["kind"] == "ConfigMap"}
    config = next(m["data"] for name, m in maps.items() if name.startswith("csae-config"))
    files = {
        "CSAE_POLICY_FILE": "csae-policy",
        "CSAE_FORCES_FILE": "csae-forces",
    }
    if overlay != "base":
        files["CSAE_ORG_DIRECTORY_FILE"] = "csae-organisations"
    deployments = [r for r in rendered if r["kind"] == "Deployment"]
    assert len(deployments) == 3
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        for variable, prefix in files.items():
            path = Path(config[variable])
            volume = volumes[mounts[str(path.parent)]]
            name = volume["configMap"]["name"]
            assert name.startswith(prefix), (deployment["metadata"]["name"], variable)
            assert path.name in maps[name]["data"], (name, path.name)  # the file is in it
    assert (
        maps[next(n for n in maps if n.startswith("csae-policy"))]["data"]["policy.yaml"]
        == (ROOT / "services" / "domain" / "data" / "policy.yaml").read_text()
    )
    if overlay != "base":
        example = next(m for n, m in maps.items() if n.startswith("csae-organisations"))
        read_directory(example["data"]["organisations.yaml"], source="the overlay's example")
