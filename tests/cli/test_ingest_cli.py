"""`madbwpu-r ingest` refuses invalid options before it sends a single byte."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from madbwpu_r.cli.main import app
from madbwpu_r.config import load_or_create_secrets


class Recorder(BaseHTTPRequestHandler):
    """An API stand-in that records every request and refuses it with a problem."""

    seen: list[str] = []

    def do_POST(self) -> None:
        self.seen.append(self.path)
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        body = b'{"type":"about:blank","title":"Bad Request","status":400,"detail":"nope"}'
        self.send_response(400)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("H", (Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "people.csv"
    path.write_bytes(b"id\n1\n")
    return path


def run(*args: str):
    return CliRunner().invoke(app, ["ingest", *args], env={"COLUMNS": "200", "NO_COLOR": "1"})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--timeout", "-5"], "--timeout"),
        (["--timeout", "0"], "--timeout"),
        (["--timeout", "nan"], "--timeout"),
        (["--timeout", "inf"], "--timeout"),
        (["--timeout", "soon"], "--timeout"),
        (["--env", "prod"], "--env"),
    ],
)
def test_invalid_options_are_refused_before_the_upload(api, csv_file, tmp_path, options, message):
    url, seen = api
    result = run("people", str(csv_file), "--api", url, "--data-dir", str(tmp_path), *options)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert seen == []


@pytest.mark.parametrize(
    ("name", "api_url"),
    [("bad name!", None), ("people", "ftp://127.0.0.1/"), ("people", "not a url")],
)
def test_invalid_names_and_urls_are_refused_before_the_upload(
    api, csv_file, tmp_path, name, api_url
):
    url, seen = api
    result = run(name, str(csv_file), "--api", api_url or url, "--data-dir", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert seen == []


def test_valid_options_do_reach_the_api(api, csv_file, tmp_path):
    """The control: the same call with valid options uploads, and reports the API's refusal."""
    url, seen = api
    load_or_create_secrets(tmp_path, "staging")  # ingest reads the env's token, never makes one
    result = run(
        "people", str(csv_file), "--api", url, "--data-dir", str(tmp_path), "--timeout", "5"
    )
    assert result.exit_code == 1, result.output
    assert "nope" in result.output
    assert seen == ["/v1/datasets/people/ingest"]
