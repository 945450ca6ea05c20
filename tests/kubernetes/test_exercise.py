"""Run what the rendered manifests say, locally, and check their probes answer as declared.

For each Deployment of the staging overlay, the container's command is built as a kubelet
would (the Containerfile's ENTRYPOINT, the container's args with `$(VAR)` expanded, the
image's ENV + envFrom + env), the cluster addresses in the ConfigMap are pointed at this
machine and the volumes at temp dirs: PostgreSQL (a private schema), Redis (a private key
prefix and purge channel), an S3-compatible test server (moto's) for the ConfigMap's blob URL,
unchanged (its bucket made first, as a cluster's would be), and the API Service at the local
API process. Then:

- the readiness and liveness probes' paths answer 200 on the ports the probes name, and the
  readiness reports the engines the ConfigMap names;
- a job runs end to end through the three "pods", which share no disk: the upload and the
  version file go through the bucket, and the edge is purged over the ConfigMap's channel;
- the KEDA trigger's query, evaluated on the API's /metrics, is the queue figure the
  supervisor scales on, and gives the same number of workers.
"""

from __future__ import annotations

import math
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
from urllib.parse import urlsplit

import boto3
import httpx
import psycopg
import pytest

from madbwpu_r.config import load_or_create_secrets
from madbwpu_r.queue import open_queue
from madbwpu_r.worker.supervisor import ScalingPolicy, desired_workers
from tests.blobs.conftest import S3Server
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
        # What the runtime gives a container: a home (the image user's is its data dir) and a
        # /tmp (an emptyDir here) that temp files and the blob cache go to.
        env["HOME"] = str(root / self.name)
        if "/tmp" in mounts:
            env["TMPDIR"] = str(mounts["/tmp"])
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
    drop_pg_schema(f"{name}_project")


@pytest.fixture
def s3() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.stop()


S3_KEYS = {"AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret"}


def ingest(http: httpx.Client, api: str, name: str, body: bytes, write: str) -> dict[str, Any]:
    accepted = http.post(
        f"{api}/v1/datasets/{name}/ingest",
        content=body,
        headers={"Authorization": f"Bearer {write}", "Content-Type": "text/csv"},
    )
    assert accepted.status_code == 202, accepted.text
    return accepted.json()


def wait_job(http: httpx.Client, api: str, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while True:
        job = http.get(f"{api}/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


_TERM = re.compile(r"max\((\w+)\{([^}]*)\}\)")


def evaluate(query: str, metrics: str) -> float:
    """The ScaledObject's query (a sum of `max(name{labels})`) on one scrape of /metrics.

    The `namespace` label is the one Prometheus adds to every series of a pod it scrapes in
    that namespace; every other label must be on the exported sample. Any other query shape
    fails here, so a change to the trigger gets a change to this check.
    """
    terms = [t.strip() for t in " ".join(query.split()).split(" + ")]
    total = 0.0
    for term in terms:
        match = _TERM.fullmatch(term)
        assert match, f"unsupported term {term!r} in {query!r}"
        name, selector = match.groups()
        wanted = dict(re.findall(r'(\w+)="([^"]*)"', selector))
        wanted.pop("namespace", None)
        values = [
            float(value)
            for labels, value in re.findall(rf"^{name}\{{([^}}]*)\}} (\S+)$", metrics, re.M)
            if wanted.items() <= dict(re.findall(r'(\w+)="([^"]*)"', labels)).items()
        ]
        assert values, f"{name}{{{selector}}} is not on /metrics"
        total += max(values)
    return total


def test_each_deployment_runs_locally_and_answers_its_probes(tmp_path, prefix, s3):
    objects = render("staging")
    (config,) = of_kind(objects, "ConfigMap")
    data = dict(config["data"])
    # The cluster's addresses, pointed at this machine; the rest of the ConfigMap as it is.
    data["MADBWPU_R_QUEUE_URL"] = f"{REDIS_URL}?prefix={prefix}"
    data["MADBWPU_R_REDIS_URL"] = REDIS_URL
    data["MADBWPU_R_REDIS_CHANNEL"] = f"{prefix}:edge:purge"
    data["MADBWPU_R_STORE_URL"] = f"{PG_URL}?schema={prefix}"
    assert data["MADBWPU_R_PROJECT_STORE_URL"].startswith("postgresql://")
    data["MADBWPU_R_PROJECT_STORE_URL"] = f"{PG_URL}?schema={prefix}_project"
    data["AWS_ENDPOINT_URL"] = s3.url
    # The blob URL is the ConfigMap's own; its bucket exists before the pods start.
    blob_url = urlsplit(data["MADBWPU_R_BLOB_URL"])
    assert blob_url.scheme == "s3" and not blob_url.query, data["MADBWPU_R_BLOB_URL"]
    bucket, blob_prefix = blob_url.netloc, blob_url.path.strip("/")
    s3_client = boto3.client(
        "s3", endpoint_url=s3.url, region_name=data["AWS_DEFAULT_REGION"], **_lower(S3_KEYS)
    )
    s3_client.create_bucket(Bucket=bucket)
    tokens = load_or_create_secrets(tmp_path / "secret", "staging")
    secrets = {
        "madbwpu-r-tokens": {
            "secrets.json": (tmp_path / "secret" / "staging" / "secrets.json").read_text(),
            "purge_token": tokens["purge_token"],
        },
        "madbwpu-r-engine-credentials": {"PGPASSWORD": "", **S3_KEYS},
    }
    http = httpx.Client(timeout=10)
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
        # The API's readiness is the environment's heartbeat, the staging overlay's name, and
        # checks the engines the ConfigMap names.
        heartbeat = http.get(api_pod.url("readinessProbe")).json()
        # The API opened the project's store the ConfigMap names (its release ledger's tables).
        with psycopg.connect(PG_URL) as conn:
            tables = {
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                    (f"{prefix}_project",),
                )
            }
        assert {"documents", "events", "audit_entries"} <= tables, tables
        assert heartbeat["environment"] == "staging"
        engines = {port: check["engine"] for port, check in heartbeat["checks"].items()}
        assert engines == {"store": "postgresql", "queue": "redis", "blobs": "s3"}, heartbeat
        # ... on the store the ConfigMap names (its schema exists now).
        with psycopg.connect(PG_URL) as conn:
            found = conn.execute(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (prefix,)
            ).fetchone()
        assert found is not None
        # The edge's readiness went through it to the API (never cached).
        edge_url = f"http://127.0.0.1:{edge_pod.ports[8080]}"
        assert http.get(edge_pod.url("readinessProbe")).headers["x-cache"] != "HIT"
        # The worker's readiness read the queue the ConfigMap names.
        assert http.get(worker_pod.url("readinessProbe")).json()["queue"]["ok"] is True

        # A job end to end: API pod -> queue -> worker pod -> API pod, read through the edge.
        # The pods share no disk, so the upload and the version file went through the bucket.
        write = tokens["write_token"]
        first = wait_job(
            http, api_url, ingest(http, api_url, "people", b"id\n1\n", write)["job_id"]
        )
        assert first["status"] == "succeeded", first
        miss = http.get(f"{edge_url}/v1/datasets/people/rows")
        assert miss.status_code == 200 and miss.headers["x-cache"] == "MISS", miss.text
        assert miss.json()["rows"] == [{"id": 1}]
        assert http.get(f"{edge_url}/v1/datasets/people/rows").headers["x-cache"] == "HIT"
        listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=f"{blob_prefix}/")
        assert listed["KeyCount"] > 0, listed
        for pod in pods:  # nothing fell back to the default file:// blob store
            assert not [p for p in (tmp_path / pod.name).rglob("*") if p.name == "blobs"]
        # A new version purges the edge over the ConfigMap's Redis channel.
        second = wait_job(
            http, api_url, ingest(http, api_url, "people", b"id\n1\n2\n", write)["job_id"]
        )
        assert second["status"] == "succeeded", second
        fresh = http.get(f"{edge_url}/v1/datasets/people/rows")
        assert fresh.headers["x-cache"] == "MISS"
        assert fresh.json()["version"] == second["version"]

        # The KEDA trigger's query, on what the API exports, is the figure the supervisor
        # scales on (ready + in flight of the ConfigMap's queue), with the same target. With
        # the worker gone, a backlog of more than one worker's share waits in the queue.
        worker_pod.stop()
        backlog = 25
        for i in range(backlog):
            ingest(http, api_url, f"b{i}", b"id\n1\n", write)
        scaled = one(objects, "ScaledObject", "madbwpu-r-worker")
        (trigger,) = scaled["spec"]["triggers"]
        assert trigger["metricType"] == "AverageValue"
        metrics = http.get(f"{api_url}/metrics").text
        value = evaluate(trigger["metadata"]["query"], metrics)
        with open_queue(data["MADBWPU_R_QUEUE_URL"]) as queue:
            depth = queue.depth("ingest")
        assert value == depth.ready + depth.in_flight == backlog, (value, depth)
        keda = math.ceil(value / float(trigger["metadata"]["threshold"]))
        keda = max(scaled["spec"]["minReplicaCount"], min(scaled["spec"]["maxReplicaCount"], keda))
        assert keda == desired_workers(depth, 1, ScalingPolicy()) == 2

        # An edge that cannot reach the API is alive but not ready (it takes no traffic).
        api_pod.stop()
        assert http.get(edge_pod.url("readinessProbe")).status_code >= 500
        assert http.get(edge_pod.url("livenessProbe")).status_code == 200
    finally:
        for pod in reversed(pods):
            pod.stop()
        http.close()
    shutil.rmtree(tmp_path / "secret")


def _lower(keys: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in keys.items()}
