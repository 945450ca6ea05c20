"""The release verbs (cut, decide, guard, deploy, roll back), shared by the CLI and the demo.

Every refusal is recorded as an event with who and why before it is raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import httpx
import orjson

from madbwpu_r import __version__
from madbwpu_r.config import load_endpoints
from madbwpu_r.guardrail.example import SEED_TOKEN, example_policy_toml
from madbwpu_r.guardrail.policy import check_token, parse_policy_toml
from madbwpu_r.guardrail.rules import RuleResult, check_policy, evaluate, failures
from madbwpu_r.guardrail.signed import SECURITY_ROLE, SignedPolicy, revoke, sign_policy
from madbwpu_r.release.decisions import QaDecision, make_decision, verify_decision
from madbwpu_r.release.errors import Refused
from madbwpu_r.release.grant import PIPELINE_IDENTITY
from madbwpu_r.release.manifest import RELEASE_ID_PATTERN, DatasetEntry, Manifest
from madbwpu_r.release.pipeline import DeployRecord, Listener, Pipeline, new_deploy
from madbwpu_r.release.project import open_keyring, open_release_store, project_name
from madbwpu_r.release.steps import Environments, TierRunner, deploy_context

__all__ = ["Releases", "INIT_IDENTITIES"]

CUT_ROLES = frozenset({"deployer", "admin"})
DEPLOY_ROLES = frozenset({"deployer"})
# The identities `init` creates for the example project (one per role the workflow needs).
INIT_IDENTITIES = (
    ("security", ("security",)),
    ("deployer", ("deployer",)),
    ("qa", ("qa",)),
    ("compliance", ("compliance",)),
    (PIPELINE_IDENTITY, ("service-pipeline",)),
)


class Releases:
    def __init__(self, data_dir: Path, endpoints: dict | None = None):
        self.data_dir = Path(data_dir)
        self.store = open_release_store(self.data_dir)
        self.keys = open_keyring(self.data_dir)
        self.project = project_name(self.data_dir, self.store)
        self._endpoints = endpoints
        self.http = httpx.Client(timeout=30)

    def close(self) -> None:
        self.http.close()
        self.store.close()
        self.keys.close()

    def __enter__(self) -> Releases:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def envs(self) -> Environments:
        if self._endpoints is None:
            self._endpoints = load_endpoints(self.data_dir)
        try:
            scaling = orjson.loads((self.data_dir / "scaling.json").read_bytes())
        except (FileNotFoundError, ValueError):
            scaling = {}
        return Environments(self._endpoints, scaling)

    def refuse(self, actor: str, action: str, target: str, exc: Refused) -> Refused:
        self.store.record(
            actor, action, target, "refused", {"refusal": exc.code, "reason": exc.message}
        )
        return exc

    def _require(self, actor: str, roles: frozenset[str], action: str, target: str) -> None:
        self.keys.signing_key(actor)  # registered, and its key is on this machine
        if not roles & self.keys.roles(actor):
            raise self.refuse(
                actor,
                action,
                target,
                Refused(
                    "missing-role", f"{actor!r} needs one of the roles: {', '.join(sorted(roles))}"
                ),
            )

    # ---- init ------------------------------------------------------------------------------
    def init(self) -> list[str]:
        """The example project's identities and its guardrail under the seed's token; idempotent."""
        from madbwpu_r.identity.setup import init_project

        result = init_project(self.data_dir)
        said = [f"initialised: {', '.join(result.created)}"] if result.created else []
        for name, roles in INIT_IDENTITIES:
            if self.keys.ensure(name, roles):
                said.append(f"created identity {name!r} with role(s) {', '.join(roles)}")
        if self.store.policy(SEED_TOKEN) is None:
            policy = parse_policy_toml(example_policy_toml())
            self.store.put_policy(
                sign_policy(self.keys.signing_key("security"), policy, time.time())
            )
            said.append(
                f"created guardrail {SEED_TOKEN} (the example project's policy), signed by 'security'"
            )
        return said

    # ---- releases --------------------------------------------------------------------------
    def resolve(self, ref: str) -> Manifest:
        ref = ref.strip().lower()
        if len(ref) < 8 or not all(c in "0123456789abcdef" for c in ref):
            raise Refused("bad-release-id", f"{ref!r} is not a release id (at least 8 hex digits)")
        matches = [m for m in self.store.releases() if m.release_id.startswith(ref)]
        if not matches:
            raise Refused("unknown-release", f"no release {ref} was cut (`madbwpu-r release list`)")
        if len(matches) > 1:
            raise Refused(
                "ambiguous-release", f"{ref} names {len(matches)} releases; give more digits"
            )
        return matches[0]

    def cut(self, env: str, actor: str) -> tuple[Manifest, bool]:
        self._require(actor, CUT_ROLES, "release.cut", env)
        if env != "staging":
            raise self.refuse(
                actor, "release.cut", env, Refused("not-staging", "releases are cut from staging")
            )
        response = self.http.get(f"{self.envs.api(env)}/v1/release")
        response.raise_for_status()
        served = response.json()["datasets"]
        if not served:
            raise self.refuse(
                actor,
                "release.cut",
                env,
                Refused("empty", "staging serves no dataset yet; ingest first"),
            )
        unstored = sorted(name for name, v in served.items() if not v.get("sha256"))
        if unstored:
            raise self.refuse(
                actor,
                "release.cut",
                env,
                Refused(
                    "version-not-in-blob-store",
                    f"{', '.join(unstored)}: the current version has no file in staging's blob "
                    "store; ingest it again",
                ),
            )
        entries = tuple(
            DatasetEntry(
                name=name,
                digest=v["digest"],
                row_count=int(v["row_count"]),
                checksum=v["checksum"],
                schema=tuple((c["name"], c["type"]) for c in v["schema"]),
                sha256=v.get("sha256"),
            )
            for name, v in served.items()
        )
        manifest = Manifest(self.project, env, __version__, actor, time.time(), entries)
        assert RELEASE_ID_PATTERN.fullmatch(manifest.release_id)
        return manifest, self.store.put_release(manifest, actor)

    # ---- QA ----------------------------------------------------------------------------------
    def decide(self, ref: str, actor: str, kind: str, note: str = "") -> QaDecision:
        manifest = self.resolve(ref)
        key = self.keys.signing_key(actor)
        decision = make_decision(key, kind, manifest.release_id, time.time(), note)  # type: ignore[arg-type]
        try:
            verify_decision(decision, self.keys)
        except Refused as exc:
            raise self.refuse(actor, f"qa.{kind}", manifest.release_id, exc) from None
        self.store.add_decision(decision)
        return decision

    # ---- guardrails ------------------------------------------------------------------------
    def create_policy(self, token: str, text: str, actor: str) -> SignedPolicy:
        check_token(token)
        policy = parse_policy_toml(text)
        if policy.token != token:
            raise Refused(
                "token-mismatch", f"the policy file says token = {policy.token!r}, not {token!r}"
            )
        if SECURITY_ROLE not in self.keys.roles(actor):
            raise self.refuse(
                actor,
                "guardrail.create",
                token,
                Refused(
                    "not-security",
                    f"{actor!r} does not hold the security role; only security signs a guardrail",
                ),
            )
        signed = sign_policy(self.keys.signing_key(actor), policy, time.time())
        self.store.put_policy(signed)
        return signed

    def policy(self, token: str) -> SignedPolicy:
        check_token(token)
        signed = self.store.policy(token)
        if signed is None:
            raise Refused("unknown-token", f"no guardrail has token {token!r}")
        return signed

    def revoke(self, token: str, actor: str, reason: str = "") -> None:
        signed = self.policy(token)
        if SECURITY_ROLE not in self.keys.roles(actor):
            raise self.refuse(
                actor,
                "guardrail.revoke",
                token,
                Refused("not-security", f"{actor!r} does not hold the security role"),
            )
        self.store.add_revocation(revoke(self.keys.signing_key(actor), signed, time.time(), reason))

    def validate(
        self, token: str, ref: str, env: str, requester: str, kubernetes: str | None = None
    ) -> list[RuleResult]:
        check_token(token)
        manifest = self.resolve(ref)
        now = time.time()
        policy, results = check_policy(
            self.store.policy(token), token, self.keys, self.store.revocations(token), env, now
        )
        if policy is not None:
            ctx = deploy_context(
                self.store,
                self.keys,
                self.envs,
                release_id=manifest.release_id,
                environment=env,
                requester=requester,
                now=now,
                kubernetes=kubernetes,
            )
            results += evaluate(policy, self.keys, ctx)
        self.store.record(
            requester,
            "guardrail.validated",
            token,
            "ok" if not failures(results) else "refused",
            {"release_id": manifest.release_id, "failed": [r.rule for r in failures(results)]},
        )
        return results

    # ---- deploys -----------------------------------------------------------------------------
    def served(self, env: str) -> str | None:
        return self.http.get(f"{self.envs.api(env)}/v1/release").json().get("release_id")

    def start(
        self,
        ref: str,
        env: str,
        token: str,
        actor: str,
        action: Literal["deploy", "rollback"],
        kubernetes: str | None = None,
    ) -> DeployRecord:
        """A new deploy, or the unfinished one of the same release, environment and action."""
        check_token(token)
        manifest = self.resolve(ref)
        self._require(actor, DEPLOY_ROLES, f"{action}.requested", manifest.release_id)
        if env != "production":
            raise self.refuse(
                actor,
                f"{action}.requested",
                env,
                Refused(
                    "not-production",
                    "the pipeline deploys to production; staging serves its current versions",
                ),
            )
        for earlier in self.store.deploys(env):
            if (
                not earlier.finished
                and earlier.release_id == manifest.release_id
                and earlier.action == action
                and earlier.requester == actor
                and earlier.token == token
                and earlier.kubernetes == kubernetes
            ):
                return earlier
        record = new_deploy(
            action=action,
            release_id=manifest.release_id,
            environment=env,
            token=token,
            requester=actor,
            previous_release=self.served(env),
            now=time.time(),
            kubernetes=kubernetes,
        )
        self.store.save_deploy(record, f"{action}.requested", {"token": token})
        return record

    def resume(self, deploy_id: str, actor: str) -> DeployRecord:
        record = self.store.deploy(deploy_id)
        if record is None:
            raise Refused("unknown-deploy", f"no deploy {deploy_id}")
        if record.requester != actor:
            raise self.refuse(
                actor,
                "deploy.resume",
                deploy_id,
                Refused(
                    "not-requester", f"deploy {deploy_id} was requested by {record.requester!r}"
                ),
            )
        return record

    def run(
        self,
        record: DeployRecord,
        *,
        wait: bool = False,
        wait_timeout: float | None = None,
        listener: Listener | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> DeployRecord:
        runner = TierRunner(
            self.data_dir, self.store, self.keys, self.envs, self.project, self.http
        )
        pipeline = Pipeline(self.store, runner, sleep=sleep)
        return pipeline.run(record, wait=wait, wait_timeout=wait_timeout, listener=listener)
