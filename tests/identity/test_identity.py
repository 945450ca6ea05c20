"""Identities: keyring files, signed acts replayed into roles, refusals audited, the CLI."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from madbwpu_r.api.audit import AuditApi
from madbwpu_r.audit.layout import PROJECT_STORE_ENV, open_log
from madbwpu_r.cli.main import app
from madbwpu_r.identity.acts import ActError, make_act, replay
from madbwpu_r.identity.keyring import KEY_ENV, Keyring, KeyringError, export_pem
from madbwpu_r.identity.setup import init_project, is_initialised, open_directory
from madbwpu_r.problems import ProblemError
from madbwpu_r.release.project import open_release_store
from madbwpu_r.signing import SigningKey, public_key_to_b64
from tests.queue.queue_backends import base_url

runner = CliRunner()


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.output


@pytest.fixture
def project(tmp_path: Path) -> Path:
    init_project(tmp_path / "d")
    return tmp_path / "d"


def actions(data_dir: Path) -> list[tuple[str, str, str]]:
    log = open_log(data_dir, "project")
    try:
        return [(e.actor, e.action, e.outcome) for e in log.entries()]
    finally:
        log.close()


def test_keyring_modes_and_no_overwrite(tmp_path: Path) -> None:
    ring = Keyring(tmp_path)
    key = ring.create("alice")
    assert stat.S_IMODE(ring.path.stat().st_mode) == 0o700
    assert stat.S_IMODE((ring.path / "alice.pem").stat().st_mode) == 0o600
    assert ring.load("alice").fingerprint == key.fingerprint
    with pytest.raises(KeyringError):
        ring.create("alice")
    with pytest.raises(KeyringError):
        ring.create("../etc")
    assert "PRIVATE" not in repr(key)


def test_init_is_idempotent_and_audited(project: Path) -> None:
    again = init_project(project)
    assert again.created == []
    directory = open_directory(project)
    assert directory.roles("admin") == {"admin"}
    assert directory.roles("audit-service") == {"service-audit"}
    assert actions(project) == [
        ("admin", "identity.init", "ok"),
        ("admin", "identity.add", "ok"),
    ]
    assert open_log(project, "project").latest_checkpoint() is not None
    assert not (project / "staging").exists()  # an environment's store is not init's to make


def test_acts_replay_and_refusals(project: Path) -> None:
    directory = open_directory(project)
    admin = Keyring(project).load("admin")
    carol = SigningKey.generate("carol")
    directory.apply(
        make_act(admin, "identity.add", "carol", ["qa"], public_key_to_b64(carol.public))
    )
    directory.apply(make_act(admin, "identity.grant", "carol", ["compliance"]))
    assert directory.roles("carol") == {"qa", "compliance"}
    # carol is no admin: her act is refused, changes nothing, and is audited.
    with pytest.raises(ActError, match="admin role"):
        directory.apply(make_act(carol, "identity.grant", "carol", ["admin"]))
    assert directory.roles("carol") == {"qa", "compliance"}
    assert actions(project)[-1] == ("carol", "identity.refused", "refused")
    # An act whose body was changed after signing does not verify.
    act = make_act(admin, "identity.grant", "carol", ["security"])
    act.body["roles"] = ["admin"]
    with pytest.raises(ActError, match="does not verify"):
        directory.apply(act)
    with pytest.raises(ActError, match="last admin"):
        directory.apply(make_act(admin, "identity.revoke", "admin", []))
    directory.apply(make_act(admin, "identity.revoke", "carol", []))
    assert directory.roles("carol") == frozenset()
    assert directory.public_key("carol") is None
    # The stored acts alone recompute the directory.
    members = replay(directory.acts())
    assert members["carol"].revoked and members["admin"].roles == {"admin"}


def test_private_keys_never_reach_the_database(project: Path) -> None:
    code, _ = cli(
        "identity", "add", "bob", "--role", "qa", "--as", "admin", "--data-dir", str(project)
    )
    assert code == 0
    pems = [p.read_bytes() for p in (project / "keys").iterdir()]
    raw = [k.split(b"-----")[2].strip() for k in pems]
    for db in [project / "project.sqlite", *project.glob("*/state.sqlite")]:
        content = db.read_bytes() + b"".join(p.read_bytes() for p in db.parent.glob(db.name + "-*"))
        assert not any(r in content for r in raw)


def test_cli_add_list_revoke_and_acting_keys(project: Path, tmp_path: Path) -> None:
    d = str(project)
    code, out = cli(
        "identity",
        "add",
        "dora",
        "--role",
        "deployer",
        "--role",
        "qa",
        "--as",
        "admin",
        "--data-dir",
        d,
    )
    assert code == 0, out
    code, out = cli("identity", "list", "--data-dir", d)
    assert code == 0 and "dora" in out and "ed25519:" in out
    # A key supplied by file or environment must be the registered one.
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(export_pem(SigningKey.generate("admin")))
    code, out = cli(
        "identity",
        "grant",
        "dora",
        "--role",
        "security",
        "--as",
        "admin",
        "--key-file",
        str(stranger),
        "--data-dir",
        d,
    )
    assert code == 1 and "not the one registered" in out
    admin_pem = export_pem(Keyring(project).load("admin")).decode()
    Keyring(project).remove("admin")
    code, out = cli(
        "identity",
        "grant",
        "dora",
        "--role",
        "security",
        "--as",
        "admin",
        "--data-dir",
        d,
        env={KEY_ENV: admin_pem},
    )
    assert code == 0, out
    code, out = cli(
        "identity",
        "add",
        "eve",
        "--role",
        "wizard",
        "--as",
        "admin",
        "--data-dir",
        d,
        env={KEY_ENV: admin_pem},
    )
    assert code == 1 and "unknown role" in out
    code, out = cli("identity", "revoke", "dora", "--as", "ghost", "--data-dir", d)
    assert code == 1 and "not a registered identity" in out
    code, out = cli(
        "identity", "revoke", "dora", "--as", "admin", "--data-dir", d, env={KEY_ENV: admin_pem}
    )
    assert code == 0, out
    assert open_directory(project).roles("dora") == frozenset()
    assert not (project / "keys" / "eve.pem").exists()


def test_commands_on_an_uninitialised_dir_fail_cleanly(tmp_path: Path) -> None:
    code, out = cli("identity", "list", "--data-dir", str(tmp_path / "none"))
    assert code == 1 and "madbwpu-r init" in out
    assert not (tmp_path / "none").exists()


@pytest.fixture(params=["sqlite", "postgres"])
def project_store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The project's store: `DIR/project.sqlite`, or a fresh PostgreSQL schema named by
    `$MADBWPU_R_PROJECT_STORE_URL` (no project.sqlite then)."""
    monkeypatch.delenv(PROJECT_STORE_ENV, raising=False)
    if request.param == "sqlite":
        yield "sqlite"
        return
    schema = base_url("postgres", tmp_path)
    monkeypatch.setenv(PROJECT_STORE_ENV, next(schema))
    yield "postgres"
    next(schema, None)  # drops it


def test_whether_init_ran_is_asked_of_the_project_store(project_store: str, tmp_path: Path) -> None:
    d = tmp_path / "d"
    # Another command opened the project's store first (as the release commands do): that
    # store exists, yet nobody ran `init`.
    open_release_store(d).close()
    assert not is_initialised(d)
    code, out = cli("identity", "list", "--data-dir", str(d))
    assert code == 1 and f"run `madbwpu-r init --data-dir {d}`" in out
    with pytest.raises(ProblemError) as refused:
        AuditApi(d, "staging", None).opened()
    assert refused.value.status == 503 and "run `madbwpu-r init`" in str(refused.value.detail)

    assert cli("init", "--data-dir", str(d))[0] == 0
    assert is_initialised(d)
    assert (d / "project.sqlite").exists() == (project_store == "sqlite")
    code, out = cli("identity", "list", "--json", "--data-dir", str(d))
    assert code == 0, out
    assert {"admin", "audit-service"} <= {json.loads(line)["name"] for line in out.splitlines()}
    api = AuditApi(d, "staging", None)
    assert api.opened().directory.roles("admin") == {"admin"}
    api.close()
    # The project log is read from the same store, and DIR's identities are trusted.
    archive = tmp_path / "project-archive"
    code, out = cli("audit", "archive", "--log", "project", "--out", str(archive),
                    "--data-dir", str(d))  # fmt: skip
    assert code == 0, out
    code, out = cli("audit", "verify", str(archive), "--data-dir", str(d))
    assert code == 0 and "the archives' own" not in out, out
    code, out = cli("audit", "verify", "--all", "--log", "project", "--data-dir", str(d))
    assert code == 0, out


def test_asking_whether_init_ran_creates_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(PROJECT_STORE_ENV, raising=False)
    assert not is_initialised(tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_a_project_store_that_does_not_answer_is_a_message(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(PROJECT_STORE_ENV, "postgresql://postgres@127.0.0.1:1/none?schema=p")
    for args in (["identity", "list"], ["audit", "verify", "--all", "--log", "project"]):
        code, out = cli(*args, "--data-dir", str(tmp_path / "d"))
        assert code == 1 and "cannot read the project's store" in out, out
    with pytest.raises(ProblemError) as refused:
        AuditApi(tmp_path / "d", "staging", None).opened()
    assert refused.value.status == 503
