"""Identities: keyring files, signed acts replayed into roles, refusals audited, the CLI."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from madbwpu_r.audit.layout import open_log
from madbwpu_r.cli.main import app
from madbwpu_r.identity.acts import ActError, make_act, replay
from madbwpu_r.identity.keyring import KEY_ENV, Keyring, KeyringError, export_pem
from madbwpu_r.identity.setup import init_project, open_directory
from madbwpu_r.signing import SigningKey, public_key_to_b64

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
    for log in ("project", "staging", "production"):
        assert open_log(project, log).latest_checkpoint() is not None


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
