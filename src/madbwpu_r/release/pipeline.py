"""The deploy pipeline as an explicit, persisted state machine.

Eight steps in a fixed order (the issue's, in the seed's words where they fit). Each step's
outcome and evidence is written to the deploy ledger before the next one starts, so a process
killed anywhere resumes from the last completed step. The steps' effects live elsewhere
(`StepRunner`); this module only decides what runs next, and nothing here can skip a step.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

__all__ = [
    "STEPS",
    "DeployLedger",
    "DeployRecord",
    "Pipeline",
    "StepOutcome",
    "StepRecord",
    "StepRunner",
    "new_deploy",
    "step_title",
]

# (key, title shown in the checklist). Titles quote the seed's deployment tasks where they fit.
STEPS: tuple[tuple[str, str], ...] = (
    ("staging_sync", "Validate staging data sync"),
    ("heartbeat", "Validate API heartbeat"),
    ("qa_signoff", "QA signoff"),
    ("guardrail", "Guardrail token {token} validated before production cutover"),
    ("data_sync", "Sync data to production"),
    ("cutover", "Trigger production rollout after QA signoff (atomic cutover)"),
    ("verify", "Verify production through its edge"),
    ("archive", "Ensure audit logs are archived and signed off by compliance"),
)
STEP_KEYS = tuple(k for k, _ in STEPS)

# "interrupted": a tier could not be reached; not a verdict, the step runs again on resume.
StepStatus = Literal["passed", "failed", "waiting", "interrupted"]
DeployStatus = Literal["running", "waiting", "interrupted", "failed", "rolled_back", "succeeded"]
Action = Literal["deploy", "rollback"]


def step_title(key: str, token: str) -> str:
    return dict(STEPS)[key].format(token=f"`{token}`")


@dataclass(frozen=True)
class StepRecord:
    status: StepStatus
    at: float
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "at": self.at,
            "detail": self.detail,
            "evidence": self.evidence,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepRecord:
        return cls(
            data["status"], float(data["at"]), data["detail"], dict(data.get("evidence") or {})
        )


@dataclass(frozen=True)
class DeployRecord:
    deploy_id: str
    action: Action
    release_id: str
    environment: str
    token: str
    requester: str
    created_at: float
    status: DeployStatus = "running"
    steps: dict[str, StepRecord] = field(default_factory=dict)
    # Production's release when the deploy started: where an automatic rollback returns to.
    previous_release: str | None = None
    grants: tuple[str, ...] = ()  # every grant id ever minted for this deploy (never re-used)
    # The Kustomize directory whose `overlays/<env>` the scaling rules are also checked against.
    kubernetes: str | None = None

    def next_step(self) -> str | None:
        for key in STEP_KEYS:
            record = self.steps.get(key)
            if record is None or record.status != "passed":
                return key
        return None

    @property
    def finished(self) -> bool:
        return self.status in ("failed", "rolled_back", "succeeded")

    def to_json(self) -> dict[str, Any]:
        return {
            "deploy_id": self.deploy_id,
            "action": self.action,
            "release_id": self.release_id,
            "environment": self.environment,
            "token": self.token,
            "requester": self.requester,
            "created_at": self.created_at,
            "status": self.status,
            "steps": {k: v.to_json() for k, v in self.steps.items()},
            "previous_release": self.previous_release,
            "grants": list(self.grants),
            "kubernetes": self.kubernetes,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeployRecord:
        return cls(
            deploy_id=data["deploy_id"],
            action=data["action"],
            release_id=data["release_id"],
            environment=data["environment"],
            token=data["token"],
            requester=data["requester"],
            created_at=float(data["created_at"]),
            status=data["status"],
            steps={k: StepRecord.from_json(v) for k, v in data["steps"].items()},
            previous_release=data.get("previous_release"),
            grants=tuple(data.get("grants") or ()),
            kubernetes=data.get("kubernetes"),
        )


def new_deploy(
    *,
    action: Action,
    release_id: str,
    environment: str,
    token: str,
    requester: str,
    previous_release: str | None,
    now: float,
    kubernetes: str | None = None,
) -> DeployRecord:
    return DeployRecord(
        deploy_id="dep-" + uuid.uuid4().hex[:16],
        action=action,
        release_id=release_id,
        environment=environment,
        token=token,
        requester=requester,
        created_at=now,
        previous_release=previous_release,
        kubernetes=kubernetes,
    )


class DeployLedger(Protocol):
    """Where deploy state is persisted (the project's store); every write is durable and audited."""

    def save_deploy(self, record: DeployRecord, event: str, evidence: dict[str, Any]) -> None: ...

    def deploy(self, deploy_id: str) -> DeployRecord | None: ...


@dataclass(frozen=True)
class StepOutcome:
    status: StepStatus
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)
    # Set by the verify step when it rolled production back after a failure.
    rolled_back_to: str | None = None


class StepRunner(Protocol):
    """Performs one step's checks and effects for a deploy; must be safe to run again."""

    def run(self, step: str, deploy: DeployRecord, ledger: DeployLedger) -> StepOutcome: ...


Listener = Callable[[DeployRecord, str, StepRecord | None], None]


class Pipeline:
    """Runs a deploy's remaining steps in order and records each one before going on."""

    def __init__(
        self,
        ledger: DeployLedger,
        runner: StepRunner,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        poll: float = 0.5,
    ):
        self.ledger = ledger
        self.runner = runner
        self.clock = clock
        self.sleep = sleep
        self.poll = poll

    def run(
        self,
        deploy: DeployRecord,
        *,
        wait: bool = False,
        wait_timeout: float | None = None,
        listener: Listener | None = None,
    ) -> DeployRecord:
        notify = listener or (lambda d, s, r: None)
        if deploy.finished:
            return deploy
        if deploy.status in ("waiting", "interrupted"):
            deploy = replace(deploy, status="running")
            self.ledger.save_deploy(deploy, "deploy.resumed", {})
        waited_since: float | None = None
        while (step := deploy.next_step()) is not None:
            notify(deploy, step, None)
            outcome = self.runner.run(step, deploy, self.ledger)
            # The runner may have updated the ledger (a grant id minted): start from its copy.
            deploy = self.ledger.deploy(deploy.deploy_id) or deploy
            record = StepRecord(outcome.status, self.clock(), outcome.detail, outcome.evidence)
            steps = {**deploy.steps, step: record}
            if outcome.status == "passed":
                deploy = replace(deploy, steps=steps)
                self.ledger.save_deploy(deploy, f"deploy.step.{step}.passed", outcome.evidence)
                notify(deploy, step, record)
                waited_since = None
                continue
            if outcome.status == "waiting":
                now = self.clock()
                waited_since = waited_since if waited_since is not None else now
                timed_out = wait_timeout is not None and now - waited_since >= wait_timeout
                if wait and not timed_out:
                    if deploy.status != "waiting":
                        deploy = replace(deploy, steps=steps, status="waiting")
                        self.ledger.save_deploy(
                            deploy, f"deploy.step.{step}.waiting", outcome.evidence
                        )
                        notify(deploy, step, record)
                    self.sleep(self.poll)
                    continue
                deploy = replace(deploy, steps=steps, status="waiting")
                self.ledger.save_deploy(deploy, f"deploy.step.{step}.waiting", outcome.evidence)
                notify(deploy, step, record)
                return deploy
            if outcome.status == "interrupted":
                deploy = replace(deploy, steps=steps, status="interrupted")
                self.ledger.save_deploy(deploy, f"deploy.step.{step}.interrupted", outcome.evidence)
                notify(deploy, step, record)
                return deploy
            status: DeployStatus = "rolled_back" if outcome.rolled_back_to else "failed"
            deploy = replace(deploy, steps=steps, status=status)
            self.ledger.save_deploy(deploy, f"deploy.step.{step}.failed", outcome.evidence)
            notify(deploy, step, record)
            return deploy
        deploy = replace(deploy, status="succeeded")
        self.ledger.save_deploy(deploy, "deploy.succeeded", {})
        return deploy
