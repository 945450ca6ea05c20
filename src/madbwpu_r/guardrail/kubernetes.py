"""What an environment's Kubernetes manifests declare about scaling, for the guardrail.

`kubectl kustomize OVERLAY` renders the overlay as the cluster would receive it; from the
rendered objects this reads the API's and the edge's replicas and autoscaler bounds, and the
workers' KEDA ScaledObject (min, max and the per-replica target of its queue trigger).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from madbwpu_r.guardrail.rules import ScalingConfig

__all__ = ["ManifestsError", "render_overlay", "scaling_from_manifests"]

API, EDGE, WORKER = "madbwpu-r-api", "madbwpu-r-edge", "madbwpu-r-worker"


class ManifestsError(ValueError):
    """The overlay cannot be rendered, or does not declare what the scaling rules need."""


def render_overlay(overlay: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise ManifestsError("kubectl is not installed: it renders the Kustomize overlay")
    try:
        done = subprocess.run(
            [kubectl, "kustomize", str(overlay)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ManifestsError(f"kubectl kustomize {overlay}: {exc}") from None
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["failed"])[0]
        raise ManifestsError(f"kubectl kustomize {overlay}: {first}")
    try:
        return [doc for doc in yaml.safe_load_all(done.stdout) if isinstance(doc, dict)]
    except yaml.YAMLError as exc:
        raise ManifestsError(f"kubectl kustomize {overlay} printed no YAML: {exc}") from None


def _one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    found = [
        o for o in objects if o.get("kind") == kind and o.get("metadata", {}).get("name") == name
    ]
    return found[0] if len(found) == 1 else None


def _bounds(objects: list[dict[str, Any]], name: str) -> tuple[int, int]:
    """(min, max) replicas: the HPA's bounds when there is one, else the Deployment's count."""
    hpa = _one(objects, "HorizontalPodAutoscaler", name)
    if hpa is not None:
        spec = hpa.get("spec", {})
        return int(spec.get("minReplicas", 1)), int(spec["maxReplicas"])
    deployment = _one(objects, "Deployment", name)
    if deployment is None:
        raise ManifestsError(f"the manifests declare no Deployment {name}")
    count = int(deployment.get("spec", {}).get("replicas", 1))
    return count, count


def scaling_from_manifests(objects: list[dict[str, Any]], source: str) -> ScalingConfig:
    try:
        api_min, api_max = _bounds(objects, API)
        edge_min, _ = _bounds(objects, EDGE)
        scaled = _one(objects, "ScaledObject", WORKER)
        if scaled is None:
            raise ManifestsError(f"the manifests declare no KEDA ScaledObject {WORKER}")
        spec = scaled["spec"]
        triggers = spec.get("triggers") or []
        if not triggers:
            raise ManifestsError(f"ScaledObject {WORKER} has no trigger")
        meta = triggers[0].get("metadata", {})
        target = meta.get("threshold") or meta.get("lagThreshold") or meta.get("listLength")
        if target is None:
            raise ManifestsError(f"ScaledObject {WORKER}'s trigger names no per-replica target")
        return ScalingConfig(
            api_replicas=api_min,
            api_replicas_max=api_max,
            workers_min=int(spec.get("minReplicaCount", 0)),
            workers_max=int(spec["maxReplicaCount"]),
            target_queue_depth=int(float(target)),
            edge_nodes=edge_min,
            source=source,
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ManifestsError):
            raise
        raise ManifestsError(f"{source}: cannot read the scaling bounds: {exc!r}") from None
