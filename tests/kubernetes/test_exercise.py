"""Run what the rendered manifests say, locally, and check their probes answer as declared.

For each Deployment of the staging overlay, the container's command is built as a kubelet
would (the Containerfile's ENTRYPOINT, the container's args with `$(VAR)` expanded, the
image's ENV + envFrom + env), the cluster addresses in the ConfigMap are pointed at this
machine (Redis; the API Service at the local API process) and the volumes at temp dirs. Then
the readiness and liveness probes' paths are read on the ports the probes name, and the
metrics in the KEDA trigger's query are found on the API's /metrics. The API's store is this
machine's PostgreSQL (a private schema), its queue and purge channel this machine's Redis.

Not yet exercised: the blob URL (the CLI does not read it until the S3 blob store is wired
in), so each "pod" keeps its version files in its own data dir and no job runs end to end
through these processes.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from madbwpu_r.config import load_or_create_secrets
from tests.kubernetes.manifests import (
    container_env,
    expand,
    image_config,
    of_kind,
    one,
    probe_port,
    render,
)
from tests.queue.queue_backends import (
    PG_URL,
    REDIS_URL,
    drop_pg_schema,
    drop_redis_prefix,
    require_postgres,
    require_redis,
)

CLI = Path(sys.executable).with_name("madbwpu-r")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Pod:
    """One Deployment's container, run as a local process."""

    def __init__(
        self,
        root: Path,
        deployment: dict[str, Any],
        config_maps: dict[str, dict[str, str]],
        secrets: dict[str, dict[str, str]],
    ) -> None:
        self.name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        (self.container,) = pod["containers"]
        entrypoint, image_env = image_config()
        assert entrypoint == ["madbwpu-r"], entrypoint
        mounts = self._mount(root / self.name, pod, secrets)
        image_env = {k: _local_path(v, mounts) for k, v in image_env.items()}
        image_env["PATH"] = os.environ["PATH"]  # the venv here, not the image's /app/.venv
        env = container_env(
            self.container,
            config_maps,
            secrets,
            {"metadata.name": f"{self.name}-local"},
            image_env,
        )
        # A path the manifest names under a mount is that mount's local directory here.
        env = {k: str(_local_path(v, mounts)) if k.endswith("_FILE") else v for k, v in env.items()}
        # The port each probe names, and the address the process must listen on for it.
        self.ports: dict[int, int] = {}
        args = [expand(arg, env) for arg in self.container["args"]]
        for port in {p["containerPort"] for p in self.container["ports"]}:
            listen = f"0.0.0.0:{port}"
            assert listen in args, f"{self.name} does not listen on its container port {port}"
            self.ports[port] = free_port()
            args[args.index(listen)] = f"127.0.0.1:{self.ports[port]}"
        self.argv = [str(CLI), *args]
        self.log = root / f"{self.name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root
            )

    @staticmethod
    def _mount(
        root: Path, pod: dict[str, Any], secrets: dict[str, dict[str, str]]
    ) -> dict[str, Path]:
        """Give every volume mount a local directory (a Secret's subPath: a file in it)."""
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mounts: dict[str, Path] = {}
        container = pod["containers"][0]
        for mount in sorted(container.get("volumeMounts", []), key=lambda m: m["mountPath"]):
            volume = volumes[mount["name"]]
            local = _local_path(mount["mountPath"], mounts)
            if local == Path(mount["mountPath"]):
                local = root / mount["name"]
            if "secret" in volume:
                data = secrets[volume["secret"]["secretName"]]
                if "subPath" in mount:
                    local.parent.mkdir(parents=True, exist_ok=True)
                    local.write_text(data[mount["subPath"]])
                    local.chmod(0o400)
                else:
                    local.mkdir(parents=True, exist_ok=True)
                    for key, value in data.items():
                        (local / key).write_text(value)
            else:
                assert "emptyDir" in volume, f"unsupported volume {volume}"
                local.mkdir(parents=True, exist_ok=True)
            mounts[mount["mountPath"]] = local
        return mounts

    def url(self, probe: str) -> str:
        spec = self.container[probe]
        return f"http://127.0.0.1:{self.ports[probe_port(self.container, spec)]}{spec['httpGet']['path']}"

    def wait_probe(self, http: httpx.Client, probe: str, timeout: float = 60.0) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = http.get(self.url(probe))
                if response.status_code == 200:
                    return response
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}'s {probe} never answered 200:\n{self.log.read_text()[-3000:]}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _local_path(value: str, mounts: dict[str, Path]) -> Any:
    for path in sorted(mounts, key=len, reverse=True):
        if value == path or value.startswith(path + "/"):
            return mounts[path] / value[len(path) :].lstrip("/")
    return Path(value) if value.startswith("/") else value


@pytest.fixture
def prefix() -> Iterator[str]:
    """A private Redis key prefix and PostgreSQL schema of that name, dropped afterwards."""
    require_redis()
    require_postgres()
    name = f"k8s_test_{uuid.uuid4().hex[:8]}"
    yield name
    drop_redis_prefix(name)
    drop_pg_schema(name)


def test_each_deployment_runs_locally_and_answers_its_probes(tmp_path, prefix):
    objects = render("staging")
    (config,) = of_kind(objects, "ConfigMap")
    data = dict(config["data"])
    # The cluster's addresses, pointed at this machine; the rest of the ConfigMap as it is.
    data["MADBWPU_R_QUEUE_URL"] = f"{REDIS_URL}?prefix={prefix}"
    data["MADBWPU_R_REDIS_URL"] = REDIS_URL
    data["MADBWPU_R_REDIS_CHANNEL"] = f"{prefix}:edge:purge"
    data["MADBWPU_R_STORE_URL"] = f"{PG_URL}?schema={prefix}"
    for key in ("MADBWPU_R_BLOB_URL", "AWS_ENDPOINT_URL"):
        data.pop(key)  # not read by the CLI yet (see the module docstring)
    tokens = load_or_create_secrets(tmp_path / "secret", "staging")
    secrets = {
        "madbwpu-r-tokens": {
            "secrets.json": (tmp_path / "secret" / "staging" / "secrets.json").read_text(),
            "purge_token": tokens["purge_token"],
        },
        "madbwpu-r-engine-credentials": {
            "PGPASSWORD": "",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
        },
    }
    http = httpx.Client(timeout=5)
    pods: list[Pod] = []
    try:
        api_deployment = one(objects, "Deployment", "madbwpu-r-api")
        # The API Service's address is known once the API process has its port.
        api = Pod(tmp_path, api_deployment, {config["metadata"]["name"]: data}, secrets)
        pods.append(api)
        api_url = f"http://127.0.0.1:{api.ports[8000]}"
        data["MADBWPU_R_API_URL"] = api_url
        maps = {config["metadata"]["name"]: data}
        for tier in ("edge", "worker"):
            pods.append(
                Pod(tmp_path, one(objects, "Deployment", f"madbwpu-r-{tier}"), maps, secrets)
            )
        for pod in pods:
            ready = pod.wait_probe(http, "readinessProbe")
            assert ready.json()["status"] == "ok", (pod.name, ready.text)
            live = pod.wait_probe(http, "livenessProbe")
            assert live.json()["status"] == "ok", (pod.name, live.text)
        api_pod, edge_pod, worker_pod = pods
        # The API's readiness is the environment's heartbeat: the staging overlay's name.
        assert http.get(api_pod.url("readinessProbe")).json()["environment"] == "staging"
        # ... on the store the ConfigMap names (its schema exists now).
        with psycopg.connect(PG_URL) as conn:
            found = conn.execute(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (prefix,)
            ).fetchone()
        assert found is not None
        # The edge's readiness went through it to the API (never cached).
        assert http.get(edge_pod.url("readinessProbe")).headers["x-cache"] != "HIT"
        # The worker's readiness read the queue the ConfigMap names.
        assert http.get(worker_pod.url("readinessProbe")).json()["queue"]["ok"] is True

        # The KEDA trigger's query reads gauges the API exports for the ingest queue.
        scaled = one(objects, "ScaledObject", "madbwpu-r-worker")
        names = set(
            re.findall(r"madbwpu_r_\w+", scaled["spec"]["triggers"][0]["metadata"]["query"])
        )
        metrics = http.get(f"{api_url}/metrics").text
        for name in names:
            assert re.search(rf'^{name}\{{queue="ingest"\}} \d', metrics, re.MULTILINE), name

        # An edge that cannot reach the API is alive but not ready (it takes no traffic).
        api_pod.stop()
        assert http.get(edge_pod.url("readinessProbe")).status_code >= 500
        assert http.get(edge_pod.url("livenessProbe")).status_code == 200
    finally:
        for pod in reversed(pods):
            pod.stop()
        http.close()
    shutil.rmtree(tmp_path / "secret")
