"""A cutover grant verifies only for its project, environment and release, and only briefly."""

from __future__ import annotations

import dataclasses

import pytest

from madbwpu_r.release.errors import Refused
from madbwpu_r.release.grant import CutoverGrant, mint_grant, verify_grant
from madbwpu_r.signing import SigningKey

PIPELINE = SigningKey.generate("pipeline")
R1, R2 = "1" * 64, "2" * 64


def grant(**over) -> CutoverGrant:
    args = dict(
        project="p",
        release_id=R1,
        environment="production",
        deploy_id="dep-1",
        action="deploy",
        now=1000.0,
    )
    args.update(over)
    return mint_grant(PIPELINE, **args)


def check(g: CutoverGrant, now: float = 1001.0, key=PIPELINE, **over) -> None:
    expected = dict(project="p", environment="production", release_id=R1)
    expected.update(over)
    verify_grant(g, key.public, now=now, **expected)


def code(g: CutoverGrant, **kw) -> str:
    with pytest.raises(Refused) as exc:
        check(g, **kw)
    return exc.value.code


def test_valid_grant_and_unique_ids():
    g = grant()
    check(CutoverGrant.from_json(g.to_json()))
    assert grant().grant_id != g.grant_id


def test_forged_grant_refused():
    forger = SigningKey.generate("pipeline")
    assert (
        code(
            mint_grant(
                forger,
                project="p",
                release_id=R1,
                environment="production",
                deploy_id="d",
                action="deploy",
                now=1000.0,
            )
        )
        == "grant-forged"
    )


def test_edited_grant_refused():
    assert code(dataclasses.replace(grant(), release_id=R2), release_id=R2) == "grant-forged"
    assert code(dataclasses.replace(grant(), expires_at=10**12)) == "grant-forged"


def test_other_release_environment_project_refused():
    assert code(grant(release_id=R2)) == "grant-other-release"
    assert code(grant(environment="staging")) == "grant-other-environment"
    assert code(grant(project="q")) == "grant-other-project"


def test_expired_and_future_grants_refused():
    assert code(grant(), now=1000.0 + 121) == "grant-expired"
    assert code(grant(now=2000.0), now=1000.0) == "grant-not-yet-valid"


def test_malformed_grant_refused():
    with pytest.raises(Refused):
        CutoverGrant.from_json({"grant_id": "x"})
