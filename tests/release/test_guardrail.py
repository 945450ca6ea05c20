"""Guardrail policies: strict parsing, signatures, validity, revocation and every rule's verdict."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from madbwpu_r.guardrail.example import SEED_TOKEN, example_policy_toml
from madbwpu_r.guardrail.policy import Policy, check_token, parse_policy_toml
from madbwpu_r.guardrail.rules import DeployContext, ScalingConfig, check_policy, evaluate, failures
from madbwpu_r.guardrail.signed import revoke, sign_policy
from madbwpu_r.release.decisions import make_decision
from madbwpu_r.release.errors import Refused
from tests.release.keys import Directory

START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # a Monday
NOW = START.timestamp() + 3600
RID = "a" * 64
GOOD_SCALE = ScalingConfig(
    api_replicas=1, workers_min=1, workers_max=4, target_queue_depth=20, edge_nodes=1
)


@pytest.fixture
def keys() -> Directory:
    d = Directory()
    d.add("sec", "security")
    d.add("quinn", "qa")
    d.add("quill", "qa")
    d.add("dora", "deployer", "qa")
    d.add("ada", "admin")
    return d


def policy(**security) -> Policy:
    p = parse_policy_toml(example_policy_toml(START))
    if security:
        p = p.model_copy(update={"security": p.security.model_copy(update=security)})
    return p


def results_for(p, keys, signed=None, revocations=(), env="production", now=NOW, token=SEED_TOKEN):
    signed = (
        signed if signed is not None else sign_policy(keys.keys["sec"], p, now=START.timestamp())
    )
    return check_policy(signed, token, keys, revocations, env, now)


def verdict(results, rule):
    return next(r for r in results if r.rule == rule)


def ctx(keys, *decisions, requester="dora", now=NOW, archives=None, scaling=GOOD_SCALE):
    return DeployContext(RID, "production", requester, now, decisions, archives or {}, scaling)


def signoff(keys, who, at=NOW - 60, release=RID, kind="signoff"):
    return make_decision(keys.keys[who], kind, release, at, "")


def test_example_policy_parses_with_seed_token():
    p = policy()
    assert p.token == SEED_TOKEN == "2gr-uugjyishz-f0"
    assert p.environments == ("production",)
    assert p.security.signoffs == {"qa": 1}


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda t: t.replace("qa = 1", "qa = 0"), "signoffs"),
        (lambda t: t.replace("qa = 1", "admin = 1"), "signoffs"),
        (lambda t: t.replace("max = 16", "max = 0"), "api_replicas"),
        (lambda t: t.replace('environments = ["production"]', "environments = []"), "environments"),
        (lambda t: t + "\nbypass = true\n", "bypass"),
        (lambda t: t.replace("valid_until", "valid_untill"), "valid_until"),
        (
            lambda t: t.replace(
                "[security]", "[security]\nwindows = [{days=['mon'], hours='18:00-09:00'}]"
            ),
            "hours",
        ),
        (
            lambda t: t.replace(
                "[security]", "[security]\nwindows = [{days=['mon'], timezone='Mars/Base'}]"
            ),
            "timezone",
        ),
    ],
)
def test_invalid_policies_name_the_field(edit, field):
    with pytest.raises(Refused) as exc:
        parse_policy_toml(edit(example_policy_toml(START)))
    assert field in exc.value.message


def test_not_toml_refused():
    with pytest.raises(Refused, match="TOML"):
        parse_policy_toml("token = ")


def test_bad_token_refused():
    with pytest.raises(Refused):
        check_token("../etc")
    assert check_token(SEED_TOKEN) == SEED_TOKEN


def test_valid_policy_passes_every_check(keys):
    p, results = results_for(policy(), keys)
    assert p is not None and not failures(results)


def test_unknown_token(keys):
    p, results = check_policy(None, "nope-123", keys, [], "production", NOW)
    assert p is None and not verdict(results, "policy.known").passed


def test_expired_and_not_yet_valid(keys):
    _, results = results_for(policy(), keys, now=START.timestamp() + 400 * 86400)
    assert "expired" in verdict(results, "policy.validity").reason
    _, results = results_for(policy(), keys, now=START.timestamp() - 10)
    assert "not valid before" in verdict(results, "policy.validity").reason


def test_tampered_policy(keys):
    signed = sign_policy(keys.keys["sec"], policy(), START.timestamp())
    doc = {**signed.policy, "environments": ["production", "staging"]}
    _, results = results_for(policy(), keys, signed=dataclasses.replace(signed, policy=doc))
    assert not verdict(results, "policy.signature").passed


def test_policy_signed_by_non_security_refused(keys):
    signed = sign_policy(keys.keys["ada"], policy(), START.timestamp())
    _, results = results_for(policy(), keys, signed=signed)
    assert "does not hold security" in verdict(results, "policy.signature").reason


def test_policy_under_another_token(keys):
    _, results = results_for(policy(), keys, token="other-token")
    assert not verdict(results, "policy.signature").passed


def test_revoked_and_forged_revocation(keys):
    signed = sign_policy(keys.keys["sec"], policy(), START.timestamp())
    rev = revoke(keys.keys["sec"], signed, NOW - 1, "leaked")
    _, results = results_for(policy(), keys, signed=signed, revocations=[rev])
    assert "revoked by 'sec'" in verdict(results, "policy.revocation").reason
    forged = dataclasses.replace(revoke(keys.keys["ada"], signed, NOW - 1))
    _, results = results_for(policy(), keys, signed=signed, revocations=[forged])
    assert not verdict(results, "policy.revocation").passed


def test_wrong_environment(keys):
    _, results = results_for(policy(), keys, env="staging")
    assert "not staging" in verdict(results, "policy.environment").reason


def test_signoff_rules(keys):
    p = policy()
    assert not failures(evaluate(p, keys, ctx(keys, signoff(keys, "quinn"))))
    # no signoff
    r = verdict(evaluate(p, keys, ctx(keys)), "security.signoffs.qa")
    assert not r.passed and "0 of 1" in r.reason
    # self-signoff: dora holds qa but requests the deploy
    r = verdict(evaluate(p, keys, ctx(keys, signoff(keys, "dora"))), "security.signoffs.qa")
    assert not r.passed and "never an approver" in r.reason
    # another release's signoff
    r = verdict(
        evaluate(p, keys, ctx(keys, signoff(keys, "quinn", release="b" * 64))),
        "security.signoffs.qa",
    )
    assert not r.passed and "not this one" in r.reason
    # signoff by a key without qa
    r = verdict(evaluate(p, keys, ctx(keys, signoff(keys, "ada"))), "security.signoffs.qa")
    assert not r.passed and "qa role" in r.reason
    # too old
    old = signoff(keys, "quinn", at=NOW - 73 * 3600)
    r = verdict(evaluate(p, keys, ctx(keys, old)), "security.signoffs.qa")
    assert not r.passed and "old" in r.reason


def test_two_signoffs_required_counts_distinct_signers(keys):
    p = policy(signoffs={"qa": 2})
    one = ctx(keys, signoff(keys, "quinn"), signoff(keys, "quinn", at=NOW - 30))
    assert not verdict(evaluate(p, keys, one), "security.signoffs.qa").passed
    two = ctx(keys, signoff(keys, "quinn"), signoff(keys, "quill"))
    assert verdict(evaluate(p, keys, two), "security.signoffs.qa").passed


def test_rejection_stops_until_the_same_signer_signs_off_again(keys):
    p = policy()
    rejected = ctx(
        keys,
        signoff(keys, "quinn", at=NOW - 100),
        signoff(keys, "quill", at=NOW - 50, kind="rejection"),
    )
    assert not verdict(evaluate(p, keys, rejected), "security.no_rejection").passed
    again = ctx(
        keys,
        signoff(keys, "quill", at=NOW - 50, kind="rejection"),
        signoff(keys, "quill", at=NOW - 10),
    )
    assert not failures(evaluate(p, keys, again))


def test_earlier_archives_must_be_signed_off(keys):
    p = policy()
    c = ctx(keys, signoff(keys, "quinn"), archives={"dep-1": True, "dep-2": False})
    r = verdict(evaluate(p, keys, c), "security.archives_signed_off")
    assert not r.passed and "dep-2" in r.reason and "dep-1" not in r.reason


def test_deploy_windows(keys):
    from madbwpu_r.guardrail.policy import DeployWindow

    window = DeployWindow(days=("mon",), hours="09:00-12:00", timezone="Europe/Paris")
    p = policy(windows=(window,))
    # NOW is Monday 11:00 UTC = 12:00 Paris: just outside
    assert not verdict(
        evaluate(p, keys, ctx(keys, signoff(keys, "quinn"))), "security.deploy_window"
    ).passed
    early = NOW - 2 * 3600  # 10:00 Paris
    c = ctx(keys, signoff(keys, "quinn", at=early - 10), now=early)
    assert verdict(evaluate(p, keys, c), "security.deploy_window").passed


@pytest.mark.parametrize(
    "scaling, rule",
    [
        (dataclasses.replace(GOOD_SCALE, api_replicas=0), "scaling.api_replicas"),
        (dataclasses.replace(GOOD_SCALE, workers_max=64), "scaling.workers"),
        (dataclasses.replace(GOOD_SCALE, workers_min=0), "scaling.workers"),
        (dataclasses.replace(GOOD_SCALE, target_queue_depth=500), "scaling.target_queue_depth"),
        (dataclasses.replace(GOOD_SCALE, edge_nodes=0), "scaling.edge_nodes"),
        (None, "scaling.config"),
    ],
)
def test_scaling_rules(keys, scaling, rule):
    results = evaluate(policy(), keys, ctx(keys, signoff(keys, "quinn"), scaling=scaling))
    assert [r.rule for r in failures(results)] == [rule]
