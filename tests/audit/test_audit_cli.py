"""`madbwpu-r audit ...` end to end on a real data directory."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from madbwpu_r.audit.layout import open_log
from madbwpu_r.audit.records import AuditRecord
from madbwpu_r.cli.main import app

runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def project(tmp_path: Path) -> Path:
    d = tmp_path / "d"
    assert cli("init", "--data-dir", str(d))[0] == 0
    for name, role in (("carol", "compliance"), ("quinn", "qa")):
        code, out = cli(
            "identity", "add", name, "--role", role, "--as", "admin", "--data-dir", str(d)
        )
        assert code == 0, out
    log = open_log(d, "production")
    log.append([AuditRecord("rel", "data.purge", "deploy:r1/step1"), AuditRecord("rel", "data.purge", "other"),
                AuditRecord("rel", "data.purge", "deploy:r1/step2"), AuditRecord("rel", "data.purge", "deploy:r2")])  # fmt: skip
    log.close()
    return d


def test_archive_signoff_pending_verify(project: Path, tmp_path: Path) -> None:
    d = str(project)
    out = tmp_path / "r1"
    code, text = cli("audit", "archive", "--deploy", "r1", "--out", str(out), "--data-dir", d)
    assert code == 0, text
    doc = json.loads((out / "archive.json").read_text())
    assert (doc["start"], doc["stop"]) == (0, 3)
    assert stat.S_IMODE((out / "archive.json").stat().st_mode) == 0o444
    code, text = cli("audit", "archive", "--deploy", "r1", "--out", str(out), "--data-dir", d)
    assert code == 1 and "written once" in text
    code, text = cli(
        "audit", "archive", "--deploy", "nope", "--out", str(tmp_path / "x"), "--data-dir", d
    )
    assert code == 1 and "no entry matches" in text
    code, text = cli("audit", "pending", "--data-dir", d)
    assert code == 0 and str(out) in text
    code, text = cli("audit", "signoff", str(out), "--as", "quinn", "--data-dir", d)
    assert code == 1 and "compliance" in text
    code, text = cli("audit", "signoff", str(out), "--as", "carol", "--data-dir", d)
    assert code == 0, text
    code, text = cli("audit", "pending", "--data-dir", d)
    assert code == 0 and "no archive awaits signoff" in text
    code, text = cli("audit", "verify", str(out), "--data-dir", d)
    assert code == 0 and "signed off by carol" in text
    code, text = cli("audit", "log", "--action", "audit.", "--json", "--data-dir", d)
    assert [json.loads(line)["action"] for line in text.splitlines()] == [
        "audit.archive",
        "audit.signoff",
    ]
    code, text = cli("audit", "log", "--log", "project", "--actor", "quinn", "--data-dir", d)
    assert code == 0 and "identity.refused" in text
    code, text = cli("audit", "verify", "--all", str(out), "--data-dir", d)
    assert code == 0, text
    assert text.count("OK ") == 4


def test_tar_archive_and_a_tampered_one(project: Path, tmp_path: Path) -> None:
    d = str(project)
    tar = tmp_path / "all.tar"
    assert cli("audit", "archive", "--out", str(tar), "--data-dir", d)[0] == 0
    assert cli("audit", "signoff", str(tar), "--as", "carol", "--data-dir", d)[0] == 0
    code, text = cli("audit", "verify", str(tar), "--data-dir", d)
    assert code == 0 and "signed off by carol" in text
    plain = tmp_path / "plain"
    assert cli("audit", "archive", "--out", str(plain), "--data-dir", d)[0] == 0
    target = plain / "archive.json"
    target.chmod(0o644)
    target.write_text(target.read_text().replace('"deploy:r1/step2"', '"deploy:r9/step2"'))
    code, text = cli("audit", "verify", str(plain), "--data-dir", d)
    assert code == 1 and "FAILED" in text and "first bad entry: 2" in text
    code, text = cli("audit", "signoff", str(plain), "--as", "carol", "--data-dir", d)
    assert code == 1 and "does not verify" in text


def test_usage_errors(project: Path, tmp_path: Path) -> None:
    d = str(project)
    assert cli("audit", "verify", "--data-dir", d)[0] == 2
    code, text = cli("audit", "verify", str(tmp_path / "missing"), "--data-dir", d)
    assert code == 1 and "cannot read archive" in text
    code, text = cli("audit", "log", "--since", "yesterday", "--data-dir", d)
    assert code == 2 and "ISO 8601" in text
    code, text = cli("audit", "log", "--log", "nowhere", "--data-dir", d)
    assert code == 2
    code, text = cli("audit", "checkpoint", "--data-dir", d)
    assert code == 0 and text.startswith("madbwpu-r/production\n")


def test_a_rolled_back_live_log_is_caught(project: Path, tmp_path: Path) -> None:
    d = str(project)
    assert cli("audit", "checkpoint", "--data-dir", d)[0] == 0
    import sqlite3

    conn = sqlite3.connect(project / "production" / "state.sqlite")
    conn.execute("DELETE FROM audit_entries WHERE seq >= 2")
    conn.execute("UPDATE audit_head SET size = 2")
    conn.execute("DELETE FROM audit_checkpoints WHERE size > 2")
    conn.commit()
    conn.close()
    code, text = cli("audit", "verify", "--all", "--data-dir", d)
    assert code == 1 and "rolled-back" in text and "witness" in text
