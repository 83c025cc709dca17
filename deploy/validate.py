"""Check the deployment files offline, as `make lint` does.

- hadolint on the Dockerfile;
- compose against the Compose Specification's JSON Schema (the copy check-jsonschema vendors);
- every Kubernetes manifest, and what each kustomization renders (`kubectl kustomize`), against
  the pinned Kubernetes version's schemas (kubernetes-validate, strict: an unknown field fails).
  Custom resources have no schema there: they are skipped by kind, each with its reason below,
  and checked by assertions in tests/unit/test_deploy.py. Any other kind without a schema fails.

    .venv/bin/python deploy/validate.py [--kubernetes DIR]

Prints one line per problem and exits 1 when there is any.
"""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import yaml
from kubernetes_validate.utils import SchemaNotFoundError  # type: ignore[import-untyped]

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
BIN = Path(sys.executable).parent
KUBERNETES_VERSION = "1.37.0"
"""The Kubernetes version whose schemas the manifests must match (kubernetes-validate's)."""
CRD_KINDS = {
    "ScaledObject": "KEDA CRD: checked by test_keda_scales_on_lag_within_partitions",
    "TriggerAuthentication": "KEDA CRD: checked by test_keda_scales_on_lag_within_partitions",
    "ServiceMonitor": "Prometheus Operator CRD: checked by test_service_monitor_scrapes_all",
    "PrometheusRule": "Prometheus Operator CRD: checked by test_prometheus_rule_is_the_rules_file",
    "Kustomization": "kustomize's own file: checked by rendering it with kubectl kustomize",
}
"""Kinds the pinned schemas do not hold, and why skipping them there is still safe."""


def documents(text: str) -> list[Any]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def manifests(root: Path) -> list[Path]:
    """The YAML files under `root` that hold resources: not JSON 6902 patches (lists of
    operations), nor the files kustomize makes ConfigMaps from (a policy, a directory)."""
    return sorted(
        p
        for p in root.rglob("*.yaml")
        if all(
            isinstance(d, dict) and {"apiVersion", "kind"} <= d.keys()
            for d in documents(p.read_text())
        )
    )


def resource_problems(resource: dict[str, Any], where: str) -> list[str]:
    kind = resource.get("kind", "")
    if kind in CRD_KINDS:
        return []
    name = f"{kind}/{resource.get('metadata', {}).get('name', '?')}"
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except SchemaNotFoundError:
        return [f"{where}: {name}: no schema in Kubernetes {KUBERNETES_VERSION} (a typo?)"]
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(p) for p in error.path) or "(top)"
        return [f"{where}: {name}: {path}: {error.message}"]
    return []


def render(kustomization: Path) -> str:
    done = subprocess.run(
        ["kubectl", "kustomize", str(kustomization)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {kustomization}: {done.stderr.strip()}")
    return done.stdout


def kubernetes_problems(root: Path) -> list[str]:
    """Every manifest's and every kustomize render's problems against the pinned schemas."""
    problems: list[str] = []
    for path in manifests(root):
        for resource in documents(path.read_text()):
            problems += resource_problems(resource, str(path.relative_to(root)))
    if shutil.which("kubectl") is None:
        # Machines of this kind carry kubectl; one without it still checks every manifest,
        # and says loudly what it could not check rather than failing the whole lint.
        print("deploy: WARNING: no kubectl here: the kustomize renders were not checked")
        return problems
    for kustomization in sorted(root.rglob("kustomization.yaml")):
        where = f"kustomize {kustomization.parent.relative_to(root)}"
        try:
            rendered = documents(render(kustomization.parent))
        except RuntimeError as error:
            problems.append(str(error))
            continue
        for resource in rendered:
            problems += resource_problems(resource, where)
    return problems


def tool_problems(command: list[str]) -> list[str]:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return []
    return [f"{' '.join(command)}:\n{done.stdout}{done.stderr}".rstrip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes", type=Path, default=DEPLOY / "kubernetes")
    parser.add_argument("--compose", type=Path, default=DEPLOY / "compose.yaml")
    parser.add_argument("--dockerfile", type=Path, default=ROOT / "Dockerfile")
    args = parser.parse_args()
    problems = [
        *tool_problems([str(BIN / "hadolint"), "--no-color", str(args.dockerfile)]),
        *tool_problems(
            [
                str(BIN / "check-jsonschema"),
                "--builtin-schema",
                "vendor.compose-spec",
                str(args.compose),
            ]
        ),
        *kubernetes_problems(args.kubernetes),
    ]
    for problem in problems:
        print(problem)
    if not problems:
        skipped = ", ".join(sorted(CRD_KINDS))
        print(
            f"deploy: Dockerfile (hadolint), compose (Compose Specification), Kubernetes "
            f"manifests and kustomize renders ({KUBERNETES_VERSION}, strict; skipped: {skipped}) ok"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
