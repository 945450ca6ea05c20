"""The conformance script's scoring mirrors the suite's own display rules; no npm or node needed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "conformance.py"


@pytest.fixture(scope="module")
def conformance():
    spec = importlib.util.spec_from_file_location("scripts_conformance", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


TESTS = [
    {
        "id": "freshness-none",
        "name": "none",
        "kind": "check",
        "depends_on": [],
        "browser_only": False,
    },
    {"id": "fresh", "name": "fresh", "kind": "optimal", "depends_on": [], "browser_only": False},
    {"id": "req-a", "name": "a", "kind": "required", "depends_on": [], "browser_only": False},
    {
        "id": "req-b",
        "name": "b",
        "kind": "required",
        "depends_on": ["fresh"],
        "browser_only": False,
    },
    {"id": "req-c", "name": "c", "kind": "required", "depends_on": [], "browser_only": False},
    {"id": "req-d", "name": "d", "kind": "required", "depends_on": [], "browser_only": False},
    {"id": "browser", "name": "br", "kind": "required", "depends_on": [], "browser_only": True},
]

RESULTS = {
    "freshness-none": True,
    "fresh": ["Assertion", "Response 2 does not come from cache"],
    "req-a": True,
    "req-b": True,  # passes, but depends on a failed test: counted, not counted strictly
    "req-c": ["Assertion", "Response 2 comes from cache"],
    "req-d": ["Setup", "Response 1 status is 500, not 200"],
}


def test_summary_counts_required_optional_and_checks(conformance) -> None:
    summary = conformance.summarise("edge", TESTS, RESULTS)
    assert (summary.required_passed, summary.required_total) == (2, 4)
    assert summary.required_passed_strict == 1
    assert (summary.optional_passed, summary.optional_total) == (0, 1)
    assert (summary.check_yes, summary.check_total) == (1, 1)
    failing = {test_id: (state, why) for test_id, state, why in summary.failing_required}
    assert failing == {
        "req-c": ("fail", "Assertion: Response 2 comes from cache"),
        "req-d": ("setup_fail", "Setup: Response 1 status is 500, not 200"),
    }


def test_failures_file_lists_ids_with_reasons(conformance) -> None:
    summary = conformance.summarise("nginx", TESTS, RESULTS)
    text = conformance.failures_text([summary], TESTS)
    assert "required passed of 4, per run: 2 (strict 1)" in text
    assert "req-c | 1/1 | fail | Assertion: Response 2 comes from cache | c" in text
    assert "req-a" not in text


def test_repeated_runs_separate_stable_from_flaky_failures(conformance) -> None:
    first = conformance.summarise("edge", TESTS, RESULTS)
    second = conformance.summarise("edge", TESTS, {**RESULTS, "req-d": True})
    third = conformance.summarise("edge", TESTS, {**RESULTS, "req-d": True, "req-a": False})
    runs = [first, second, third]
    figures = conformance.aggregate(runs)
    assert figures["required_passed_runs"] == [2, 3, 2]
    assert figures["required_passed"] == 2
    assert figures["failing_required_every_run"] == ["req-c"]
    text = conformance.failures_text(runs, TESTS)
    assert "req-c | 3/3 |" in text
    assert "req-d | 1/3 |" in text
    assert "req-a | 1/3 |" in text


def test_unrun_test_is_reported_untested(conformance) -> None:
    meta = {test["id"]: test for test in TESTS}
    assert conformance.outcome("req-a", meta, {}) == "untested"
