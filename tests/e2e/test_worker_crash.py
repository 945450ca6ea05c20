"""A worker SIGKILLed in the middle of an ingest loses nothing: the job runs again, applies once."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

CLI = [sys.executable, "-m", "madbwpu_r"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(CLI + args, stdout=out, stderr=subprocess.STDOUT)


def wait_for(predicate, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_sigkilled_worker_job_is_rerun_and_applied_once(tmp_path):
    data = tmp_path / "data"
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    common = ["--data-dir", str(data), "--env", "staging"]
    procs = [start(["api", *common, "--listen", f"127.0.0.1:{port}"], tmp_path / "api.log")]
    http = httpx.Client(timeout=30)
    try:
        wait_for(lambda: _ok(http, f"{api}/healthz"), "the API")
        token = orjson.loads((data / "staging" / "secrets.json").read_bytes())["write_token"]
        rows = 300_000
        body = b"id,name,score\n" + b"".join(b"%d,name-%d,%d.5\n" % (i, i, i) for i in range(rows))
        accepted = http.post(
            f"{api}/v1/datasets/big/ingest",
            content=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
        ).json()
        status_url = api + accepted["status_url"]

        victim = start(["worker", *common, "--api", api, "--lease", "2"], tmp_path / "w1.log")
        procs.append(victim)
        wait_for(lambda: http.get(status_url).json()["status"] == "running", "the job to start")
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        assert http.get(status_url).json()["status"] == "running"  # leased by a dead worker

        procs.append(start(["worker", *common, "--api", api, "--lease", "2"], tmp_path / "w2.log"))
        job = wait_for(
            lambda: (j := http.get(status_url).json())["status"] in ("succeeded", "failed") and j,
            "the job to be re-run",
            timeout=120,
        )
        assert job["status"] == "succeeded", job
        assert job["attempts"] == 2
        versions = http.get(f"{api}/v1/datasets/big/versions").json()["versions"]
        assert len(versions) == 1 and versions[0]["row_count"] == rows
        assert versions[0]["digest"] == job["version"]
        last = http.get(f"{api}/v1/datasets/big/rows?_sort=-id&_limit=1").json()["rows"]
        assert last == [{"id": rows - 1, "name": f"name-{rows - 1}", "score": rows - 1 + 0.5}]
        # The killed attempt's partial file was swept; only the one version is left.
        assert [p.name for p in (data / "staging" / "versions").iterdir()] == [
            f"{job['version']}.sqlite"
        ]
    finally:
        http.close()
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            proc.wait(30)


def _ok(http: httpx.Client, url: str) -> bool:
    try:
        return http.get(url).status_code == 200
    except httpx.TransportError:
        return False
