"""`madbwpu-r jobs ...` and `madbwpu-r status` through the real Typer app and a real SQLite queue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from madbwpu_r.cli.main import app
from madbwpu_r.config import EnvPaths
from madbwpu_r.queue import Queue, open_queue

WIDE = {"COLUMNS": "200", "NO_COLOR": "1"}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def queue(data_dir: Path) -> Iterator[Queue]:
    paths = EnvPaths(data_dir, "staging").ensure()
    q = open_queue(paths.default_queue_url)
    yield q
    q.close()


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env={**WIDE, **(env or {})})


def make_dead(q: Queue, payload: dict) -> str:
    """Call on an empty "ingest" queue: the claim must pick this job."""
    job_id = q.enqueue("ingest", payload, max_attempts=1)
    (job,) = q.claim(["ingest"], n=1)
    q.nack(job, "ValueError: bad row 7\nTraceback follows", retry=True)
    return job_id


def test_list_show_dead_retry(queue: Queue, data_dir: Path) -> None:
    dead_id = make_dead(queue, {"task": "ingest", "dataset": "broken"})
    ok_id = queue.enqueue("ingest", {"task": "ingest", "dataset": "people"})
    d = str(data_dir)

    result = run("jobs", "list", "--data-dir", d)
    assert result.exit_code == 0, result.output
    assert ok_id in result.output and dead_id in result.output
    assert "ready" in result.output and "dead" in result.output

    result = run("jobs", "list", "--data-dir", d, "--state", "ready", "--json")
    assert result.exit_code == 0, result.output
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in rows] == [ok_id]

    result = run("jobs", "dead", "--data-dir", d)
    assert result.exit_code == 0, result.output
    assert dead_id in result.output and ok_id not in result.output
    assert "ValueError: bad row 7" in result.output

    result = run("jobs", "show", dead_id, "--data-dir", d)
    assert result.exit_code == 0, result.output
    assert '"dataset": "broken"' in result.output
    assert "Traceback follows" in result.output

    result = run("jobs", "retry", dead_id, "--data-dir", d)
    assert result.exit_code == 0, result.output
    assert "back on queue 'ingest'" in result.output
    info = queue.get(dead_id)
    assert info is not None and info.state == "ready"

    result = run("jobs", "dead", "--data-dir", d)
    assert result.exit_code == 0 and "none" in result.output


def test_data_dir_from_environment_variable(queue: Queue, data_dir: Path) -> None:
    job_id = queue.enqueue("ingest", {"task": "ingest"})
    result = run("jobs", "show", job_id, "--json", env={"MADBWPU_R_DATA_DIR": str(data_dir)})
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["state"] == "ready"


def test_queue_url_overrides_data_dir(queue: Queue, data_dir: Path, tmp_path: Path) -> None:
    job_id = queue.enqueue("ingest", {"task": "ingest"})
    url = EnvPaths(data_dir, "staging").default_queue_url
    result = run(
        "jobs", "show", job_id, "--data-dir", str(tmp_path / "elsewhere"), "--queue-url", url
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["jobs", "show", "nope"], "no job 'nope'"),
        (["jobs", "retry", "nope"], "no job 'nope'"),
        (["jobs", "list", "--state", "lost"], "unknown state 'lost'"),
    ],
)
def test_clear_errors(queue: Queue, data_dir: Path, args: list[str], message: str) -> None:
    result = run(*args, "--data-dir", str(data_dir))
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_retry_refuses_a_job_that_is_not_dead(queue: Queue, data_dir: Path) -> None:
    job_id = queue.enqueue("ingest", {"task": "ingest"})
    result = run("jobs", "retry", job_id, "--data-dir", str(data_dir))
    assert result.exit_code == 1
    assert "is ready; only dead jobs can be retried" in result.stderr


def test_missing_queue_file_is_an_error_not_a_new_file(tmp_path: Path) -> None:
    result = run("jobs", "list", "--data-dir", str(tmp_path / "absent"))
    assert result.exit_code == 1
    assert "no queue at" in result.stderr and "madbwpu-r up" in result.stderr
    assert not (tmp_path / "absent").exists()


def test_unknown_environment_and_bad_queue_url(data_dir: Path) -> None:
    result = run("jobs", "list", "--data-dir", str(data_dir), "--env", "qa")
    assert result.exit_code == 2 and "staging" in result.output
    result = run("jobs", "list", "--queue-url", "ftp://x/y")
    assert result.exit_code == 1
    assert "unknown queue URL scheme" in result.stderr


def test_status_shows_depth_and_the_workers_the_queue_knows(queue: Queue, data_dir: Path) -> None:
    make_dead(queue, {"task": "ingest"})
    for i in range(3):
        queue.enqueue("ingest", {"task": "ingest", "i": i})
    queue.enqueue("derive", {"task": "derive"}, delay=3600)

    result = run("status", "--data-dir", str(data_dir), "--json")
    assert result.exit_code == 0, result.output
    state = orjson.loads(result.stdout)
    rows = {row["queue"]: row for row in state["queues"]}
    assert rows["ingest"]["ready"] == 3 and rows["ingest"]["dead"] == 1
    assert rows["derive"]["scheduled"] == 1
    assert rows["ingest"]["workers"] == rows["derive"]["workers"] == 0

    # Workers announce themselves in the queue (from any process or machine); no file is read.
    queue.announce("ingest-1", ["ingest"], ttl=60)
    queue.announce("ingest-2", ["ingest"], ttl=60)
    queue.announce("derive-1", ["derive"], ttl=60)
    result = run("status", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    ingest_line = next(line for line in result.output.splitlines() if "ingest" in line)
    assert ingest_line.replace("│", " ").split()[-1] == "2"
    result = run("status", "--data-dir", str(data_dir), "--json", "--queue", "derive")
    assert [(r["queue"], r["workers"]) for r in orjson.loads(result.stdout)["queues"]] == [
        ("derive", 1)
    ]
    assert not EnvPaths(data_dir, "staging").supervisor_status.exists()


def test_help_explains_every_command() -> None:
    result = run("jobs", "--help")
    assert result.exit_code == 0
    for command in ("list", "show", "dead", "retry"):
        assert command in result.output
    for args in (["jobs", "list"], ["jobs", "retry"], ["status"]):
        result = run(*args, "--help")
        assert result.exit_code == 0
        assert "--data-dir" in result.output and "--queue-url" in result.output
