"""A bad engine URL on `api`, `worker` or `up` is a one-line CLI error and a non-zero exit.

Each command runs through the real Typer app; every case fails before a server would start.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from madbwpu_r.cli.main import app

WIDE = {"COLUMNS": "200", "NO_COLOR": "1"}
WORKER = ["worker", "--api", "http://127.0.0.1:9"]

CASES = [
    (["api", "--edge", "ftp://x"], "unknown purge target scheme in 'ftp://x'"),
    (["api", "--redis-url", "ftp://x"], "is not a redis:// URL"),
    (["api", "--store-url", "ftp://x"], "unknown store URL scheme 'ftp'"),
    (["api", "--queue-url", "ftp://x"], "unknown queue URL scheme 'ftp'"),
    (["api", "--blob-url", "ftp://x"], "unknown blob store URL scheme 'ftp'"),
    ([*WORKER, "--queue-url", "ftp://x"], "unknown queue URL scheme 'ftp'"),
    ([*WORKER, "--blob-url", "ftp://x"], "unknown blob store URL scheme 'ftp'"),
    (["up", "--store-url", "ftp://x"], "--store-url must be a postgresql:// URL"),
    (["up", "--queue-url", "ftp://x"], "--queue-url must be a redis:// or postgresql:// URL"),
    (["up", "--blob-url", "ftp://x"], "--blob-url must be an s3:// URL"),
    (["up", "--redis-url", "ftp://x"], "is not a redis:// URL"),
]


@pytest.mark.parametrize(("args", "problem"), CASES, ids=lambda v: " ".join(v)[:40])
def test_a_bad_engine_url_is_a_cli_error(tmp_path: Path, args: list[str], problem: str) -> None:
    result = CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path / "data")], env=WIDE)
    assert result.exit_code != 0
    assert type(result.exception) is SystemExit  # exited on purpose: nothing escaped
    output = " ".join(result.output.split())  # the message may wrap at the terminal width
    assert problem in output
    assert "Traceback" not in output


def test_the_url_can_come_from_the_environment(tmp_path: Path) -> None:
    """MADBWPU_R_QUEUE_URL stands for --queue-url on every command that takes it."""
    env = {**WIDE, "MADBWPU_R_QUEUE_URL": "ftp://from-env"}
    for command in (["api"], WORKER, ["status"]):
        result = CliRunner().invoke(app, [*command, "--data-dir", str(tmp_path)], env=env)
        assert result.exit_code == 1, result.output
        assert "unknown queue URL scheme 'ftp' in 'ftp://from-env'" in " ".join(
            result.output.split()
        )
