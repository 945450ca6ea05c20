"""The effects of each pipeline step, against the real tiers over HTTP and their blob stores.

Each step only reads, or does something idempotent (copy a content-addressed file, consume a
fresh single-use grant), so running a step again after a crash is always safe.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson

from madbwpu_r.blobs import BlobNotFound, BlobStoreError, content_key, open_blobs
from madbwpu_r.config import EnvPaths
from madbwpu_r.guardrail.kubernetes import ManifestsError, render_overlay, scaling_from_manifests
from madbwpu_r.guardrail.policy import SecurityRules
from madbwpu_r.guardrail.rules import (
    DeployContext,
    ScalingConfig,
    check_policy,
    evaluate,
    failures,
    signoff_results,
)
from madbwpu_r.release.archive import export_deploy, verified_signoff
from madbwpu_r.release.errors import Refused
from madbwpu_r.release.grant import PIPELINE_IDENTITY, mint_grant
from madbwpu_r.release.keyring import LocalKeyring
from madbwpu_r.release.manifest import Manifest
from madbwpu_r.release.pipeline import DeployLedger, DeployRecord, StepOutcome
from madbwpu_r.release.serving import RECHECK_SECONDS
from madbwpu_r.release.store import ArchiveRecord, ProjectStore
from madbwpu_r.release.verify_files import verify_version_file

__all__ = ["SETTLE_SECONDS", "Environments", "TierRunner", "deploy_context"]

# How long production's checks may fail after a cutover before they are a verdict: an API
# process that did not take the cutover serves it from its next re-check on (RECHECK_SECONDS),
# once it has verified the release's files, and then purges the edges of what it served before;
# a smoke query through the edge may reach any API process.
SETTLE_SECONDS = RECHECK_SECONDS + 8.0


class Environments:
    """The URLs of each environment's tiers and their scaling configuration (from `up`)."""

    def __init__(
        self,
        endpoints: dict[str, Any],
        scaling: dict[str, Any] | None = None,
    ):
        self.endpoints = endpoints
        self._scaling = scaling or {}

    def api(self, env: str) -> str:
        return self.endpoints[env]["api"]

    def edge(self, env: str) -> str:
        return self.endpoints[env]["edge"]

    def blobs(self, env: str, data_dir: Path) -> str:
        """The environment's blob store, as `up` recorded it (default: its own directory)."""
        return self.endpoints[env].get("blobs") or EnvPaths(data_dir, env).default_blob_url

    def scaling(self, env: str) -> ScalingConfig | None:
        raw = self._scaling.get(env)
        if not raw:
            return None
        return ScalingConfig(source=f"{env} running stack", **raw)


def manifests_scaling(kubernetes: str | None, env: str) -> tuple[ScalingConfig | None, str | None]:
    """What `KUBERNETES/overlays/ENV` declares, rendered now; or why it cannot be read."""
    if kubernetes is None:
        return None, None
    overlay = Path(kubernetes) / "overlays" / env
    try:
        objects = render_overlay(overlay)
        return scaling_from_manifests(objects, f"{env} manifests ({overlay})"), None
    except ManifestsError as exc:
        return None, str(exc)


def deploy_context(
    store: ProjectStore,
    keys: LocalKeyring,
    envs: Environments | None,
    *,
    release_id: str,
    environment: str,
    requester: str,
    now: float,
    exclude_deploy: str | None = None,
    kubernetes: str | None = None,
) -> DeployContext:
    earlier = {
        d.deploy_id: verified_signoff(store, keys, d.deploy_id)
        for d in store.deploys(environment)
        if d.deploy_id != exclude_deploy
        and "cutover" in d.steps
        and d.steps["cutover"].status == "passed"
    }
    manifests, manifests_error = manifests_scaling(kubernetes, environment)
    return DeployContext(
        release_id=release_id,
        environment=environment,
        requester=requester,
        now=now,
        decisions=store.decisions(release_id),
        earlier_archives=earlier,
        scaling=envs.scaling(environment) if envs else None,
        manifests=manifests,
        manifests_error=manifests_error,
    )


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        return response.json()
    except ValueError:
        return {}


class TierRunner:
    """`StepRunner` over a data directory's environments, as `madbwpu-r up` runs them."""

    def __init__(
        self,
        data_dir: Path,
        store: ProjectStore,
        keys: LocalKeyring,
        envs: Environments,
        project: str,
        http: httpx.Client | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.data_dir = Path(data_dir)
        self.store = store
        self.keys = keys
        self.envs = envs
        self.project = project
        self.http = http or httpx.Client(timeout=30)
        self.clock, self.sleep = clock, sleep

    def run(self, step: str, deploy: DeployRecord, ledger: DeployLedger) -> StepOutcome:
        manifest = self.store.release(deploy.release_id)
        if manifest is None:
            return StepOutcome("failed", f"no release {deploy.release_id[:12]} was cut")
        try:
            return getattr(self, f"_{step}")(deploy, manifest, ledger)
        except httpx.TransportError as exc:  # a tier died or is restarting: resume later
            return StepOutcome(
                "interrupted", f"{step}: a tier did not answer ({type(exc).__name__}: {exc})"
            )
        except httpx.HTTPError as exc:
            return StepOutcome("failed", f"{step}: {type(exc).__name__}: {exc}")
        except Refused as exc:
            return StepOutcome("failed", exc.message, {"refusal": exc.code})

    # 1 --------------------------------------------------------------------------------------
    def _staging_sync(self, deploy: DeployRecord, manifest: Manifest, ledger) -> StepOutcome:
        if deploy.action == "rollback":
            earlier = [
                d.deploy_id
                for d in self.store.deploys(deploy.environment)
                if d.release_id == deploy.release_id
                and d.steps.get("cutover") is not None
                and d.steps["cutover"].status == "passed"
            ]
            if not earlier:
                return StepOutcome(
                    "failed",
                    f"release {deploy.release_id[:12]} was never deployed to {deploy.environment}; "
                    "a rollback returns only to a release deployed before",
                )
            return StepOutcome(
                "passed", f"deployed before by {', '.join(earlier)}", {"deploys": earlier}
            )
        url = f"{self.envs.api(manifest.source_env)}/v1/release"
        served = _json(self.http.get(url)).get("datasets", {})
        problems = []
        for entry in manifest.datasets:
            got = served.get(entry.name)
            if got is None:
                problems.append(f"{entry.name} is not served")
                continue
            for field in ("digest", "row_count", "checksum"):
                if got.get(field) != getattr(entry, field):
                    problems.append(f"{entry.name}.{field} is {got.get(field)!r}")
        extra = sorted(set(served) - {d.name for d in manifest.datasets})
        problems += [f"{name} is served but not in the release" for name in extra]
        if problems:
            return StepOutcome(
                "failed",
                f"{manifest.source_env} does not serve exactly the release: " + "; ".join(problems),
                {"url": url},
            )
        return StepOutcome(
            "passed",
            f"{manifest.source_env} serves all {len(manifest.datasets)} dataset(s) of the manifest",
            {"url": url, "datasets": {d.name: d.digest for d in manifest.datasets}},
        )

    # 2 --------------------------------------------------------------------------------------
    def _heartbeat(self, deploy: DeployRecord, manifest: Manifest, ledger) -> StepOutcome:
        envs = [manifest.source_env, deploy.environment]
        evidence, bad = {}, []
        for env in envs:
            response = self.http.get(f"{self.envs.api(env)}/v1/heartbeat")
            body = _json(response)
            evidence[env] = {"status": response.status_code, "state": body.get("status")}
            if response.status_code != 200:
                failing = [k for k, v in (body.get("checks") or {}).items() if not v.get("ok")]
                bad.append(
                    f"{env} heartbeat is {response.status_code} ({', '.join(failing) or body.get('detail', '')})"
                )
        if bad:
            return StepOutcome("failed", "; ".join(bad), evidence)
        return StepOutcome("passed", " and ".join(envs) + " heartbeats are healthy", evidence)

    # 3 --------------------------------------------------------------------------------------
    def _qa_signoff(self, deploy: DeployRecord, manifest: Manifest, ledger) -> StepOutcome:
        signed = self.store.policy(deploy.token)
        try:
            security = signed.verified(self.keys).security if signed else SecurityRules()
        except Refused:
            # The guardrail step names the policy's problem; signoffs are judged by the default.
            security = SecurityRules()
        ctx = deploy_context(
            self.store,
            self.keys,
            None,
            release_id=deploy.release_id,
            environment=deploy.environment,
            requester=deploy.requester,
            now=time.time(),
        )
        results = signoff_results(security, self.keys, ctx)
        evidence = {"rules": [r.to_json() for r in results]}
        rejected = next(
            (r for r in results if r.rule == "security.no_rejection" and not r.passed), None
        )
        if rejected:
            return StepOutcome("failed", f"QA {rejected.reason}", evidence)
        missing = failures(results)
        if missing:
            detail = "; ".join(r.reason for r in missing)
            return StepOutcome(
                "waiting",
                f"waiting for QA signoff: {detail} (`madbwpu-r qa signoff {deploy.release_id[:12]} --as NAME`)",
                evidence,
            )
        return StepOutcome(
            "passed",
            "; ".join(r.reason for r in results if r.rule.startswith("security.signoffs")),
            evidence,
        )

    # 4 --------------------------------------------------------------------------------------
    def _guardrail(self, deploy: DeployRecord, manifest: Manifest, ledger) -> StepOutcome:
        now = time.time()
        policy, results = check_policy(
            self.store.policy(deploy.token),
            deploy.token,
            self.keys,
            self.store.revocations(deploy.token),
            deploy.environment,
            now,
        )
        if policy is not None and not failures(results):
            ctx = deploy_context(
                self.store,
                self.keys,
                self.envs,
                release_id=deploy.release_id,
                environment=deploy.environment,
                requester=deploy.requester,
                now=now,
                exclude_deploy=deploy.deploy_id,
                kubernetes=deploy.kubernetes,
            )
            results += evaluate(policy, self.keys, ctx)
        evidence = {"rules": [r.to_json() for r in results]}
        failed = failures(results)
        if failed:
            return StepOutcome(
                "failed",
                f"guardrail {deploy.token}: " + "; ".join(f"{r.rule}: {r.reason}" for r in failed),
                evidence,
            )
        return StepOutcome(
            "passed", f"guardrail {deploy.token}: all {len(results)} rules pass", evidence
        )

    # 5 --------------------------------------------------------------------------------------
    def _data_sync(self, deploy: DeployRecord, manifest: Manifest, ledger) -> StepOutcome:
        """Copy each version blob from the source's blob store to the target's, by its SHA-256,
        then re-read the target's copy row by row against the manifest."""
        copied, present = [], []
        with (
            open_blobs(self.envs.blobs(manifest.source_env, self.data_dir)) as source,
            open_blobs(self.envs.blobs(deploy.environment, self.data_dir)) as target,
            tempfile.TemporaryDirectory(prefix="madbwpu-r-sync-") as scratch,
        ):
            try:
                source.ping()
                target.ping()
            except BlobStoreError as exc:
                return StepOutcome("failed", f"a blob store does not answer: {exc}")
            for entry in manifest.datasets:
                if entry.sha256 is None:
                    return StepOutcome(
                        "failed", f"{entry.name}: the release names no version file (no sha256)"
                    )
                key = content_key(entry.sha256)
                try:
                    if target.exists(key):
                        present.append(entry.name)
                    else:
                        with source.open(key, sha256=entry.sha256) as blob:
                            target.put(key, blob, sha256=entry.sha256)
                        copied.append(entry.name)
                    local = Path(scratch) / entry.sha256
                    target.get_file(key, local, sha256=entry.sha256)
                except BlobNotFound:
                    return StepOutcome(
                        "failed",
                        f"{entry.name}: version {entry.digest[:12]} is not in "
                        f"{manifest.source_env}'s blob store",
                    )
                except BlobStoreError as exc:  # a corrupt copy, or a store that is down
                    return StepOutcome("failed", f"{entry.name}: {exc}")
                try:
                    verify_version_file(local, entry)
                except Refused as exc:
                    return StepOutcome("failed", exc.message)
                finally:
                    local.unlink(missing_ok=True)
        return StepOutcome(
            "passed",
            f"{len(copied)} version(s) copied, {len(present)} already present, every digest verified",
            {"copied": copied, "present": present},
        )

    # 6 --------------------------------------------------------------------------------------
    def _cutover(
        self, deploy: DeployRecord, manifest: Manifest, ledger: DeployLedger
    ) -> StepOutcome:
        return self.switch(deploy, manifest, ledger, deploy.action)

    def switch(
        self, deploy: DeployRecord, manifest: Manifest, ledger: DeployLedger, action: str
    ) -> StepOutcome:
        api = self.envs.api(deploy.environment)
        served = _json(self.http.get(f"{api}/v1/release"))
        if (
            served.get("release_id") == manifest.release_id
            and served.get("grant_id") in deploy.grants
        ):
            # A crash after production switched and before the step was recorded: it is done.
            return StepOutcome(
                "passed",
                f"production already serves {manifest.release_id[:12]} (cutover {served.get('cutover')})",
                {
                    "grant_id": served.get("grant_id"),
                    "cutover": served.get("cutover"),
                    "resumed": True,
                },
            )
        key = self.keys.signing_key(PIPELINE_IDENTITY)
        grant = mint_grant(
            key,
            project=self.project,
            release_id=manifest.release_id,
            environment=deploy.environment,
            deploy_id=deploy.deploy_id,
            action=action,
            now=time.time(),
        )
        # The id is recorded before it is used: a resumed deploy knows it and never re-sends it.
        current = ledger.deploy(deploy.deploy_id) or deploy
        ledger.save_deploy(
            replace(current, grants=current.grants + (grant.grant_id,)),
            "deploy.grant.minted",
            {"grant_id": grant.grant_id, "expires_at": grant.expires_at, "action": action},
        )
        response = self.http.post(
            f"{api}/v1/release/cutover",
            content=orjson.dumps({"grant": grant.to_json(), "manifest": manifest.to_json()}),
            headers={"Content-Type": "application/json"},
        )
        body = _json(response)
        if response.status_code != 200:
            return StepOutcome(
                "failed",
                f"production refused the cutover ({response.status_code}): {body.get('detail', '')}",
                {"grant_id": grant.grant_id, "status": response.status_code},
            )
        return StepOutcome(
            "passed",
            f"production switched to {manifest.release_id[:12]} atomically (cutover {body['cutover']}); "
            f"edge purged for {', '.join(body['purged'])}",
            {
                "grant_id": grant.grant_id,
                "cutover": body["cutover"],
                "purged": body["purged"],
                "changes": body["changes"],
            },
        )

    # 7 --------------------------------------------------------------------------------------
    def _verify(
        self, deploy: DeployRecord, manifest: Manifest, ledger: DeployLedger
    ) -> StepOutcome:
        problems = self._settled(deploy.environment, manifest)
        if not problems:
            return StepOutcome(
                "passed",
                f"heartbeat healthy, manifest served, {len(manifest.datasets)} smoke queries through the edge",
                {"datasets": [d.name for d in manifest.datasets]},
            )
        detail = "; ".join(problems)
        previous = self.store.release(deploy.previous_release) if deploy.previous_release else None
        if previous is None:
            return StepOutcome(
                "failed",
                f"production verification failed: {detail}; no earlier release to roll back to",
            )
        back = self.switch(deploy, previous, ledger, "rollback")
        evidence = {
            "problems": problems,
            "rollback": back.detail,
        }
        if back.status != "passed":
            return StepOutcome(
                "failed",
                f"production verification failed: {detail}; rollback failed: {back.detail}",
                evidence,
            )
        return StepOutcome(
            "failed",
            f"production verification failed: {detail}; rolled back automatically to {previous.release_id[:12]}",
            evidence,
            rolled_back_to=previous.release_id,
        )

    def _settled(self, env: str, manifest: Manifest) -> list[str]:
        """`check_production`, again until it passes, for up to SETTLE_SECONDS."""
        deadline = self.clock() + SETTLE_SECONDS
        while True:
            problems = self.check_production(env, manifest)
            if not problems or self.clock() >= deadline:
                return problems
            self.sleep(0.25)

    def check_production(self, env: str, manifest: Manifest) -> list[str]:
        problems = []
        api, edge = self.envs.api(env), self.envs.edge(env)
        beat = self.http.get(f"{api}/v1/heartbeat")
        if beat.status_code != 200:
            problems.append(f"heartbeat {beat.status_code}")
        served = _json(self.http.get(f"{api}/v1/release"))
        if served.get("release_id") != manifest.release_id:
            problems.append(f"production serves {str(served.get('release_id'))[:12]}")
        for entry in manifest.datasets:
            r = self.http.get(f"{edge}/v1/datasets/{entry.name}/rows", params={"_limit": 1})
            version = _json(r).get("version")
            if r.status_code != 200 or version != entry.digest:
                problems.append(
                    f"{entry.name} through the edge: {r.status_code}, version {str(version)[:12]}"
                )
        return problems

    # 8 --------------------------------------------------------------------------------------
    def _archive(self, deploy: DeployRecord, manifest: Manifest, ledger) -> StepOutcome:
        existing = self.store.archive(deploy.deploy_id)
        if existing is None:
            blob_url = self.envs.blobs(deploy.environment, self.data_dir)
            archive = export_deploy(self.data_dir, self.keys, deploy.deploy_id, blob_url)
            existing = ArchiveRecord(
                deploy.deploy_id, archive.digest, str(archive.path), time.time()
            )
            self.store.put_archive(existing)
        return StepOutcome(
            "passed",
            f"the deploy's audit segment is archived at {existing.location} with a signed "
            f"checkpoint; waiting for compliance: `madbwpu-r audit signoff {existing.location} "
            "--as NAME`",
            {"digest": existing.digest, "location": existing.location},
        )
