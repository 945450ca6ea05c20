"""Read-only commands create nothing: no data dir, no secrets file (issue 8)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from madbwpu_r.cli.main import app
from madbwpu_r.queue import open_queue

READ_ONLY = [
    ["--help"],
    ["status"],
    ["status", "--json"],
    ["jobs", "list"],
    ["jobs", "dead"],
    ["jobs", "show", "nope"],
    ["jobs", "--help"],
    ["status", "--help"],
    ["ingest", "--help"],
    ["up", "--help"],
]


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_on_a_missing_data_dir_nothing_is_created(tmp_path, args):
    data = tmp_path / "never"
    result = CliRunner().invoke(
        app,
        [*args, "--data-dir", str(data)] if "--help" not in args else args,
        env={"MADBWPU_R_DATA_DIR": str(data)},
    )
    assert "Traceback" not in result.output
    assert not data.exists(), tree(tmp_path)


@pytest.mark.parametrize("args", [a for a in READ_ONLY if "--help" not in a], ids=" ".join)
def test_on_a_data_dir_with_a_queue_no_secrets_file_is_created(tmp_path, args):
    data = tmp_path / "data"
    (data / "staging").mkdir(parents=True)
    open_queue("sqlite:///" + str(data / "staging" / "state.sqlite")).close()
    before = tree(data)
    result = CliRunner().invoke(app, [*args, "--data-dir", str(data)])
    assert result.exit_code in (0, 1), result.output
    assert "Traceback" not in result.output
    assert not any("secrets" in p for p in tree(data)), tree(data)
    assert {p for p in tree(data) if not p.endswith(("-wal", "-shm"))} == set(before)
    assert os.listdir(data) == ["staging"]
