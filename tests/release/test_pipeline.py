"""The pipeline runs steps in order, persists each, waits or stops, and resumes where it was."""

from __future__ import annotations

import pytest

from madbwpu_r.release.pipeline import STEP_KEYS, DeployRecord, Pipeline, StepOutcome, new_deploy


class Ledger:
    def __init__(self):
        self.saved: dict[str, DeployRecord] = {}
        self.events: list[str] = []

    def save_deploy(self, record, event, evidence):
        self.saved[record.deploy_id] = record
        self.events.append(event)

    def deploy(self, deploy_id):
        return self.saved.get(deploy_id)


class Runner:
    def __init__(self, outcomes=None, crash_at=None):
        self.outcomes = outcomes or {}
        self.ran: list[str] = []
        self.crash_at = crash_at

    def run(self, step, deploy, ledger):
        self.ran.append(step)
        if step == self.crash_at:
            raise KeyboardInterrupt  # stands in for a kill: nothing after this is recorded
        outcome = self.outcomes.get(step)
        if callable(outcome):
            return outcome()
        return outcome or StepOutcome("passed", f"{step} ok", {"step": step})


def deploy() -> DeployRecord:
    return new_deploy(
        action="deploy",
        release_id="r" * 64,
        environment="production",
        token="t-1",
        requester="dora",
        previous_release=None,
        now=1.0,
    )


def test_all_steps_in_order_then_succeeded():
    ledger, runner = Ledger(), Runner()
    d = Pipeline(ledger, runner).run(deploy())
    assert runner.ran == list(STEP_KEYS) and d.status == "succeeded"
    assert all(d.steps[k].status == "passed" for k in STEP_KEYS)
    assert ledger.events[-1] == "deploy.succeeded"


def test_failure_stops_and_names_the_step():
    runner = Runner({"heartbeat": StepOutcome("failed", "production is down")})
    d = Pipeline(Ledger(), runner).run(deploy())
    assert runner.ran == ["staging_sync", "heartbeat"] and d.status == "failed"
    assert d.steps["heartbeat"].detail == "production is down"


def test_waiting_without_wait_stops_then_resume_continues():
    ledger = Ledger()
    runner = Runner({"qa_signoff": StepOutcome("waiting", "0 of 1 qa signoffs")})
    d = Pipeline(ledger, runner).run(deploy())
    assert d.status == "waiting" and d.next_step() == "qa_signoff"
    runner2 = Runner()
    d = Pipeline(ledger, runner2).run(ledger.deploy(d.deploy_id))
    assert runner2.ran == list(STEP_KEYS[2:]) and d.status == "succeeded"


def test_wait_polls_until_the_signoff_arrives():
    answers = iter([StepOutcome("waiting", "none yet")] * 3 + [StepOutcome("passed", "signed")])
    sleeps = []
    runner = Runner({"qa_signoff": lambda: next(answers)})
    d = Pipeline(Ledger(), runner, sleep=sleeps.append).run(deploy(), wait=True)
    assert d.status == "succeeded" and len(sleeps) == 3


def test_wait_timeout_stops_waiting():
    clock = iter(range(100, 10_000, 10))
    runner = Runner({"qa_signoff": StepOutcome("waiting", "none")})
    d = Pipeline(Ledger(), runner, clock=lambda: float(next(clock)), sleep=lambda s: None).run(
        deploy(), wait=True, wait_timeout=50
    )
    assert d.status == "waiting"


@pytest.mark.parametrize("crash_at", STEP_KEYS)
def test_killed_at_any_step_resumes_from_the_last_completed(crash_at):
    ledger = Ledger()
    d = deploy()
    ledger.save_deploy(d, "deploy.created", {})
    with pytest.raises(KeyboardInterrupt):
        Pipeline(ledger, Runner(crash_at=crash_at)).run(d)
    saved = ledger.deploy(d.deploy_id)
    assert saved.next_step() == crash_at and saved.status == "running"
    runner = Runner()
    done = Pipeline(ledger, runner).run(saved)
    assert runner.ran == list(STEP_KEYS[STEP_KEYS.index(crash_at) :]) and done.status == "succeeded"


def test_rolled_back_and_finished_deploys_do_not_run_again():
    runner = Runner({"verify": StepOutcome("failed", "smoke failed", rolled_back_to="p" * 64)})
    ledger = Ledger()
    d = Pipeline(ledger, runner).run(deploy())
    assert d.status == "rolled_back"
    again = Runner()
    assert Pipeline(ledger, again).run(d).status == "rolled_back" and again.ran == []


def test_record_round_trip():
    d = Pipeline(Ledger(), Runner()).run(deploy())
    assert DeployRecord.from_json(d.to_json()) == d


def test_an_unreachable_tier_interrupts_and_resume_reruns_that_step():
    ledger = Ledger()
    down = Runner({"cutover": StepOutcome("interrupted", "production's API did not answer")})
    d = Pipeline(ledger, down).run(deploy())
    assert d.status == "interrupted" and not d.finished
    assert d.next_step() == "cutover" and ledger.events[-1] == "deploy.step.cutover.interrupted"
    up = Runner()
    done = Pipeline(ledger, up).run(ledger.deploy(d.deploy_id))
    assert done.status == "succeeded" and up.ran[0] == "cutover"
    assert "deploy.resumed" in ledger.events
