"""The audit commands on a scaled-out environment: its log in PostgreSQL (`--store-url`), its
archives in the blob store (`--blob-url`, file:// and S3), and what they say when the audit
service's key is missing. Real engines: PostgreSQL on 127.0.0.1 (skips locally when it is not
running, fails in CI) and moto's S3 server as a child process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from madbwpu_r.audit.layout import PROJECT_STORE_ENV
from madbwpu_r.audit.log import AuditLog, origin_for
from madbwpu_r.audit.records import AuditRecord
from madbwpu_r.blobs import open_blobs
from madbwpu_r.cli.main import app
from madbwpu_r.identity.acts import make_act
from madbwpu_r.identity.keyring import Keyring
from madbwpu_r.identity.setup import open_directory
from madbwpu_r.signing import public_key_to_b64
from madbwpu_r.store import open_store
from tests.blobs.conftest import AWS_ENV, S3Server
from tests.queue.queue_backends import base_url

runner = CliRunner()


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.output


def _records() -> list[AuditRecord]:
    return [AuditRecord("rel", "data.purge", "deploy:r1/step1"), AuditRecord("rel", "data.purge", "other"),
            AuditRecord("rel", "data.purge", "deploy:r1/step2"), AuditRecord("rel", "data.purge", "deploy:r2")]  # fmt: skip


@pytest.fixture
def project(tmp_path: Path) -> Path:
    d = tmp_path / "d"
    assert cli("init", "--data-dir", str(d))[0] == 0
    for name, role in (("carol", "compliance"), ("quinn", "qa")):
        code, out = cli(
            "identity", "add", name, "--role", role, "--as", "admin", "--data-dir", str(d)
        )
        assert code == 0, out
    return d


# ---- the log of a PostgreSQL-backed environment -------------------------------------------


@pytest.fixture
def pg_store_url(tmp_path: Path) -> Iterator[str]:
    yield from base_url("postgres", tmp_path)


def test_the_commands_read_archive_sign_off_and_verify_a_postgres_log(
    project: Path, tmp_path: Path, pg_store_url: str
) -> None:
    d, url = str(project), pg_store_url
    # The entries are the store's own: appended in its units of work, as the API does.
    store = open_store(url)
    with store.unit_of_work() as uow:
        for record in _records():
            uow.audit(record)
    store.close()

    code, text = cli("audit", "log", "--store-url", url, "--json", "--data-dir", d)
    assert code == 0, text
    assert [json.loads(line)["target"] for line in text.splitlines()] == [
        "deploy:r1/step1", "other", "deploy:r1/step2", "deploy:r2"
    ]  # fmt: skip
    code, text = cli("audit", "log", "--data-dir", d)  # DIR's SQLite log is another log
    assert code == 0 and text == ""
    # The option comes from the environment too, as `api` takes it.
    code, text = cli("audit", "log", "--data-dir", d, env={"MADBWPU_R_STORE_URL": url})
    assert code == 0 and text.count("data.purge") == 4
    # Any URL the store takes, its own options included.
    code, text = cli(
        "audit", "log", "--store-url", url + "&pool_size=2&pool_timeout=5", "--data-dir", d
    )
    assert code == 0 and text.count("data.purge") == 4, text

    code, text = cli("audit", "checkpoint", "--store-url", url, "--data-dir", d)
    assert code == 0 and text.startswith("madbwpu-r/production\n4\n")
    out = tmp_path / "r1"
    code, text = cli("audit", "archive", "--deploy", "r1", "--out", str(out),
                     "--store-url", url, "--data-dir", d)  # fmt: skip
    assert code == 0, text
    assert json.loads((out / "archive.json").read_text())[("start")] == 0
    code, text = cli("audit", "pending", "--store-url", url, "--data-dir", d)
    assert code == 2 and "--log staging or --log production" in text
    code, text = cli("audit", "pending", "--log", "production", "--store-url", url, "--data-dir", d)
    assert code == 0 and str(out) in text
    code, text = cli("audit", "signoff", str(out), "--as", "carol", "--store-url", url, "--data-dir", d)  # fmt: skip
    assert code == 0, text
    code, text = cli("audit", "pending", "--log", "production", "--store-url", url, "--data-dir", d)
    assert code == 0 and "no archive awaits signoff" in text
    code, text = cli("audit", "log", "--action", "audit.", "--store-url", url, "--data-dir", d)
    assert code == 0 and "audit.archive" in text and "audit.signoff" in text
    code, text = cli("audit", "verify", "--all", "--log", "production", str(out),
                     "--store-url", url, "--data-dir", d)  # fmt: skip
    assert code == 0 and text.count("OK ") == 2, text  # the live log and the archive

    # Rewriting an entry in PostgreSQL is caught, with the entry named.
    import psycopg

    schema = url.rsplit("schema=", 1)[1]
    with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
        conn.execute(f"UPDATE \"{schema}\".audit_entries SET target = 'deploy:r9' WHERE seq = 1")
    code, text = cli("audit", "verify", "--all", "--log", "production",
                     "--store-url", url, "--data-dir", d)  # fmt: skip
    assert code == 1 and "FAILED log production" in text and "first bad entry: 1" in text


def test_the_commands_on_a_project_store_in_postgres(tmp_path: Path, pg_store_url: str) -> None:
    """`$MADBWPU_R_PROJECT_STORE_URL` on a server: no DIR/project.sqlite, and none is needed."""
    d, env = str(tmp_path / "pg"), {PROJECT_STORE_ENV: pg_store_url}
    code, text = cli("audit", "pending", "--data-dir", d, env=env)
    assert code == 1 and "has no identities yet" in text  # an empty store: `init` first
    assert cli("init", "--data-dir", d, env=env)[0] == 0
    assert not (tmp_path / "pg" / "project.sqlite").exists()
    code, text = cli("audit", "log", "--log", "project", "--data-dir", d, env=env)
    assert code == 0 and "identity.init" in text, text
    code, text = cli("audit", "pending", "--data-dir", d, env=env)
    assert code == 0 and "no archive awaits signoff" in text, text
    code, text = cli("audit", "verify", "--all", "--log", "project", "--data-dir", d, env=env)
    assert code == 0 and "OK log project" in text, text


def test_first_opens_of_a_fresh_schema_at_once_do_not_collide(pg_store_url: str) -> None:
    """`up` starts every API at once, and each opens the project's store as an audit log, an
    identity directory, a nonce store and a metadata store: on a fresh PostgreSQL schema their
    `CREATE ... IF NOT EXISTS` must queue on one lock, not fail with a duplicate key."""
    from madbwpu_r.audit.db import open_db
    from madbwpu_r.identity.directory import IdentityDirectory
    from madbwpu_r.identity.http import NonceStore

    def as_api() -> None:
        db = open_db(pg_store_url)
        try:
            IdentityDirectory(db)
            NonceStore(db)
        finally:
            db.close()

    def as_store() -> None:
        open_store(pg_store_url).close()

    openers = [as_api, as_store] * 4
    start = threading.Barrier(len(openers))
    failures: list[BaseException] = []

    def run(opener: Callable[[], None]) -> None:
        start.wait()
        try:
            opener()
        except Exception as exc:  # noqa: BLE001 - every failure is the finding
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(o,)) for o in openers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_a_sqlite_store_url_with_its_options(project: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/elsewhere/state.sqlite"
    store = open_store(url + "?busy_timeout=5")
    with store.unit_of_work() as uow:
        uow.audit(AuditRecord("rel", "data.purge", "deploy:r1"))
    store.close()
    code, text = cli("audit", "log", "--log", "staging", "--store-url", url + "?busy_timeout=5",
                     "--data-dir", str(project))  # fmt: skip
    assert code == 0 and "deploy:r1" in text, text
    assert not (tmp_path / "elsewhere" / "state.sqlite?busy_timeout=5").exists()
    code, text = cli("audit", "verify", "--all", "--log", "staging", "--store-url", url,
                     "--data-dir", str(project))  # fmt: skip
    assert code == 0 and "OK log staging: 1 entries" in text, text


def test_an_unreachable_store_is_a_message(project: Path) -> None:
    bad = "postgresql://postgres@127.0.0.1:1/test?schema=nowhere"
    for args in (("log",), ("checkpoint",), ("verify", "--all", "--log", "production")):
        code, text = cli("audit", *args, "--store-url", bad, "--data-dir", str(project))
        assert code == 1 and "cannot open the production audit log" in text, text
        assert "Traceback" not in text
    code, text = cli("audit", "log", "--store-url", "ftp://x/y", "--data-dir", str(project))
    assert code == 1 and "sqlite:///PATH or postgresql://" in text


# ---- archives in the blob store ------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture(params=["file", "s3"])
def env_blob_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The environment's blob store, as `api --blob-url` gets it."""
    if request.param == "file":
        return (tmp_path / "env-blobs").as_uri()
    server: S3Server = request.getfixturevalue("s3_server")
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    return f"s3://t{uuid.uuid4().hex[:16]}/env/blobs?create=1"


def _archived(text: str) -> str:
    found = re.search(r" to (\S+) \(checkpoint", text)
    assert found, text
    return found.group(1)


def test_archives_live_in_the_blob_store_and_verify_from_there(
    project: Path, tmp_path: Path, env_blob_url: str
) -> None:
    d = str(project)
    log = AuditLog.open(f"sqlite:///{project}/production/state.sqlite", origin_for("production"))
    log.append(_records())
    log.close()
    code, text = cli("audit", "archive", "--deploy", "r1", "--out", "r1",
                     "--blob-url", env_blob_url, "--data-dir", d)  # fmt: skip
    assert code == 0, text
    where = _archived(text)
    assert where.split("?")[0].endswith("/audit/archives/production/r1")
    with open_blobs(env_blob_url) as blobs:  # through the port, in the environment's store
        keys = [b.key for b in blobs.list("audit/")]
        doc = json.loads(blobs.read_bytes("audit/archives/production/r1/archive.json"))
    assert keys == ["audit/archives/production/r1/archive.json"]
    assert (doc["start"], doc["stop"]) == (0, 3)
    assert not (project / "r1").exists() and not Path("r1").exists()  # nothing local

    code, text = cli("audit", "archive", "--out", "r1", "--blob-url", env_blob_url, "--data-dir", d)
    assert code == 1 and "written once" in text
    code, text = cli(
        "audit", "archive", "--out", "a/b", "--blob-url", env_blob_url, "--data-dir", d
    )
    assert code == 2 and "not an archive name" in text

    code, text = cli("audit", "pending", "--data-dir", d)
    assert code == 0 and where in text
    code, text = cli("audit", "signoff", where, "--as", "carol", "--data-dir", d)
    assert code == 0, text
    with open_blobs(env_blob_url) as blobs:
        signoffs = [b.key for b in blobs.list("audit/archives/production/r1/signoffs/")]
    assert len(signoffs) == 1 and "/signoffs/carol-" in signoffs[0]
    code, text = cli("audit", "pending", "--data-dir", d)
    assert code == 0 and "no archive awaits signoff" in text
    code, text = cli("audit", "verify", where, "--data-dir", d)
    assert code == 0 and "signed off by carol" in text
    code, text = cli("audit", "verify", "--all", where, "--data-dir", d)
    assert code == 0 and text.count("OK ") == 4, text

    # Unnamed, from the environment variable: a fresh name each time.
    blob_env = {"MADBWPU_R_BLOB_URL": env_blob_url}
    code, text = cli("audit", "archive", "--data-dir", d, env=blob_env)
    assert code == 0, text
    second = _archived(text)
    assert "/audit/archives/production/production-" in second and second != where

    # A tampered copy in the store is caught when read back from it.
    forged = dict(doc)
    forged["entries"] = [dict(e) for e in doc["entries"]]
    forged["entries"][1]["target"] = "deploy:r9/step1"
    with open_blobs(env_blob_url) as blobs:
        blobs.put("audit/archives/production/forged/archive.json", json.dumps(forged).encode())
    forged_url = where.replace("/production/r1", "/production/forged")
    code, text = cli("audit", "verify", forged_url, "--data-dir", d)
    assert code == 1 and "FAILED" in text and "first bad entry: 1" in text
    code, text = cli("audit", "verify", where.replace("/r1", "/none"), "--data-dir", d)
    assert code == 1 and ("cannot read archive" in text or "no archive.json" in text), text


def test_an_archive_url_as_out_needs_no_blob_url(project: Path, tmp_path: Path) -> None:
    d = str(project)
    log = AuditLog.open(f"sqlite:///{project}/production/state.sqlite", origin_for("production"))
    log.append(_records())
    log.close()
    where = (tmp_path / "shared" / "a1").as_uri()
    code, text = cli("audit", "archive", "--out", where, "--data-dir", d)
    assert code == 0 and _archived(text) == where
    assert json.loads((tmp_path / "shared" / "a1" / "archive.json").read_text())["stop"] == 4
    assert cli("audit", "signoff", where, "--as", "carol", "--data-dir", d)[0] == 0
    code, text = cli("audit", "verify", where, "--data-dir", d)
    assert code == 0 and "signed off by carol" in text
    code, text = cli("audit", "archive", "--data-dir", d)
    assert code == 2 and "--out PATH is required" in text


# ---- the audit service's key ---------------------------------------------------------------


def test_a_missing_audit_key_says_what_to_do(project: Path, tmp_path: Path) -> None:
    d = str(project)
    code, text = cli("audit", "checkpoint", "--data-dir", str(tmp_path / "new"))
    assert code == 1 and "run `madbwpu-r init" in text
    (project / "keys" / "audit-service.pem").unlink()
    for args in (("checkpoint",), ("archive", "--out", str(tmp_path / "x"))):
        code, text = cli("audit", *args, "--data-dir", d)
        assert code == 1 and "audit-service.pem is missing" in text and "backup" in text, text
        assert "Traceback" not in text
    code, text = cli("init", "--data-dir", d)
    assert code == 1 and "audit-service.pem is missing" in text
    # `up` checks before starting anything.
    proc = subprocess.run(
        [sys.executable, "-m", "madbwpu_r", "up", "--data-dir", d],
        capture_output=True, text=True, timeout=120,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("MADBWPU_R_")},
             "COLUMNS": "1000"},
    )  # fmt: skip
    assert proc.returncode == 1 and "audit-service.pem is missing" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_init_completes_a_directory_whose_init_was_cut_short(tmp_path: Path) -> None:
    d = tmp_path / "d"
    directory = open_directory(d)  # only the admin: `init` stopped before the audit service
    admin = Keyring(d).create("admin")
    directory.apply(make_act(admin, "identity.init", "admin", ["admin"]))
    directory.db.close()
    code, text = cli("audit", "checkpoint", "--data-dir", str(d))
    assert code == 1 and "is not set up" in text and "run `madbwpu-r init" in text
    code, text = cli("init", "--data-dir", str(d))
    assert code == 0 and "identity audit-service" in text, text
    code, text = cli("audit", "checkpoint", "--data-dir", str(d))
    assert code == 0 and text.startswith("madbwpu-r/production\n")
    registered = open_directory(d)
    assert registered.public_key("audit-service") is not None
    assert public_key_to_b64(registered.public_key("audit-service")) == public_key_to_b64(
        Keyring(d).load("audit-service").public
    )
    registered.db.close()


def test_an_api_without_the_audit_key_says_its_checkpoints_are_off(
    project: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from madbwpu_r.api.audit import AuditApi

    (project / "keys" / "audit-service.pem").unlink()
    api = AuditApi(project, "staging", None)
    with caplog.at_level("WARNING", logger="madbwpu_r.api.audit"):
        api.start()
    api.close()
    assert api.checkpointer is None
    assert "checkpoints are off" in caplog.text and "audit-service.pem is missing" in caplog.text
    bare = AuditApi(tmp_path / "never-initialised", "staging", None)
    caplog.clear()
    with caplog.at_level("WARNING", logger="madbwpu_r.api.audit"):
        bare.start()
    assert bare.checkpointer is None and "run `madbwpu-r init`" in caplog.text
