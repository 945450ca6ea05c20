"""Bursts of SIGTERM, as process managers send them (issue 7, item 10): every process stops.

`up` and a worker exit 0 after a clean stop; an API or edge (uvicorn) finishes its requests,
then ends by the signal it got (status -15), as uvicorn does so that a parent sees why.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.e2e.test_stack import Running
from tests.e2e.test_up_killed import alive, child_pids

CLI = [sys.executable, "-m", "madbwpu_r"]
BURST = 8
GRACE = 90  # `up`: workers' stop timeout plus the tiers' graceful shutdown, with room


def burst(pid: int, group: bool = False) -> None:
    for _ in range(BURST):
        (os.killpg if group else os.kill)(pid, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.timeout(900)  # two full starts of `up` on a shared, loaded machine
def test_up_stops_cleanly_after_bursts_to_it_its_group_and_its_tiers(tmp_path):
    data = tmp_path / "data"
    for target in ("tiers", "group"):
        stack = Running(data)
        try:
            children = child_pids(stack.proc.pid)
            if target == "tiers":  # each tier process, inside `up`: it stops and `up` restarts it
                api = stack.endpoints["staging"]["api"]
                for kind in (" api ", " edge ", " worker "):
                    pid = next(
                        p for p in children if kind in cmdline(p) and "staging" in cmdline(p)
                    )
                    burst(pid)
                    wait_until(lambda pid=pid: not alive(pid), f"{kind.strip()} to stop", GRACE)
                wait_until(lambda api=api: answers(f"{api}/healthz"), "the API to be restarted")
                assert stack.ingest("staging", "after-bursts", b"id\n1\n")["status"] == "succeeded"
                children = child_pids(stack.proc.pid)
                burst(stack.proc.pid)
            else:  # to its process group, as a container runtime does, and to `up` itself
                for _ in range(3):
                    burst(stack.proc.pid, group=True)
                    burst(stack.proc.pid)
            assert stack.proc.wait(GRACE) == 0
            wait_until(
                lambda gone=children: not any(alive(p) for p in gone), "every child to stop", 30
            )
        finally:
            stack.stop()
    log = stack.log.read_text()
    assert "Traceback" not in log
    assert log.count("restarting exited process") >= 2  # the api and edge of round one


def start(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(CLI + args, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.timeout(900)
def test_each_tier_process_stops_after_bursts(tmp_path):
    data = tmp_path / "data"
    common = ["--data-dir", str(data), "--env", "staging"]
    api_port, edge_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    log = tmp_path / "tiers.log"
    server = start(["api", *common, "--listen", f"127.0.0.1:{api_port}"], log)
    http = httpx.Client(timeout=30)
    try:
        wait_until(lambda: answers(f"{api}/healthz"), "the API")
        token = orjson.loads((data / "staging" / "secrets.json").read_bytes())["write_token"]

        def ingest(name: str, body: bytes) -> str:
            accepted = http.post(
                f"{api}/v1/datasets/{name}/ingest",
                content=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
            )
            assert accepted.status_code == 202, accepted.text
            return api + accepted.json()["status_url"]

        def status(url: str) -> str:
            return http.get(url).json()["status"]

        # A worker, idle, then in the middle of a job: it finishes the job and exits 0.
        big = b"id,v\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(200_000))
        for round_, body in enumerate((b"id\n1\n", big)):
            job = ingest(f"w{round_}", b"id\n1\n")
            worker = start(["worker", *common, "--api", api], log)
            wait_until(lambda job=job: status(job) == "succeeded", "the worker to run")
            if round_ == 1:
                job = ingest("big", body)
                wait_until(lambda job=job: status(job) == "running", "the big job to start")
            burst(worker.pid)
            assert worker.wait(60) == 0
            if round_ == 1:
                assert status(job) in ("succeeded", "queued"), status(job)  # done or released

        # The edge, several rounds.
        for _ in range(3):
            edge = start(["edge", "--origin", api, "--listen", f"127.0.0.1:{edge_port}"], log)
            wait_until(lambda: answers(f"http://127.0.0.1:{edge_port}/healthz"), "the edge")
            burst(edge.pid)
            assert edge.wait(60) == -signal.SIGTERM

        # The API, several rounds.
        for _ in range(3):
            wait_until(lambda: answers(f"{api}/healthz"), "the API")
            burst(server.pid)
            assert server.wait(60) == -signal.SIGTERM
            server = start(["api", *common, "--listen", f"127.0.0.1:{api_port}"], log)
    finally:
        http.close()
        server.terminate()
        server.wait(60)
    assert "Traceback" not in log.read_text()
