"""Rendering deploy/kubernetes/ and reading what the rendered objects say, for the tests.

`kubectl kustomize` renders an overlay; the helpers here pick objects out of it and turn a
Deployment's container into what a kubelet would run: its argv (the image's ENTRYPOINT from
the Containerfile, then the container's args with `$(VAR)` expanded as Kubernetes does) and
its environment (the image's ENV, then envFrom, then env, with ConfigMaps from the render,
Secrets and the downward API supplied by the test).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
CONTAINERFILE = ROOT / "Containerfile"
OVERLAYS = ("staging", "production")
KUBERNETES_VERSION = "1.32.0"
"""The version kubernetes-validate checks the core objects against."""

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        if os.environ.get("CI"):
            raise AssertionError(
                "kubectl is missing: .ci/run installs it (scripts/install_kubectl.py)"
            )
        pytest.skip("kubectl is not installed (python3 scripts/install_kubectl.py installs it)")
    return path


def render(overlay: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined names are replaced, `$$` is a `$`."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _VAR.sub(sub, value)


def image_config() -> tuple[list[str], dict[str, str]]:
    """The Containerfile's final ENTRYPOINT (exec form) and ENV."""
    entrypoint: list[str] = []
    env: dict[str, str] = {}
    for line in CONTAINERFILE.read_text().splitlines():
        line = line.strip()
        if line.upper().startswith("FROM "):
            entrypoint, env = [], {}  # a new stage: only the final one is the image
        elif line.startswith("ENTRYPOINT "):
            entrypoint = json.loads(line.split(" ", 1)[1])
        elif line.startswith("ENV "):
            for pair in line.split()[1:]:
                key, _, value = pair.partition("=")
                env[key] = value
    return entrypoint, env


def container_env(
    container: dict[str, Any],
    config_maps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, Mapping[str, str]],
    fields: Mapping[str, str],
    base: Mapping[str, str],
) -> dict[str, str]:
    """The environment a kubelet would give this container (refs must all resolve)."""
    env = dict(base)
    for source in container.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
            continue
        ref = var["valueFrom"]
        if "configMapKeyRef" in ref:
            env[var["name"]] = config_maps[ref["configMapKeyRef"]["name"]][
                ref["configMapKeyRef"]["key"]
            ]
        elif "secretKeyRef" in ref:
            env[var["name"]] = secrets[ref["secretKeyRef"]["name"]][ref["secretKeyRef"]["key"]]
        elif "fieldRef" in ref:
            env[var["name"]] = fields[ref["fieldRef"]["fieldPath"]]
        else:
            raise AssertionError(f"unsupported env source {ref}")
    return env


def probe_port(container: dict[str, Any], probe: dict[str, Any]) -> int:
    """The container port a probe's httpGet names (by name or number)."""
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert len(numbers) == 1, f"probe port {port!r} names no container port"
    return numbers[0]
