"""SIGKILL the deploy process at each step: production stays on the old or the new release,
never between, and `deploy --resume` finishes without re-using a grant."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from madbwpu_r.release.archive import sign_off_deploy, verified_signoff
from madbwpu_r.release.pipeline import STEP_KEYS
from madbwpu_r.release.service import Releases
from tests.e2e.release_stack import ReleaseStack as Running

CLI = [sys.executable, "-m", "madbwpu_r"]
TOKEN = "2gr-uugjyishz-f0"


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Running]:
    running = Running(tmp_path_factory.mktemp("killed") / "data")
    with Releases(running.data_dir) as svc:
        svc.init()
    yield running
    running.stop()


def kill_when(
    stack: Running,
    proc: subprocess.Popen,
    release_id: str,
    ready: Callable[[dict], bool],
    kill: Callable[[], None],
) -> str:
    """Poll the deploy of `release_id` (one open connection: polls stay short) and `kill()` as
    soon as its record satisfies `ready`; the deploy's id."""
    deadline = time.monotonic() + 180
    conn = sqlite3.connect(stack.data_dir / "project.sqlite", timeout=30)
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            for (doc,) in conn.execute("SELECT doc FROM documents WHERE kind = 'deploy'"):
                deploy = orjson.loads(doc)
                if deploy["release_id"] == release_id and ready(deploy):
                    kill()
                    return str(deploy["deploy_id"])
            time.sleep(0.002)
    finally:
        conn.close()
    pytest.fail("the deploy ended (or never reached the point) before it could be killed")


def cutovers(data_dir) -> list[dict]:
    conn = sqlite3.connect(data_dir / "production" / "state.sqlite", timeout=30)
    try:
        return [orjson.loads(r[0]) for r in conn.execute("SELECT grant_doc FROM cutovers")]
    finally:
        conn.close()


@pytest.mark.timeout(1200)  # a whole stack and many CLI processes on a shared machine
@pytest.mark.parametrize("after", [None, *STEP_KEYS[:-1]])
def test_kill_deploy_at_each_step_then_resume(stack: Running, after: str | None):
    with Releases(stack.data_dir) as svc:
        kill_and_resume(stack, svc, after)


def sign_off_earlier(stack: Running, svc: Releases) -> None:
    """Compliance signs off every earlier deploy's archive (the guardrail requires it)."""
    for deploy in svc.store.deploys("production"):
        if deploy.steps.get("archive") and not verified_signoff(
            svc.store, svc.keys, deploy.deploy_id
        ):
            sign_off_deploy(stack.data_dir, svc.store, svc.keys, deploy.deploy_id, "compliance")


def kill_and_resume(stack: Running, svc: Releases, after: str | None) -> None:
    # The steps after `after` can all finish between two polls on a loaded machine; such a try
    # proves nothing, so another release is deployed, a bounded number of times.
    def step_recorded(deploy: dict) -> bool:  # None: as soon as the deploy exists
        return after is None or after in deploy["steps"]

    for _ in range(KILL_TRIES):
        killed = start_and_kill(stack, svc, str(after), step_recorded, kill_deploy)
        if killed.status != "succeeded" or after == "verify":  # archive can finish in one poll
            break
    else:
        pytest.fail(f"the kill came too late to interrupt the deploy in {KILL_TRIES} tries")

    # Production is on the old or the new release, verified, and answers reads.
    served = httpx.get(f"{stack.endpoints['production']['api']}/v1/release").json()
    assert served["verified"] and served["release_id"] in (killed.before, killed.release_id)
    rows = httpx.get(f"{stack.endpoints['production']['edge']}/v1/datasets/killed/rows")
    if served["release_id"] == killed.release_id:
        assert rows.json()["version"] == killed.manifest.dataset("killed").digest

    resume_and_check(stack, svc, killed.deploy_id, killed.manifest)


KILL_TRIES = 3


def kill_deploy(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)


@dataclass
class Killed:
    manifest: Any
    deploy_id: str
    status: str  # the deploy's, once the kill took effect
    before: str | None  # the release production served before this deploy

    @property
    def release_id(self) -> str:
        return str(self.manifest.release_id)


def start_and_kill(
    stack: Running,
    svc: Releases,
    tag: str,
    ready: Callable[[dict], bool],
    kill: Callable[[subprocess.Popen], None],
) -> Killed:
    """Cut a fresh release (its data tagged `tag`), QA signs it off, start its deploy, and
    `kill(proc)` as soon as the deploy's record satisfies `ready`."""
    sign_off_earlier(stack, svc)
    body = f"id,step\n1,{tag}\n2,{time.monotonic_ns()}\n".encode()
    assert stack.ingest("staging", "killed", body)["status"] == "succeeded"
    manifest, _ = svc.cut("staging", "deployer")
    svc.decide(manifest.release_id, "qa", "signoff")
    before = svc.served("production")

    proc = subprocess.Popen(
        [*CLI, "deploy", manifest.release_id, "--to", "production", "--guardrail", TOKEN,
         "--as", "deployer", "--data-dir", str(stack.data_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deploy_id = kill_when(stack, proc, manifest.release_id, ready, lambda: kill(proc))
    proc.wait(120)
    return Killed(manifest, deploy_id, svc.store.deploy(deploy_id).status, before)


def resume_and_check(stack: Running, svc: Releases, deploy_id: str, manifest) -> None:
    """`deploy --resume` finishes the deploy: one cutover for it, by a grant used once."""
    done = subprocess.run(
        [*CLI, "deploy", "--resume", deploy_id, "--as", "deployer", "--data-dir", str(stack.data_dir)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert svc.served("production") == manifest.release_id
    record = svc.store.deploy(deploy_id)
    assert record.status == "succeeded"
    mine = [g for g in cutovers(stack.data_dir) if g["deploy_id"] == deploy_id]
    assert len(mine) == 1 and mine[0]["grant_id"] in record.grants
    assert len({g["grant_id"] for g in cutovers(stack.data_dir)}) == len(cutovers(stack.data_dir))


def api_pids(stack: Running, env: str) -> list[int]:
    """The processes serving `env`'s API (found by the --listen address `up` gave them)."""
    port = stack.endpoints[env]["api"].rsplit(":", 1)[1]
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"api" in argv and f"127.0.0.1:{port}".encode() in argv:
            pids.append(int(proc.name))
    return pids


@pytest.mark.timeout(900)
def test_kill_production_api_during_cutover_then_resume(stack: Running):
    """SIGKILL production's API once the grant is minted (the cutover request in flight)."""
    with Releases(stack.data_dir) as svc:
        victims = api_pids(stack, "production")
        assert victims, "production's API process was not found"

        def kill_api(_deploy: subprocess.Popen) -> None:
            for pid in victims:
                os.kill(pid, signal.SIGKILL)

        killed = start_and_kill(
            stack, svc, "api-killed", lambda deploy: bool(deploy["grants"]), kill_api
        )

        # `up` restarts the API; it serves the old or the new release, verified, never between.
        api = stack.endpoints["production"]["api"]
        served = None
        restart = time.monotonic() + 120
        while time.monotonic() < restart:
            try:
                served = httpx.get(f"{api}/v1/release", timeout=5).json()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert served is not None, "production's API did not come back"
        assert served["verified"] and served["release_id"] in (killed.before, killed.release_id)
        assert not set(api_pids(stack, "production")) & set(victims)

        resume_and_check(stack, svc, killed.deploy_id, killed.manifest)
        rows = httpx.get(f"{stack.endpoints['production']['edge']}/v1/datasets/killed/rows")
        assert rows.json()["version"] == killed.manifest.dataset("killed").digest
