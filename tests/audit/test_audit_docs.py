"""Every audit action the code can emit is in the catalogue, and the README documents each."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from madbwpu_r.audit.records import ACTIONS, AuditRecord, InvalidRecord
from madbwpu_r.audit.verify import KINDS

ROOT = Path(__file__).parent.parent.parent
README = (ROOT / "README.md").read_text()


def test_every_action_is_documented() -> None:
    missing = [a for a in ACTIONS if f"| `{a}` |" not in README]
    assert not missing, f"README's audit record types lack: {missing}"


def test_every_action_literal_in_the_code_is_in_the_catalogue() -> None:
    used = set()
    for path in (ROOT / "src").rglob("*.py"):
        used |= set(re.findall(r'action\s*=\s*"([a-z]+\.[a-z_.]+)"', path.read_text()))
        used |= set(
            re.findall(r'AuditRecord\([^)]*?"[^"]*",\s*"([a-z]+\.[a-z_]+)"', path.read_text())
        )
    assert used, "the scan found no action at all"
    assert used <= set(ACTIONS), f"not in audit/records.py ACTIONS: {used - set(ACTIONS)}"


def test_an_unknown_action_is_refused() -> None:
    with pytest.raises(InvalidRecord):
        AuditRecord("alice", "made.up", "x").check()
    with pytest.raises(InvalidRecord, match="digest"):
        AuditRecord("alice", "identity.add", "x", evidence={"token": "hunter2"}).check()


def test_every_problem_kind_is_documented() -> None:
    assert all(f"`{kind}`" in README for kind in KINDS)


def test_every_catalogued_action_is_emitted_somewhere() -> None:
    """The converse: an action nothing records would promise an audit that never happens."""
    code = "\n".join(p.read_text() for p in (ROOT / "src").rglob("*.py") if p.name != "records.py")
    never = [a for a in ACTIONS if f'"{a}"' not in code]
    assert not never, f"catalogued in audit/records.py but never emitted: {never}"
