"""The API SIGKILLed right after an ingest's commit, before its outbox row reached the queue.

Restarted, it delivers the row at start-up: the job runs exactly once and its version is
published once; a further restart changes nothing.
"""

from __future__ import annotations

import os
import subprocess

import httpx
import orjson
import pytest

from madbwpu_r.config import EnvPaths
from madbwpu_r.queue import open_queue
from madbwpu_r.store import open_store
from tests.e2e.test_worker_crash import CLI, _ok, free_port, start, wait_for


def start_api(common: list[str], port: int, log, failpoints: str = "") -> subprocess.Popen:
    env = {**os.environ, "MADBWPU_R_FAILPOINTS": failpoints}
    with log.open("ab") as out:
        return subprocess.Popen(
            CLI + ["api", *common, "--listen", f"127.0.0.1:{port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def test_api_killed_between_commit_and_delivery_runs_the_job_once(tmp_path):
    data = tmp_path / "data"
    paths = EnvPaths(data.resolve(), "staging")
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    common = ["--data-dir", str(data), "--env", "staging"]
    procs: list[subprocess.Popen] = []
    http = httpx.Client(timeout=30)
    try:
        victim = start_api(common, port, tmp_path / "api1.log", failpoints="ingest-committed")
        procs.append(victim)
        wait_for(lambda: _ok(http, f"{api}/healthz"), "the API")
        token = orjson.loads((data / "staging" / "secrets.json").read_bytes())["write_token"]
        with pytest.raises(httpx.TransportError):
            http.post(
                f"{api}/v1/datasets/people/ingest",
                content=b"id,name\n1,ada\n2,grace\n",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
            )
        assert victim.wait(10) == -9

        store = open_store(paths.default_store_url)
        queue = open_queue(paths.default_queue_url)
        try:
            (row,) = store.pending()
            job_id = row.payload["job_id"]
            assert row.kind == "enqueue" and store.ingest(job_id) is not None  # committed
            assert queue.list() == []  # ... and never delivered

            procs.append(start_api(common, port, tmp_path / "api2.log"))
            wait_for(lambda: _ok(http, f"{api}/healthz"), "the restarted API")
            wait_for(lambda: queue.get(job_id) is not None, "the relay to deliver at start-up")
            procs.append(start(["worker", *common, "--api", api], tmp_path / "worker.log"))
            status_url = f"{api}/v1/jobs/{job_id}"
            job = wait_for(
                lambda: (
                    (j := http.get(status_url).json())["status"] in ("succeeded", "failed") and j
                ),
                "the job to finish",
            )
            assert job["status"] == "succeeded" and job["attempts"] == 1, job
            versions = http.get(f"{api}/v1/datasets/people/versions").json()["versions"]
            assert [v["digest"] for v in versions] == [job["version"]]

            procs[1].terminate()
            procs[1].wait(30)
            procs.append(start_api(common, port, tmp_path / "api3.log"))
            wait_for(lambda: _ok(http, f"{api}/healthz"), "the API started a third time")
            assert [(j.id, j.state, j.attempts) for j in queue.list()] == [(job_id, "succeeded", 1)]
            assert store.pending() == []
            assert len(http.get(f"{api}/v1/datasets/people/versions").json()["versions"]) == 1
        finally:
            store.close()
            queue.close()
    finally:
        http.close()
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            proc.wait(30)
