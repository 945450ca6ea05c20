"""Per-environment credentials: created once, private, never shared, the old file retired."""

from __future__ import annotations

import stat
import threading

import orjson
import pytest
from typer.testing import CliRunner

from madbwpu_r.cli.main import app
from madbwpu_r.config import (
    ENVIRONMENTS,
    SECRET_NAMES,
    EnvPaths,
    MissingSecrets,
    load_or_create_secrets,
    load_secrets,
)


def test_each_environment_gets_its_own_tokens_in_a_0600_file(tmp_path):
    made = {env: load_or_create_secrets(tmp_path, env) for env in ENVIRONMENTS}
    for env in ENVIRONMENTS:
        path = EnvPaths(tmp_path, env).secrets
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert load_secrets(tmp_path, env) == made[env]  # read back, not made again
    for name in SECRET_NAMES:
        assert made["staging"][name] != made["production"][name]


def test_processes_starting_together_agree_on_one_set(tmp_path):
    results: list[dict[str, str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(load_or_create_secrets(tmp_path, "staging")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and all(r == results[0] for r in results)
    assert [p.name for p in (tmp_path / "staging").iterdir() if "secrets" in p.name] == [
        "secrets.json"
    ]


def test_the_old_shared_file_is_retired_and_its_tokens_are_not_carried_over(tmp_path):
    shared = {name: f"old-{name}" for name in SECRET_NAMES}
    (tmp_path / "secrets.json").write_bytes(orjson.dumps(shared))
    with pytest.raises(MissingSecrets, match="old credentials shared by every environment"):
        load_secrets(tmp_path, "staging")  # read-only: tells how to migrate, changes nothing
    assert (tmp_path / "secrets.json").exists()
    fresh = {env: load_or_create_secrets(tmp_path, env) for env in ENVIRONMENTS}
    assert not (tmp_path / "secrets.json").exists()
    for env in ENVIRONMENTS:
        assert not set(fresh[env].values()) & set(shared.values())


def test_cli_ingest_without_credentials_is_one_line_and_creates_nothing(tmp_path):
    data = tmp_path / "data"
    (data / "staging").mkdir(parents=True)
    csv = tmp_path / "x.csv"
    csv.write_text("id\n1\n")
    result = CliRunner().invoke(
        app, ["ingest", "x", str(csv), "--data-dir", str(data), "--api", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 1
    assert "no credentials for staging" in result.output and "Traceback" not in result.output
    assert not (data / "staging" / "secrets.json").exists()


def test_a_corrupt_secrets_file_is_a_clear_error(tmp_path):
    paths = EnvPaths(tmp_path, "staging").ensure()
    paths.secrets.write_text("{not json")
    with pytest.raises(MissingSecrets, match="remove it to start over"):
        load_or_create_secrets(tmp_path, "staging")


def test_a_given_secrets_file_is_read_never_created_and_up_refuses_it(tmp_path, monkeypatch):
    given = tmp_path / "mounted.json"
    tokens = {name: f"{name}-value" for name in SECRET_NAMES}
    given.write_bytes(orjson.dumps(tokens))
    monkeypatch.setenv("MADBWPU_R_SECRETS_FILE", str(given))
    assert load_or_create_secrets(tmp_path / "data", "staging") == tokens
    assert not (tmp_path / "data").exists()
    result = CliRunner().invoke(app, ["up", "--data-dir", str(tmp_path / "up")])
    assert result.exit_code == 1 and "MADBWPU_R_SECRETS_FILE is set" in result.output
    assert not (tmp_path / "up").exists()
    given.write_text("{}")
    with pytest.raises(MissingSecrets, match="no complete tokens"):
        load_secrets(tmp_path / "data", "staging")
