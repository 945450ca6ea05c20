"""Every event the release code records maps to a catalogued audit action with digest evidence."""

from __future__ import annotations

import re
from pathlib import Path

from madbwpu_r.audit.records import ACTIONS
from madbwpu_r.release.audit import audit_record
from madbwpu_r.release.pipeline import STEP_KEYS

SRC = Path(__file__).parents[2] / "src" / "madbwpu_r"
FILES = [*(SRC / "release").glob("*.py"), SRC / "api" / "release.py", *(SRC / "cli").glob("*.py")]
PREFIXES = "release|qa|guardrail|deploy|rollback|cutover|ingest|audit|archive"


def emitted() -> set[str]:
    names = set()
    for path in FILES:
        names |= set(re.findall(rf'"((?:{PREFIXES})\.[a-z_.]+[a-z])"', path.read_text()))
    names |= {f"deploy.step.{k}.{s}" for k in STEP_KEYS for s in ("passed", "failed", "waiting")}
    names |= {"qa.signoff", "qa.rejection", "deploy.requested", "rollback.requested"}
    return names


def test_every_emitted_event_maps_into_the_catalogue():
    for name in emitted():
        record = audit_record(
            "someone", name, "dep-1", "waiting", {"release_id": "a" * 64, "x": [1]}
        )
        record.check()
        assert record.action in ACTIONS, name
        assert record.outcome == "ok" and record.target == "deploy:dep-1"


def test_evidence_is_digests_only():
    record = audit_record("a", "release.cut", "b" * 64, "ok", {"secretish": "plain text"})
    assert set(record.evidence) == {"evidence"} and re.fullmatch(
        "[0-9a-f]{64}", record.evidence["evidence"]
    )
    assert record.target == "release:" + "b" * 64
