"""Step 7, "Verify production", against production's API and edge as HTTP answers them.

Several API processes serve production: the ones that did not take the cutover serve it from
their next re-check on, so verification gives production SETTLE_SECONDS before it is a verdict.
The runner's clock and sleep are the test's: no time passes.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from madbwpu_r.release.manifest import DatasetEntry, Manifest
from madbwpu_r.release.pipeline import DeployRecord
from madbwpu_r.release.steps import SETTLE_SECONDS, Environments, TierRunner

NEW = DatasetEntry("people", "d" * 64, 1, "c" * 64, (("id", "integer"),), "s" * 64)
MANIFEST = Manifest("p", "staging", "0.1.0", "deployer", time.time(), (NEW,))


class Production:
    """Production's API processes behind one edge: `lagging` answers still serve the old release."""

    def __init__(self, lagging: int) -> None:
        self.lagging = lagging
        self.now = 0.0
        self.sleeps = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        old = self.lagging > 0
        if request.url.path == "/v1/heartbeat":
            return httpx.Response(200, json={"status": "ok"})
        if request.url.path == "/v1/release":
            return httpx.Response(
                200, json={"release_id": "o" * 64 if old else MANIFEST.release_id}
            )
        self.lagging -= 1  # the smoke query through the edge
        return httpx.Response(200, json={"version": "o" * 64 if old else NEW.digest})

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds


def verify(production: Production):
    runner = TierRunner(
        Path("unused"),
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        Environments({"production": {"api": "http://api", "edge": "http://edge"}}),
        "p",
        httpx.Client(transport=httpx.MockTransport(production.handle)),
        clock=lambda: production.now,
        sleep=production.sleep,
    )
    deploy = DeployRecord("dep", "deploy", MANIFEST.release_id, "production", "t", "r", 0.0)
    return runner._verify(deploy, MANIFEST, None)  # type: ignore[arg-type]


def test_production_that_catches_up_within_the_settle_time_passes() -> None:
    production = Production(lagging=3)
    outcome = verify(production)
    assert outcome.status == "passed", outcome.detail
    assert production.sleeps == 3 and production.now < SETTLE_SECONDS


def test_production_that_never_serves_the_release_fails_after_the_settle_time() -> None:
    production = Production(lagging=10**6)
    outcome = verify(production)
    assert outcome.status == "failed" and "production serves oooooooooooo" in outcome.detail
    assert production.now >= SETTLE_SECONDS
