"""QA decisions verify only from a qa identity, for exactly what was signed."""

from __future__ import annotations

import dataclasses

import pytest

from madbwpu_r.release.decisions import QaDecision, make_decision, verify_decision
from madbwpu_r.release.errors import Refused
from tests.release.keys import Directory


@pytest.fixture
def keys() -> Directory:
    d = Directory()
    d.add("quinn", "qa")
    d.add("dora", "deployer")
    return d


def test_signoff_verifies_and_round_trips(keys):
    doc = make_decision(keys.keys["quinn"], "signoff", "r" * 64, 100.0, "looks good")
    verify_decision(QaDecision.from_json(doc.to_json()), keys)


def test_signoff_without_qa_role_refused(keys):
    doc = make_decision(keys.keys["dora"], "signoff", "r" * 64, 100.0)
    with pytest.raises(Refused) as exc:
        verify_decision(doc, keys)
    assert exc.value.code == "not-qa"


def test_unknown_signer_refused(keys):
    stranger = Directory().add("mallory", "qa")
    with pytest.raises(Refused) as exc:
        verify_decision(make_decision(stranger, "signoff", "r" * 64, 1.0), keys)
    assert exc.value.code == "unknown-identity"


@pytest.mark.parametrize(
    "change", [{"release_id": "x" * 64}, {"at": 5.0}, {"note": "edited"}, {"kind": "rejection"}]
)
def test_tampered_decision_refused(keys, change):
    doc = make_decision(keys.keys["quinn"], "signoff", "r" * 64, 100.0, "ok")
    with pytest.raises(Refused) as exc:
        verify_decision(dataclasses.replace(doc, **change), keys)
    assert exc.value.code == "bad-signature"


def test_impersonation_refused(keys):
    mallory = Directory().add("quinn", "qa")  # same name, another key
    with pytest.raises(Refused):
        verify_decision(make_decision(mallory, "signoff", "r" * 64, 1.0), keys)


def test_malformed_refused():
    with pytest.raises(Refused):
        QaDecision.from_json({"kind": "approve"})
