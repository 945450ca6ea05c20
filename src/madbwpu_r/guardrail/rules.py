"""Every guardrail rule, evaluated against one deploy: a list of (rule, pass/fail, reason).

Nothing here reads a store or the network; the pipeline gathers the facts into a `DeployContext`
and this module judges them, so `guardrail validate` and the deploy give the same verdicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from madbwpu_r.guardrail.policy import Policy, SecurityRules
from madbwpu_r.guardrail.signed import Revocation, SignedPolicy
from madbwpu_r.release.decisions import QaDecision, verify_decision
from madbwpu_r.release.errors import Refused
from madbwpu_r.signing import KeyDirectory

__all__ = ["DeployContext", "RuleResult", "ScalingConfig", "check_policy", "evaluate", "failures"]


@dataclass(frozen=True)
class RuleResult:
    rule: str
    passed: bool
    reason: str

    def to_json(self) -> dict[str, object]:
        return {"rule": self.rule, "passed": self.passed, "reason": self.reason}


@dataclass(frozen=True)
class ScalingConfig:
    """The target environment's configuration as it runs (or as its manifests declare it)."""

    api_replicas: int
    workers_min: int
    workers_max: int
    target_queue_depth: int
    edge_nodes: int
    source: str = "running stack"
    # An autoscaler's upper bound, where one is declared (the manifests' HPA); else api_replicas.
    api_replicas_max: int | None = None


@dataclass(frozen=True)
class DeployContext:
    release_id: str
    environment: str
    requester: str
    now: float
    decisions: Sequence[QaDecision] = ()
    # deploy id -> whether compliance signed its archive off, for every earlier production deploy
    earlier_archives: dict[str, bool] = field(default_factory=dict)
    scaling: ScalingConfig | None = None
    # What the target's Kubernetes manifests declare, when the deploy names them (or why they
    # could not be read: a failure, never a skip).
    manifests: ScalingConfig | None = None
    manifests_error: str | None = None


def failures(results: Sequence[RuleResult]) -> list[RuleResult]:
    return [r for r in results if not r.passed]


def check_policy(
    signed: SignedPolicy | None,
    token: str,
    keys: KeyDirectory,
    revocations: Sequence[Revocation],
    environment: str,
    now: float,
) -> tuple[Policy | None, list[RuleResult]]:
    """The policy's own validity: known token, signature, window, revocation, environment."""
    if signed is None:
        return None, [RuleResult("policy.known", False, f"no guardrail policy has token {token!r}")]
    results = [RuleResult("policy.known", True, f"token {token!r} names a stored policy")]
    try:
        policy = signed.verified(keys)
    except Refused as exc:
        return None, results + [RuleResult("policy.signature", False, exc.message)]
    if policy.token != token:
        return None, results + [
            RuleResult(
                "policy.signature",
                False,
                f"the policy stored under {token!r} is for {policy.token!r}",
            )
        ]
    results.append(
        RuleResult("policy.signature", True, f"signed by security identity {signed.signer!r}")
    )
    moment = datetime.fromtimestamp(now, UTC)
    if moment < policy.valid_from:
        results.append(
            RuleResult(
                "policy.validity", False, f"not valid before {policy.valid_from.isoformat()}"
            )
        )
    elif moment >= policy.valid_until:
        results.append(
            RuleResult("policy.validity", False, f"expired at {policy.valid_until.isoformat()}")
        )
    else:
        results.append(
            RuleResult(
                "policy.validity",
                True,
                f"valid from {policy.valid_from.isoformat()} until {policy.valid_until.isoformat()}",
            )
        )
    results.append(_revocation(signed, keys, revocations))
    if environment in policy.environments:
        results.append(RuleResult("policy.environment", True, f"covers {environment}"))
    else:
        results.append(
            RuleResult(
                "policy.environment",
                False,
                f"covers {', '.join(policy.environments)}, not {environment}",
            )
        )
    return policy, results


def _revocation(
    signed: SignedPolicy, keys: KeyDirectory, revocations: Sequence[Revocation]
) -> RuleResult:
    for revocation in revocations:
        if revocation.token != signed.token:
            continue
        try:
            revocation.verify(keys)
        except Refused as exc:
            # Fail closed: a revocation record someone altered is still a reason to stop.
            return RuleResult(
                "policy.revocation", False, f"a revocation record is invalid: {exc.message}"
            )
        return RuleResult(
            "policy.revocation",
            False,
            f"revoked by {revocation.revoked_by!r} at "
            f"{datetime.fromtimestamp(revocation.at, UTC).isoformat()}"
            + (f": {revocation.reason}" if revocation.reason else ""),
        )
    return RuleResult("policy.revocation", True, "not revoked")


def valid_signoffs(
    decisions: Sequence[QaDecision], keys: KeyDirectory, ctx: DeployContext, max_age_hours: float
) -> tuple[dict[str, QaDecision], list[str], QaDecision | None]:
    """Each signer's latest valid decision for this release; reasons for those that don't count."""
    latest: dict[str, QaDecision] = {}
    ignored: list[str] = []
    for decision in sorted(decisions, key=lambda d: d.at):
        if decision.release_id != ctx.release_id:
            ignored.append(
                f"{decision.signer}: signed release {decision.release_id[:12]}, not this one"
            )
            continue
        try:
            verify_decision(decision, keys)
        except Refused as exc:
            ignored.append(exc.message)
            continue
        if decision.signer == ctx.requester:
            ignored.append(f"{decision.signer}: the requester is never an approver")
            continue
        latest[decision.signer] = decision
    rejection = next((d for d in latest.values() if d.kind == "rejection"), None)
    fresh: dict[str, QaDecision] = {}
    for signer, decision in latest.items():
        if decision.kind != "signoff":
            continue
        age = (ctx.now - decision.at) / 3600
        if age > max_age_hours:
            ignored.append(f"{signer}: signoff is {age:.1f} h old (at most {max_age_hours:g} h)")
            continue
        if decision.at > ctx.now + 300:
            ignored.append(f"{signer}: signoff is dated in the future")
            continue
        fresh[signer] = decision
    return fresh, ignored, rejection


def signoff_results(
    security: SecurityRules, keys: KeyDirectory, ctx: DeployContext
) -> list[RuleResult]:
    fresh, ignored, rejection = valid_signoffs(
        ctx.decisions, keys, ctx, security.max_signoff_age_hours
    )
    results = []
    if rejection is not None:
        results.append(
            RuleResult(
                "security.no_rejection",
                False,
                f"rejected by {rejection.signer!r}"
                + (f": {rejection.note}" if rejection.note else ""),
            )
        )
    else:
        results.append(RuleResult("security.no_rejection", True, "no QA rejection of this release"))
    for role, needed in sorted(security.signoffs.items()):
        signers = sorted(s for s in fresh if role in keys.roles(s))
        have = len(signers)
        why = f"{have} of {needed} {role} signoffs" + (
            f" ({', '.join(signers)})" if signers else ""
        )
        if have < needed and ignored:
            why += "; not counted: " + "; ".join(ignored)
        results.append(RuleResult(f"security.signoffs.{role}", have >= needed, why))
    return results


def evaluate(policy: Policy, keys: KeyDirectory, ctx: DeployContext) -> list[RuleResult]:
    """Every security and scaling rule of `policy` for this deploy, in a fixed order."""
    results = signoff_results(policy.security, keys, ctx)
    results.append(
        RuleResult(
            "security.requester_not_approver",
            True,
            f"the requester {ctx.requester!r} is not counted as an approver",
        )
    )
    unsigned = sorted(d for d, ok in ctx.earlier_archives.items() if not ok)
    if unsigned:
        results.append(
            RuleResult(
                "security.archives_signed_off",
                False,
                "compliance has not signed off the audit archive of deploy(s) "
                + ", ".join(unsigned),
            )
        )
    else:
        results.append(
            RuleResult(
                "security.archives_signed_off",
                True,
                f"{len(ctx.earlier_archives)} earlier production deploy archive(s), all signed off",
            )
        )
    results.append(_window(policy, ctx))
    results.extend(_scaling(policy, ctx.scaling))
    if ctx.manifests_error is not None:
        results.append(RuleResult("kubernetes.manifests", False, ctx.manifests_error))
    elif ctx.manifests is not None:
        results.extend(_scaling(policy, ctx.manifests, "kubernetes"))
    return results


def _window(policy: Policy, ctx: DeployContext) -> RuleResult:
    windows = policy.security.windows
    if not windows:
        return RuleResult("security.deploy_window", True, "no deploy window restriction")
    moment = datetime.fromtimestamp(ctx.now, UTC)
    for window in windows:
        if window.contains(moment):
            return RuleResult("security.deploy_window", True, f"inside {window.describe()}")
    allowed = "; ".join(w.describe() for w in windows)
    return RuleResult("security.deploy_window", False, f"outside every deploy window ({allowed})")


def _scaling(
    policy: Policy, config: ScalingConfig | None, prefix: str = "scaling"
) -> list[RuleResult]:
    rules = policy.scaling
    if config is None:
        return [
            RuleResult(f"{prefix}.config", False, "the target's scaling configuration is unknown")
        ]
    api, workers = rules.api_replicas, rules.workers
    api_max = config.api_replicas if config.api_replicas_max is None else config.api_replicas_max
    replicas = (
        f"{config.api_replicas}"
        if api_max == config.api_replicas
        else f"{config.api_replicas}-{api_max}"
    )
    return [
        RuleResult(
            f"{prefix}.api_replicas",
            api.min <= config.api_replicas <= api_max <= api.max,
            f"{config.source}: {replicas} API replica(s); policy {api.min}-{api.max}",
        ),
        RuleResult(
            f"{prefix}.workers",
            workers.min <= config.workers_min <= config.workers_max <= workers.max,
            f"{config.source}: workers {config.workers_min}-{config.workers_max}; "
            f"policy {workers.min}-{workers.max}",
        ),
        RuleResult(
            f"{prefix}.target_queue_depth",
            config.target_queue_depth <= workers.target_queue_depth,
            f"{config.source}: scales at {config.target_queue_depth} queued jobs per worker; "
            f"policy at most {workers.target_queue_depth}",
        ),
        RuleResult(
            f"{prefix}.edge_nodes",
            config.edge_nodes >= rules.edge_nodes.min,
            f"{config.source}: {config.edge_nodes} edge node(s); policy at least {rules.edge_nodes.min}",
        ),
    ]
