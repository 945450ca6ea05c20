"""Run every tier of every environment as separate local processes, as `madbwpu-r up` does.

Each API and edge is a child process restarted if it dies; workers are run by the queue-depth
Supervisor. Ports are kept from the previous run when they are still free, so URLs stay stable.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from madbwpu_r.config import (
    ENVIRONMENTS,
    SECRETS_FILE_ENV,
    EnvPaths,
    endpoints_path,
    ensure_data_dir,
    load_or_create_secrets,
    write_json_atomically,
)
from madbwpu_r.process import die_with_parent
from madbwpu_r.worker.supervisor import ScalingPolicy, Supervisor

log = logging.getLogger(__name__)

CLI = [sys.executable, "-m", "madbwpu_r"]


def project_id(data_dir: Path) -> str:
    """Names a project's keys on a shared server, so that projects can live side by side."""
    return hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:10]


def env_queue_url(base: str | None, env: str, paths: EnvPaths) -> str:
    """One queue per environment: its SQLite file, or a Redis key prefix / PostgreSQL schema."""
    if not base:
        return paths.default_queue_url
    parts = urlsplit(base)
    query = dict(parse_qsl(parts.query))
    project = project_id(paths.data_dir)
    if parts.scheme.startswith("redis"):
        query["prefix"] = f"{query.get('prefix', 'madbwpu-r')}-{project}-{env}"
    elif parts.scheme.startswith("postgres"):
        query["schema"] = f"{query.get('schema', 'madbwpu_r')}_{project}_{env}"
    else:
        raise ValueError(f"--queue-url must be a redis:// or postgresql:// URL, not {base!r}")
    return urlunsplit(parts._replace(query=urlencode(query)))


def env_store_url(base: str | None, env: str, paths: EnvPaths) -> str:
    """One metadata store per environment: its SQLite file, or a PostgreSQL schema."""
    if not base:
        return paths.default_store_url
    parts = urlsplit(base)
    if not parts.scheme.startswith("postgres"):
        raise ValueError(f"--store-url must be a postgresql:// URL, not {base!r}")
    query = dict(parse_qsl(parts.query))
    query["schema"] = f"{query.get('schema', 'madbwpu_r')}_{project_id(paths.data_dir)}_{env}"
    return urlunsplit(parts._replace(query=urlencode(query)))


def env_blob_url(base: str | None, env: str, paths: EnvPaths) -> str:
    """One blob store per environment: its directory, or a key prefix in the bucket."""
    if not base:
        return paths.default_blob_url
    parts = urlsplit(base)
    if parts.scheme != "s3":
        raise ValueError(f"--blob-url must be an s3:// URL, not {base!r}")
    prefix = parts.path.strip("/")
    env_prefix = f"{prefix}/" if prefix else ""
    env_prefix += f"madbwpu-r-{project_id(paths.data_dir)}-{env}"
    return urlunsplit(parts._replace(path="/" + env_prefix))


def check_engines(store_url: str, queue_url: str, blob_url: str, env: str) -> None:
    """Fail before any process starts when an engine is not there, naming the engine."""
    from madbwpu_r.blobs import BlobStoreError, open_blobs
    from madbwpu_r.queue import QueueError, open_queue
    from madbwpu_r.store import StoreError, open_store

    try:
        with open_blobs(blob_url) as blobs:
            blobs.ping()
    except BlobStoreError as exc:
        raise RuntimeError(f"{env}: the blob store is not available: {exc}") from None
    try:
        open_store(store_url).close()
    except StoreError as exc:
        raise RuntimeError(f"{env}: the metadata store is not available: {exc}") from None
    try:
        with open_queue(queue_url) as queue:
            queue.depth("ingest")  # a round trip: some clients connect lazily
    except QueueError as exc:
        raise RuntimeError(f"{env}: the job queue is not available: {exc}") from None


def purge_channel(data_dir: Path, env: str) -> str:
    """Each environment's edges listen on their own channel: another's purges are not theirs."""
    return f"madbwpu-r:{project_id(data_dir)}:{env}:edge:purge"


def free_port(host: str, preferred: int | None = None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            # Like uvicorn's own listener: a port left in TIME_WAIT by the last run is free.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError(f"no free port on {host}")


@dataclass
class Child:
    """A long-running tier process; restarted when it exits unexpectedly."""

    name: str
    argv: list[str]
    env: dict[str, str]
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self) -> None:
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            process_group=0,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl, before exec
        )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def terminate(self) -> None:
        if self.alive():
            assert self.popen is not None
            self.popen.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> None:
        if self.popen is None:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


@dataclass
class Stack:
    data_dir: Path
    host: str = "127.0.0.1"
    environments: tuple[str, ...] = ENVIRONMENTS
    min_workers: int = 1
    max_workers: int = 4
    worker_cooldown: float = 30.0
    edges: int = 1
    apis: int = 1
    queue_url: str | None = None
    store_url: str | None = None
    blob_url: str | None = None
    redis_url: str | None = None
    max_upload_bytes: int | None = None
    body_timeout: float | None = None  # the API's and the edge's; None: their default
    children: list[Child] = field(default_factory=list)
    supervisors: list[Supervisor] = field(default_factory=list)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)  # "edges" is a list
    scaling: dict[str, dict[str, int]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _body_timeout_argv(self) -> list[str]:
        return [] if self.body_timeout is None else ["--body-timeout", str(self.body_timeout)]

    def _previous_ports(self) -> dict[str, dict[str, int]]:
        try:
            import orjson

            old = orjson.loads(endpoints_path(self.data_dir).read_bytes())
            return {
                env: {
                    f"edge{i}": int(url.rsplit(":", 1)[1])
                    for i, url in enumerate(urls.get("edges") or [urls["edge"]])
                }
                | {
                    f"api{i}": int(url.rsplit(":", 1)[1])
                    for i, url in enumerate(urls.get("apis") or [urls["api"]])
                }
                for env, urls in old.items()
                if isinstance(urls, dict)
            }
        except (OSError, ValueError, KeyError, IndexError, AttributeError):
            return {}

    @staticmethod
    def refuse_given_secrets() -> None:
        """That file is one environment's tokens; every environment here has its own."""
        if os.environ.get(SECRETS_FILE_ENV):
            raise ValueError(
                f"${SECRETS_FILE_ENV} is set: it gives one process one environment's tokens, "
                "and `up` runs every environment, each with its own; unset it"
            )

    def start(self) -> None:
        self.refuse_given_secrets()
        ensure_data_dir(self.data_dir)
        previous = self._previous_ports()
        base_env = dict(os.environ)
        base_env["MADBWPU_R_DATA_DIR"] = str(self.data_dir.resolve())
        for env in self.environments:
            paths = EnvPaths(self.data_dir.resolve(), env).ensure()
            # Each environment's tiers know only its own tokens: staging's open nothing here.
            secrets = load_or_create_secrets(paths.data_dir, env)
            ports = previous.get(env, {})
            api_ports = [free_port(self.host, ports.get(f"api{i}")) for i in range(self.apis)]
            api_urls = [f"http://{self.host}:{port}" for port in api_ports]
            edge_ports = [free_port(self.host, ports.get(f"edge{i}")) for i in range(self.edges)]
            edge_urls = [f"http://{self.host}:{port}" for port in edge_ports]
            queue_url = env_queue_url(self.queue_url, env, paths)
            store_url = env_store_url(self.store_url, env, paths)
            blob_url = env_blob_url(self.blob_url, env, paths)
            check_engines(store_url, queue_url, blob_url, env)
            common = ["--data-dir", str(paths.data_dir), "--env", env, "--queue-url", queue_url]
            common += ["--blob-url", blob_url]
            pubsub = (
                [
                    "--redis-url",
                    self.redis_url,
                    "--redis-channel",
                    purge_channel(paths.data_dir, env),
                ]
                if self.redis_url
                else []
            )
            for i, port in enumerate(api_ports):
                api_argv = CLI + ["api", *common, "--listen", f"{self.host}:{port}", *pubsub]
                api_argv += ["--store-url", store_url]
                if self.max_upload_bytes is not None:
                    api_argv += ["--max-upload-bytes", str(self.max_upload_bytes)]
                api_argv += self._body_timeout_argv()
                for url in edge_urls:
                    api_argv += ["--edge", url]
                name = f"{env}-api" if self.apis == 1 else f"{env}-api-{i}"
                self.children.append(Child(name, api_argv, base_env))
            # Every edge balances its misses over every API; every worker reports to any.
            origins = [arg for url in api_urls for arg in ("--origin", url)]
            apis = [arg for url in api_urls for arg in ("--api", url)]
            edge_env = dict(base_env, MADBWPU_R_PURGE_TOKEN=secrets["purge_token"])
            for i, port in enumerate(edge_ports):
                argv = CLI + ["edge", *origins, "--listen", f"{self.host}:{port}"]
                argv += ["--name", f"{env}-edge-{i}", *pubsub, *self._body_timeout_argv()]
                self.children.append(Child(f"{env}-edge-{i}", argv, edge_env))
            supervisor = Supervisor(
                queue_url,
                ["ingest"],
                CLI + ["worker", *common, *apis, "--name", f"{env}-{{name}}"],
                env=base_env,
                policy=ScalingPolicy(
                    min_workers=self.min_workers,
                    max_workers=self.max_workers,
                    cooldown=self.worker_cooldown,
                ),
                status_path=paths.supervisor_status,
            )
            self.supervisors.append(supervisor)
            # `blobs` is where the pipeline copies a release's version files (never a secret:
            # blob URLs carry no credentials).
            self.endpoints[env] = {"edge": edge_urls[0], "api": api_urls[0], "blobs": blob_url}
            if self.apis > 1:
                self.endpoints[env]["apis"] = api_urls
            # What the guardrail's scaling rules are checked against (the running stack's).
            self.scaling[env] = {
                "api_replicas": self.apis,
                "workers_min": self.min_workers,
                "workers_max": self.max_workers,
                "target_queue_depth": ScalingPolicy().jobs_per_worker,
                "edge_nodes": self.edges,
            }
            if self.edges > 1:
                self.endpoints[env]["edges"] = edge_urls
        for child in self.children:
            child.start()
        for supervisor in self.supervisors:
            supervisor.start()

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        urls = [
            url
            for tiers in self.endpoints.values()
            for url in [*tiers.get("apis", [tiers["api"]]), *tiers.get("edges", [tiers["edge"]])]
        ]
        with httpx.Client(timeout=2.0) as client:
            for url in urls:
                while True:
                    try:
                        if client.get(f"{url}/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    dead = [c.name for c in self.children if not c.alive()]
                    if self.stopping:
                        return
                    if dead:
                        raise RuntimeError(
                            f"{', '.join(dead)} exited during start-up; see its log above"
                        )
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{url} did not become ready within {timeout:.0f}s")
                    time.sleep(0.1)
        write_json_atomically(self.data_dir / "scaling.json", self.scaling)
        write_json_atomically(endpoints_path(self.data_dir), self.endpoints)

    def watch(self) -> None:
        """Restart a tier process that died, until request_stop() is called."""
        while not self._stop.wait(0.5):
            for child in self.children:
                if not child.alive() and not self._stop.is_set():
                    child.restarts += 1
                    status = child.popen.returncode if child.popen is not None else None
                    log.warning(
                        "restarting exited process",
                        extra={"tier": child.name, "exit_status": status},
                    )
                    child.start()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Makes watch() and wait_ready() return. Takes a lock: never call it from a signal
        handler; `up` calls it from madbwpu_r.stopsignals' watcher thread."""
        self._stop.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for supervisor in self.supervisors:
            supervisor.stop(timeout)
        for child in self.children:
            child.terminate()
        for child in self.children:
            child.wait(timeout)
