"""Property tests: every way of tampering with an archive or the live store is detected and named.

Untampered archives of random logs always verify; each tampering (edit, delete, insert, reorder,
truncate, swap segments, replace a key, forge a signoff, roll back) yields the problem kind that
names it, and, where it concerns one entry, that entry as the first bad one.
"""

from __future__ import annotations

import copy
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from madbwpu_r.audit.archive import Archive, export_archive, load_archive, sign_off, verify_archive
from madbwpu_r.audit.checkpoint import SIGNOFF_PURPOSE, Checkpoint
from madbwpu_r.audit.layout import AUDIT_KEY, open_log, read_witness, write_witness
from madbwpu_r.audit.live import verify_log
from madbwpu_r.audit.records import AuditRecord
from madbwpu_r.identity.acts import make_act
from madbwpu_r.identity.keyring import Keyring
from madbwpu_r.identity.setup import init_project, open_directory
from madbwpu_r.signing import (
    SigningKey,
    b64decode,
    b64encode,
    canonical_json,
    public_key_to_b64,
    sign,
)

FEW = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))


def _records(n: int, offset: int = 0) -> list[AuditRecord]:
    return [
        AuditRecord(f"user{(offset + i) % 3}", "data.purge", f"deploy:d{(offset + i) // 5}",
                    evidence={"manifest": f"{offset + i:064x}"}, detail=f"step {offset + i}")
        for i in range(n)
    ]  # fmt: skip


def make_project(root: Path, sizes: list[int]) -> tuple[Path, list[Path]]:
    """A project whose production log got `sizes[k]` entries before archive k (signed off)."""
    data = root / "data"
    init_project(data)
    directory = open_directory(data)
    admin = Keyring(data).load("admin")
    for name, role in (("carol", "compliance"), ("quinn", "qa")):
        k = Keyring(data).create(name)
        directory.apply(make_act(admin, "identity.add", name, [role], public_key_to_b64(k.public)))
    log = open_log(data, "production")
    service = Keyring(data).load(AUDIT_KEY)
    paths, written = [], 0
    for number, n in enumerate(sizes):
        log.append(_records(n, written))
        log.checkpoint(service)
        since = None if number == 0 else _entry_time(log, written)
        written += n
        out = root / f"a{number}"
        arch = export_archive(log, "production", service, directory.acts(), out, actor=AUDIT_KEY,
                              since=since)  # fmt: skip
        write_witness(data, "production", arch.checkpoint)
        sign_off(arch, Keyring(data).load("carol"), directory.acts(), log)
        written += 1  # the audit.archive entry; the signoff adds one more
        written += 1
        paths.append(out)
    log.close()
    directory.db.close()
    return data, paths


def _entry_time(log: Any, seq: int) -> float:
    from datetime import UTC, datetime

    e = next(log.entries(seq, seq + 1))
    return datetime.strptime(e.time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    return make_project(tmp_path_factory.mktemp("tamper"), [12, 9])


def trusted(data: Path) -> dict[str, str]:
    d = open_directory(data)
    try:
        return {m.name: m.fingerprint for m in d.list()}
    finally:
        d.db.close()


def variant(
    arch: Archive, doc: dict[str, Any] | None = None, signoffs: list | None = None
) -> Archive:
    return Archive(arch.path, doc if doc is not None else arch.doc,
                   signoffs if signoffs is not None else arch.signoffs, arch.raw)  # fmt: skip


@given(st.lists(st.integers(1, 15), min_size=1, max_size=3))
@FEW
def test_untampered_archives_always_verify(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data, paths = make_project(Path(tmp), sizes)
        keys = trusted(data)
        for path in paths:
            report = verify_archive(load_archive(path), keys)
            assert report.ok, report.problems
            assert report.signoffs == ["carol"]
        live = open_log(data, "production")
        directory = open_directory(data)
        witness = read_witness(data, "production")
        assert witness is not None
        report = verify_log(live, "production", directory, AUDIT_KEY, [("witness", witness)],
                            [load_archive(p) for p in paths])  # fmt: skip
        assert report.ok, report.problems
        live.close()
        directory.db.close()


EDITABLE = st.sampled_from(["actor", "target", "detail", "outcome", "evidence", "time"])


@given(st.data(), EDITABLE)
@FEW
def test_an_edited_entry_is_named(
    project: tuple[Path, list[Path]], data: st.DataObject, field: str
) -> None:
    arch = load_archive(project[1][0])
    doc = copy.deepcopy(arch.doc)
    i = data.draw(st.integers(0, len(doc["entries"]) - 1))
    entry = doc["entries"][i]
    changed = {"evidence": {"manifest": "f" * 64}, "outcome": "refused"}
    entry[field] = changed[field] if field in changed else entry[field] + "x"
    report = verify_archive(variant(arch, doc), trusted(project[0]))
    assert {"not-in-log", "edited"} & report.kinds()
    assert report.first_bad_entry().seq == doc["start"] + i  # type: ignore[union-attr]


@given(st.data())
@FEW
def test_a_deleted_entry_is_named(project: tuple[Path, list[Path]], data: st.DataObject) -> None:
    arch = load_archive(project[1][0])
    doc = copy.deepcopy(arch.doc)
    i = data.draw(st.integers(0, len(doc["entries"]) - 2))
    del doc["entries"][i], doc["inclusion"][i]
    report = verify_archive(variant(arch, doc), trusted(project[0]))
    assert "missing" in report.kinds() and "truncated" in report.kinds()
    assert report.first_bad_entry().seq == doc["start"] + i  # type: ignore[union-attr]


@given(st.data())
@FEW
def test_an_inserted_entry_is_named(project: tuple[Path, list[Path]], data: st.DataObject) -> None:
    arch = load_archive(project[1][0])
    doc = copy.deepcopy(arch.doc)
    i = data.draw(st.integers(0, len(doc["entries"]) - 1))
    forged = dict(doc["entries"][i], detail="an act that never happened")
    doc["entries"].insert(i, forged)
    doc["inclusion"].insert(i, doc["inclusion"][i])
    report = verify_archive(variant(arch, doc), trusted(project[0]))
    assert "out-of-order" in report.kinds()


@given(st.data())
@FEW
def test_reordered_entries_are_named(project: tuple[Path, list[Path]], data: st.DataObject) -> None:
    arch = load_archive(project[1][0])
    doc = copy.deepcopy(arch.doc)
    n = len(doc["entries"])
    i = data.draw(st.integers(0, n - 2))
    j = data.draw(st.integers(i + 1, n - 1))
    for key in ("entries", "inclusion"):
        doc[key][i], doc[key][j] = doc[key][j], doc[key][i]
    report = verify_archive(variant(arch, doc), trusted(project[0]))
    assert {"out-of-order", "missing"} & report.kinds()
    assert report.first_bad_entry().seq == doc["start"] + i  # type: ignore[union-attr]


@given(st.data())
@FEW
def test_a_truncated_tail_is_named(project: tuple[Path, list[Path]], data: st.DataObject) -> None:
    arch = load_archive(project[1][0])
    doc = copy.deepcopy(arch.doc)
    k = data.draw(st.integers(1, len(doc["entries"])))
    del doc["entries"][-k:], doc["inclusion"][-k:]
    report = verify_archive(variant(arch, doc), trusted(project[0]))
    assert "truncated" in report.kinds()


def test_swapped_segments_are_named(project: tuple[Path, list[Path]]) -> None:
    a, b = (load_archive(p) for p in project[1])
    doc = copy.deepcopy(a.doc)
    doc["entries"], doc["inclusion"] = (
        copy.deepcopy(b.doc["entries"]),
        copy.deepcopy(b.doc["inclusion"]),
    )
    report = verify_archive(variant(a, doc), trusted(project[0]))
    assert {"missing", "not-in-log"} <= report.kinds()
    # Swapping the tail of one segment for another's entries at the same positions.
    doc = copy.deepcopy(b.doc)
    doc["entries"][-1] = dict(copy.deepcopy(a.doc["entries"][-1]), seq=doc["entries"][-1]["seq"])
    report = verify_archive(variant(b, doc), trusted(project[0]))
    assert "not-in-log" in report.kinds()


@pytest.mark.parametrize("who", ["audit-service", "carol", "admin"])
def test_a_replaced_public_key_is_named(project: tuple[Path, list[Path]], who: str) -> None:
    arch = load_archive(project[1][0])
    other = public_key_to_b64(SigningKey.generate(who).public)
    doc = copy.deepcopy(arch.doc)
    for k in doc["keys"]:
        if k["name"] == who:
            k["public_key"] = other
    assert "key-mismatch" in verify_archive(variant(arch, doc)).kinds()
    doc = copy.deepcopy(arch.doc)
    for act in doc["identity_acts"]:
        if act["act"]["name"] == who:
            act["act"]["public_key"] = other
    assert "key-mismatch" in verify_archive(variant(arch, doc)).kinds()


def test_a_wholly_re_signed_archive_fails_against_trusted_keys(
    project: tuple[Path, list[Path]],
) -> None:
    """An attacker with new keys rewrites everything consistently: only trust anchors catch it."""
    arch = load_archive(project[1][0])
    admin, service = SigningKey.generate("admin"), SigningKey.generate(AUDIT_KEY)
    acts = [make_act(admin, "identity.init", "admin", ["admin"]),
            make_act(admin, "identity.add", AUDIT_KEY, ["service-audit"], public_key_to_b64(service.public))]  # fmt: skip
    doc = copy.deepcopy(arch.doc)
    cp = Checkpoint.parse(doc["checkpoint"])
    doc["checkpoint"] = (
        Checkpoint(cp.origin, cp.size, cp.root, cp.time, cp.prev).signed(service).text()
    )
    doc["history"] = []
    doc["identity_acts"] = [a.to_json() for a in acts]
    doc["keys"] = [{"name": n, "public_key": public_key_to_b64(k.public), "roles": [], "revoked": False}
                   for n, k in (("admin", admin), (AUDIT_KEY, service))]  # fmt: skip
    doc.pop("signature")
    doc["signature"] = sign(service, "audit-archive", canonical_json(doc))
    forged = variant(arch, doc, [])
    assert verify_archive(forged).ok  # self-consistent...
    assert "key-mismatch" in verify_archive(forged, trusted(project[0])).kinds()  # ...but not ours


def test_forged_signoffs_are_named(project: tuple[Path, list[Path]]) -> None:
    data, paths = project
    arch = load_archive(paths[0])
    good = arch.signoffs[0]
    # A flipped bit in the signature.
    blob = bytearray(b64decode(good["signature"].split(" ")[-1]))
    blob[10] ^= 1
    bad = dict(good, signature=f"\u2014 carol {b64encode(bytes(blob))}")
    assert "forged-signoff" in verify_archive(variant(arch, signoffs=[bad])).kinds()
    # A valid signature by an identity that is not compliance.
    cp = arch.checkpoint
    quinn = Keyring(data).load("quinn")
    line = cp.signed(quinn, SIGNOFF_PURPOSE).signatures[-1].line().rstrip("\n")
    acts = open_directory(data).acts()
    by_qa = dict(good, signer="quinn", signature=line, identity_acts=[a.to_json() for a in acts])
    assert "forged-signoff" in verify_archive(variant(arch, signoffs=[by_qa])).kinds()
    # Mallory grants herself compliance in the signoff's acts, without an admin's signature.
    mallory = SigningKey.generate("mallory")
    fake = make_act(
        mallory, "identity.add", "mallory", ["compliance"], public_key_to_b64(mallory.public)
    )
    line = cp.signed(mallory, SIGNOFF_PURPOSE).signatures[-1].line().rstrip("\n")
    self_made = dict(good, signer="mallory", signature=line,
                     identity_acts=good["identity_acts"] + [fake.to_json()])  # fmt: skip
    assert "forged-signoff" in verify_archive(variant(arch, signoffs=[self_made])).kinds()
    # The honest signoff alone verifies.
    assert verify_archive(variant(arch, signoffs=[good])).ok


def test_an_archive_rolled_back_to_an_earlier_checkpoint_is_named(
    project: tuple[Path, list[Path]],
) -> None:
    arch = load_archive(project[1][1])
    doc = copy.deepcopy(arch.doc)
    earlier = doc["history"][-1]["checkpoint"]
    doc["checkpoint"] = earlier
    report = verify_archive(variant(arch, doc), trusted(project[0]))
    assert {"not-in-log", "inconsistent", "malformed"} & report.kinds()
    assert not report.ok


# ---- the live store -------------------------------------------------------------------------


def _live_report(data: Path, archives: list[Path] = ()) -> Any:  # type: ignore[assignment]
    log, directory = open_log(data, "production"), open_directory(data)
    try:
        witness = read_witness(data, "production")
        kept = [("the witness checkpoint", witness)] if witness else []
        return verify_log(
            log, "production", directory, AUDIT_KEY, kept, [load_archive(p) for p in archives]
        )
    finally:
        log.close()
        directory.db.close()


LIVE_TAMPERS = {
    "edit": ("UPDATE audit_entries SET detail = 'rewritten' WHERE seq = {i}", {"edited"}),
    "delete": ("DELETE FROM audit_entries WHERE seq = {i}", {"missing"}),
    "insert": (
        "UPDATE audit_entries SET seq = -seq - 1 WHERE seq >= {i};"
        "UPDATE audit_entries SET seq = -seq WHERE seq < 0;"
        "INSERT INTO audit_entries SELECT {i}, ts, time, 'mallory', action, target, outcome, detail,"
        " evidence, prev, hash FROM audit_entries WHERE seq = {i} + 1",
        {"out-of-order", "edited"},
    ),
    "reorder": (
        "UPDATE audit_entries SET seq = -1 WHERE seq = {i};"
        "UPDATE audit_entries SET seq = {i} WHERE seq = {i} + 1;"
        "UPDATE audit_entries SET seq = {i} + 1 WHERE seq = -1",
        {"out-of-order", "missing", "edited"},
    ),
    "truncate": (
        "DELETE FROM audit_entries WHERE seq >= {i};"
        "UPDATE audit_head SET size = (SELECT count(*) FROM audit_entries)",
        {"truncated", "rolled-back"},
    ),
}


@pytest.fixture(scope="module")
def live_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("live")
    make_project(root, [10, 6])
    return root


@given(st.sampled_from(sorted(LIVE_TAMPERS)), st.integers(0, 12))
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_live_store_tampering_is_named(live_base: Path, how: str, i: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "copy"
        shutil.copytree(live_base, root)
        data = root / "data"
        assert _live_report(data).ok
        sql, kinds = LIVE_TAMPERS[how]
        conn = sqlite3.connect(data / "production" / "state.sqlite")
        conn.executescript(sql.format(i=i))
        conn.commit()
        conn.close()
        report = _live_report(data)
        assert report.kinds() & kinds, (how, i, report.problems)


def test_a_live_store_rolled_back_to_an_earlier_checkpoint_is_named(tmp_path: Path) -> None:
    data, _ = make_project(tmp_path, [5])
    db = data / "production" / "state.sqlite"
    snapshot = tmp_path / "snapshot.sqlite"
    conn = sqlite3.connect(db)
    conn.execute(f"VACUUM INTO '{snapshot}'")
    conn.close()
    log = open_log(data, "production")
    log.append(_records(4))
    write_witness(data, "production", log.checkpoint(Keyring(data).load(AUDIT_KEY)))
    log.close()
    assert _live_report(data).ok
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    shutil.copy(snapshot, db)  # the whole database back as it was, checkpoints and all
    report = _live_report(data)
    assert "rolled-back" in report.kinds()
