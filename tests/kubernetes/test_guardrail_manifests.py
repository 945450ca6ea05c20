"""The guardrail's scaling rules, checked against what the Kubernetes overlays render."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from madbwpu_r.guardrail.example import example_policy_toml
from madbwpu_r.guardrail.kubernetes import render_overlay, scaling_from_manifests
from madbwpu_r.guardrail.policy import parse_policy_toml
from madbwpu_r.guardrail.rules import DeployContext, ScalingConfig, evaluate
from madbwpu_r.release.steps import manifests_scaling
from tests.kubernetes.manifests import DEPLOY, kubectl

RUNNING = ScalingConfig(1, 1, 4, 20, 1, "running stack")


def context(kubernetes: Path) -> DeployContext:
    kubectl()  # CI installs it; locally its absence skips
    manifests, error = manifests_scaling(str(kubernetes), "production")
    return DeployContext(
        "r" * 64, "production", "deployer", time.time(), scaling=RUNNING,
        manifests=manifests, manifests_error=error,
    )  # fmt: skip


def kubernetes_results(kubernetes: Path, policy_text: str | None = None) -> dict[str, tuple]:
    policy = parse_policy_toml(policy_text or example_policy_toml())
    results = evaluate(policy, None, context(kubernetes))  # type: ignore[arg-type]
    return {r.rule: (r.passed, r.reason) for r in results if r.rule.startswith("kubernetes.")}


def test_production_overlay_declares_its_scaling_bounds():
    kubectl()
    config = scaling_from_manifests(render_overlay(DEPLOY / "overlays" / "production"), "prod")
    # deploy/kubernetes/overlays/production: HPA 3-12 for the API, 3+ edges, KEDA 1-4 at 20.
    assert (config.api_replicas, config.api_replicas_max) == (3, 12)
    assert (config.workers_min, config.workers_max, config.target_queue_depth) == (1, 4, 20)
    assert config.edge_nodes == 3


def test_the_seed_policy_passes_the_shipped_manifests():
    results = kubernetes_results(DEPLOY)
    assert set(results) == {
        "kubernetes.api_replicas",
        "kubernetes.workers",
        "kubernetes.target_queue_depth",
        "kubernetes.edge_nodes",
    }
    assert all(passed for passed, _ in results.values()), results


def test_an_autoscaler_above_the_policy_fails_the_guardrail(tmp_path):
    copy = tmp_path / "kubernetes"
    shutil.copytree(DEPLOY, copy)
    overlay = copy / "overlays" / "production" / "kustomization.yaml"
    text = overlay.read_text()
    assert "value: 12" in text
    overlay.write_text(text.replace("value: 12", "value: 40"))
    results = kubernetes_results(copy)
    passed, reason = results["kubernetes.api_replicas"]
    assert not passed and "3-40 API replica(s); policy 1-16" in reason


def test_a_stricter_policy_fails_on_the_manifests_not_the_running_stack():
    strict = example_policy_toml().replace("edge_nodes = { min = 1 }", "edge_nodes = { min = 5 }")
    assert "min = 5" in strict
    results = kubernetes_results(DEPLOY, strict)
    passed, reason = results["kubernetes.edge_nodes"]
    assert not passed and "3 edge node(s); policy at least 5" in reason


def test_manifests_that_do_not_render_fail_never_skip(tmp_path):
    (tmp_path / "overlays" / "production").mkdir(parents=True)
    results = kubernetes_results(tmp_path)
    assert list(results) == ["kubernetes.manifests"]
    passed, reason = results["kubernetes.manifests"]
    assert not passed and "kubectl kustomize" in reason


@pytest.mark.parametrize("missing", ["ScaledObject", "HorizontalPodAutoscaler"])
def test_reading_bounds_needs_the_workers_scaledobject(missing):
    kubectl()
    objects = render_overlay(DEPLOY / "overlays" / "production")
    kept = [o for o in objects if o["kind"] != missing]
    if missing == "ScaledObject":
        with pytest.raises(ValueError, match="ScaledObject"):
            scaling_from_manifests(kept, "prod")
    else:  # without autoscalers, the Deployments' replica counts are the bounds
        config = scaling_from_manifests(kept, "prod")
        assert config.api_replicas == config.api_replicas_max == 3
