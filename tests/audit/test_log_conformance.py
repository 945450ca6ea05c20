"""The audit log on every engine: chain, order, checkpoints, proofs, units of work, processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from madbwpu_r.audit.checkpoint import CHECKPOINT_PURPOSE
from madbwpu_r.audit.live import verify_log
from madbwpu_r.audit.log import AuditLog
from madbwpu_r.audit.merkle import leaf_hash, verify_consistency, verify_inclusion
from madbwpu_r.audit.records import GENESIS, AuditRecord, InvalidRecord
from madbwpu_r.identity.directory import IdentityDirectory
from madbwpu_r.signing import SigningKey
from madbwpu_r.store import IngestRecord, open_store

WORKER = Path(__file__).with_name("append_worker.py")
ROOT = Path(__file__).parent.parent.parent


def rec(i: int, actor: str = "alice", action: str = "data.purge") -> AuditRecord:
    return AuditRecord(actor, action, f"target:{i}", evidence={"file": f"{i:064x}"})


def test_append_chains_and_reads_back(log: AuditLog) -> None:
    made = log.append([rec(0), rec(1)]) + log.append(rec(2, actor="bob"))
    assert [e.seq for e in made] == [0, 1, 2]
    assert made[0].prev == GENESIS
    assert made[1].prev == made[0].hash() and made[2].prev == made[1].hash()
    assert list(log.entries()) == made
    assert log.size() == 3
    assert [e.seq for e in log.query(actor="bob")] == [2]
    assert [e.seq for e in log.query(action="data.")] == [0, 1, 2]
    assert [e.seq for e in log.query(target="target:1")] == [1]
    assert [e.seq for e in log.query(after=0, limit=1)] == [1]
    assert log.query(since=time.time() + 60) == []


def test_refused_records_leave_nothing(log: AuditLog) -> None:
    with pytest.raises(InvalidRecord):
        log.append([rec(0), AuditRecord("alice", "no.such", "x")])
    with pytest.raises(InvalidRecord):
        log.append(AuditRecord("alice", "data.purge", "x", evidence={"password": "hunter2"}))
    assert log.size() == 0


def test_checkpoints_sign_roots_with_proofs(log: AuditLog, service_key: SigningKey) -> None:
    first = log.checkpoint(service_key)
    assert first.size == 0 and first.prev is None
    log.append([rec(i) for i in range(5)])
    second = log.checkpoint(service_key)
    log.append([rec(i) for i in range(5, 13)])
    third = log.checkpoint(service_key)
    assert (second.size, third.size) == (5, 13)
    assert second.prev == first.body_hash() and third.prev == second.body_hash()
    third.verify_signature(third.signatures[0], service_key.public, CHECKPOINT_PURPOSE)
    tree = log.tree()
    assert tree.root(5) == second.root and tree.root() == third.root
    verify_consistency(5, 13, tree.consistency_proof(5, 13), second.root, third.root)
    entries = list(log.entries())
    verify_inclusion(leaf_hash(entries[7].leaf()), 7, 13, tree.inclusion_proof(7), third.root)
    assert [c.size for c in log.checkpoints()] == [0, 5, 13]
    assert log.latest_checkpoint() == third


def test_an_idle_log_still_checkpoints(log: AuditLog, service_key: SigningKey) -> None:
    log.append(rec(0))
    a, b = log.checkpoint(service_key), log.checkpoint(service_key, now=time.time() + 1)
    assert a.size == b.size and a.root == b.root and b.prev == a.body_hash() and b.time > a.time


def test_live_verify_is_clean_and_catches_an_edit(
    log: AuditLog, service_key: SigningKey, directory: IdentityDirectory
) -> None:
    log.append([rec(i) for i in range(20)])
    log.checkpoint(service_key)
    report = verify_log(log, "test", directory, "audit-service")
    assert report.ok, report.problems
    with log.db.transaction() as tx:
        tx.execute(
            log.db.dialect.sql("UPDATE {p}audit_entries SET actor = ? WHERE seq = ?"),
            ("mallory", 4),
        )
    report = verify_log(log, "test", directory, "audit-service")
    assert not report.ok and report.first_bad_entry().seq == 4  # type: ignore[union-attr]
    assert "edited" in report.kinds()


def test_an_entry_commits_with_its_change(audit_url: str) -> None:
    store = open_store(audit_url)
    log = AuditLog.open(audit_url, "madbwpu-r/test")
    try:
        with store.unit_of_work() as uow:
            uow.record_ingest(IngestRecord("job1", "d", "u.csv", 1.0))
            uow.audit(AuditRecord("api", "ingest.accepted", "dataset:d", detail="job job1"))
        with pytest.raises(RuntimeError), store.unit_of_work() as uow:
            uow.record_ingest(IngestRecord("job2", "d", "u.csv", 1.0))
            uow.audit(AuditRecord("api", "ingest.accepted", "dataset:d", detail="job job2"))
            raise RuntimeError("the change fails after its entry was written")
        with pytest.raises(InvalidRecord), store.unit_of_work() as uow:
            uow.record_ingest(IngestRecord("job3", "d", "u.csv", 1.0))
            uow.audit(AuditRecord("api", "no.such.action", "dataset:d"))
        assert store.ingest("job1") is not None
        assert store.ingest("job2") is None and store.ingest("job3") is None
        assert [e.detail for e in log.entries()] == ["job job1"]
    finally:
        log.close()
        store.close()


def _spawn(*args: str, quiet: bool = False) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.DEVNULL if quiet else subprocess.PIPE
    return subprocess.Popen([sys.executable, str(WORKER), *args], stdout=out, text=True, env=env)


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _wait_for_output(proc: subprocess.Popen[str], lines: int) -> None:
    assert proc.stdout is not None
    for _ in range(lines):
        if not proc.stdout.readline():
            raise AssertionError("the writer exited early")


def test_processes_append_in_one_order_and_a_kill_breaks_nothing(
    audit_url: str, make_log: Callable[[], AuditLog], service_key: SigningKey,
    directory: IdentityDirectory,
) -> None:  # fmt: skip
    log = make_log()  # creates the tables before the writers race
    writers = [_spawn("log", audit_url, "300", "10", quiet=True) for _ in range(3)]
    victim = _spawn("log", audit_url, "100000", "50")
    _wait_for_output(victim, 3)
    _kill(victim)  # most likely inside a transaction
    for w in writers:
        assert w.wait(timeout=120) == 0
    entries = list(log.entries())
    assert len(entries) % 10 == 0 and len(entries) >= 900 + 150
    by_writer: dict[str, int] = {}
    for e in entries:
        by_writer[e.actor] = by_writer.get(e.actor, 0) + 1
    counts = sorted(by_writer.values())
    assert len(counts) == 4 and counts.count(300) >= 3  # the writers' batches all whole, none lost
    assert all(c % 50 == 0 for c in counts)  # the victim's too: a killed batch left nothing
    log.checkpoint(service_key)
    report = verify_log(log, "test", directory, "audit-service")
    assert report.ok, report.problems[:3]
    log.append(rec(0))  # the log goes on after the kill
    assert log.size() == len(entries) + 1


def test_no_change_without_its_entry_across_a_kill(audit_url: str) -> None:
    store = open_store(audit_url)  # creates the tables before the writers race
    try:
        writers = [_spawn("store", audit_url, "100000", "1") for _ in range(2)]
        for w in writers:
            _wait_for_output(w, 20)
        for w in writers:
            _kill(w)
        log = AuditLog.open(audit_url, "madbwpu-r/test")
        jobs = {e.detail.removeprefix("job ") for e in log.entries()}
        log.close()
        assert len(jobs) >= 40
        assert all(store.ingest(j) is not None for j in jobs)
        dialect = store.audit_dialect  # type: ignore[attr-defined]
        with store.unit_of_work() as uow:
            count = uow._conn.execute(dialect.sql("SELECT count(*) FROM {p}ingests")).fetchone()[0]  # type: ignore[attr-defined]
        assert count == len(jobs)
    finally:
        store.close()
