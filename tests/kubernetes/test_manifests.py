"""deploy/kubernetes/ rendered and checked offline: schemas, probes, scale bounds, secrets.

Core objects are validated with kubernetes-validate in strict mode (unknown fields are errors)
for KUBERNETES_VERSION; the KEDA ScaledObject against KEDA's own CRD schema (committed under
schemas/, with its source), made strict the same way.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from madbwpu_r.worker.supervisor import ScalingPolicy
from tests.kubernetes.manifests import (
    CONTAINERFILE,
    DEPLOY,
    KUBERNETES_VERSION,
    OVERLAYS,
    ROOT,
    of_kind,
    one,
    probe_port,
    render,
)

KEDA_CRD = Path(__file__).parent / "schemas" / "keda.sh_scaledobjects.yaml"
TIERS = ("api", "edge", "worker")
ENGINE_KEYS = {
    "MADBWPU_R_QUEUE_URL",
    "MADBWPU_R_REDIS_URL",
    "MADBWPU_R_STORE_URL",
    "MADBWPU_R_BLOB_URL",
}


@cache
def rendered(overlay: str) -> list[dict[str, Any]]:
    return render(overlay)


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def objects(overlay: str) -> list[dict[str, Any]]:
    return rendered(overlay)


def deployment(objects: list[dict[str, Any]], tier: str) -> dict[str, Any]:
    return one(objects, "Deployment", f"madbwpu-r-{tier}")


def strict(schema: Any) -> Any:
    """Refuse fields the schema does not name, as kubernetes-validate --strict does.

    The API server would silently prune them (structural schemas), so a typo such as
    `minReplicas` in a ScaledObject would otherwise pass unnoticed.
    """
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@cache
def keda_schema() -> dict[str, Any]:
    crd = next(d for d in yaml.safe_load_all(KEDA_CRD.read_text()) if d)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    schema = strict(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"]["additionalProperties"] = True  # ObjectMeta: checked by k8s
    return schema


def test_both_overlays_render_every_tier(objects, overlay):
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for tier in TIERS:
        assert ("Deployment", f"madbwpu-r-{tier}") in kinds
        assert ("PodDisruptionBudget", f"madbwpu-r-{tier}") in kinds
    assert ("Service", "madbwpu-r-api") in kinds and ("Service", "madbwpu-r-edge") in kinds
    assert ("HorizontalPodAutoscaler", "madbwpu-r-api") in kinds
    assert ("HorizontalPodAutoscaler", "madbwpu-r-edge") in kinds
    assert ("ScaledObject", "madbwpu-r-worker") in kinds
    namespaces = {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}
    assert namespaces == {f"madbwpu-r-{overlay}"}


def test_core_objects_pass_strict_schema_validation(objects):
    core = [o for o in objects if not o["apiVersion"].startswith("keda.sh/")]
    assert len(core) >= 12
    for obj in core:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_strict_validation_catches_an_unknown_field(objects):
    broken = copy.deepcopy(deployment(objects, "api"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_scaled_object_passes_kedas_crd_schema(objects):
    scaled = one(objects, "ScaledObject", "madbwpu-r-worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    jsonschema.validate(scaled, keda_schema())
    typo = copy.deepcopy(scaled)
    typo["spec"]["minReplicas"] = typo["spec"].pop("minReplicaCount")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(typo, keda_schema())


def test_keda_scales_workers_with_the_supervisors_policy(objects, overlay):
    policy = ScalingPolicy()
    scaled = one(objects, "ScaledObject", "madbwpu-r-worker")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == deployment(objects, "worker")["metadata"]["name"]
    assert spec["minReplicaCount"] == policy.min_workers
    assert spec["maxReplicaCount"] == policy.max_workers
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == policy.cooldown
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    # AverageValue: wanted replicas = ceil(query / threshold), the supervisor's rule.
    assert float(trigger["metadata"]["threshold"]) == policy.jobs_per_worker
    query = trigger["metadata"]["query"]
    assert set(re.findall(r"madbwpu_r_\w+", query)) == {
        "madbwpu_r_queue_ready",
        "madbwpu_r_queue_in_flight",
    }
    assert query.count(f'namespace="madbwpu-r-{overlay}"') == 2


def test_every_tier_has_probes_resources_and_runs_as_non_root(objects):
    for tier in TIERS:
        pod = deployment(objects, tier)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        (container,) = pod["containers"]
        ready, live = container["readinessProbe"], container["livenessProbe"]
        assert ready["httpGet"]["path"] == "/v1/heartbeat", tier
        assert live["httpGet"]["path"] == "/healthz", tier
        assert probe_port(container, ready) == probe_port(container, live)
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), tier
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True


def test_disruption_budgets_and_autoscalers_match_the_deployments(objects):
    for tier in TIERS:
        labels = deployment(objects, tier)["spec"]["selector"]["matchLabels"]
        budget = one(objects, "PodDisruptionBudget", f"madbwpu-r-{tier}")
        assert budget["spec"]["selector"]["matchLabels"] == labels
    for tier in ("api", "edge"):
        hpa = one(objects, "HorizontalPodAutoscaler", f"madbwpu-r-{tier}")["spec"]
        replicas = deployment(objects, tier)["spec"]["replicas"]
        assert hpa["scaleTargetRef"]["name"] == f"madbwpu-r-{tier}"
        assert 2 <= hpa["minReplicas"] <= replicas <= hpa["maxReplicas"]
        budget = one(objects, "PodDisruptionBudget", f"madbwpu-r-{tier}")["spec"]
        assert budget["minAvailable"] < hpa["minReplicas"]  # a drain can always progress
        (metric,) = hpa["metrics"]
        assert metric["resource"]["name"] == "cpu"


def test_services_select_their_tier_and_target_its_probe_port(objects):
    for tier in ("api", "edge"):
        service = one(objects, "Service", f"madbwpu-r-{tier}")["spec"]
        template = deployment(objects, tier)["spec"]["template"]
        assert service["selector"].items() <= template["metadata"]["labels"].items()
        (container,) = template["spec"]["containers"]
        (port,) = service["ports"]
        names = [p["name"] for p in container["ports"]]
        assert port["targetPort"] in names


def test_secrets_are_referenced_never_rendered(objects):
    assert of_kind(objects, "Secret") == []
    referenced = set()
    for tier in TIERS:
        pod = deployment(objects, tier)["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                referenced.add(volume["secret"]["secretName"])
        for var in pod["containers"][0].get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                referenced.add(ref["name"])
    assert referenced == {"madbwpu-r-tokens", "madbwpu-r-engine-credentials"}
    readme = (ROOT / "README.md").read_text()
    for name in referenced:
        assert f"kubectl create secret generic {name}" in readme, name
    # No committed file under deploy/ holds a Secret object.
    for path in DEPLOY.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            assert not (isinstance(doc, dict) and doc.get("kind") == "Secret"), path


def test_engine_urls_come_from_the_config_map_and_hold_no_password(objects, overlay):
    (config,) = of_kind(objects, "ConfigMap")
    data = config["data"]
    assert ENGINE_KEYS <= set(data)
    assert data["MADBWPU_R_ENV"] == overlay
    for key in ENGINE_KEYS:
        assert not re.search(r"://[^/@]*:[^/@]*@", data[key]), f"{key} carries a password"
    for tier in TIERS:
        container = deployment(objects, tier)["spec"]["template"]["spec"]["containers"][0]
        assert {"configMapRef": {"name": config["metadata"]["name"]}} in container["envFrom"]
        # Engine URLs reach the process through its environment, never its argv.
        for arg in container["args"]:
            assert "://" not in arg, arg
            assert not re.search(r"\$\((?!MADBWPU_R_API_URL\))\w*URL\)", arg), arg


def test_the_two_environments_share_no_queue_channel_or_store(overlay):
    staging, production = (
        of_kind(rendered(name), "ConfigMap")[0]["data"] for name in ("staging", "production")
    )
    for key in ("MADBWPU_R_QUEUE_URL", "MADBWPU_R_REDIS_CHANNEL", "MADBWPU_R_STORE_URL"):
        assert staging[key] != production[key], key
    assert staging["MADBWPU_R_BLOB_URL"] != production["MADBWPU_R_BLOB_URL"]


def test_containerfile_installs_the_lock_runs_as_non_root_and_enters_the_cli():
    text = CONTAINERFILE.read_text()
    final = text[text.rindex("\nFROM ") :]
    assert "uv sync --frozen" in text
    user = re.findall(r"^USER\s+(\S+)", final, re.MULTILINE)
    assert user and user[-1] not in ("root", "0"), user
    assert re.search(r'^ENTRYPOINT \["madbwpu-r"\]$', final, re.MULTILINE)
