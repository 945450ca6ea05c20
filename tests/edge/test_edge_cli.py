"""`madbwpu-r edge` option checking (the running command is exercised by the process tests)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from madbwpu_r.cli.edge import parse_listen, parse_size
from madbwpu_r.cli.main import app


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--origin", "ftp://x"], "is not an http(s) URL"),
        (["--origin", "http://x", "--listen", "nowhere"], "is not HOST:PORT"),
        (["--origin", "http://x", "--max-bytes", "12XB"], "is not a size"),
        (
            ["--origin", "http://x", "--max-bytes", "1KiB", "--max-object-bytes", "2KiB"],
            "must not exceed",
        ),
        (["--origin", "http://x", "--http", "h3"], "h3"),
        (["--origin", "http://x", "--redis-url", "http://r"], "is not a redis:// URL"),
        (["--origin", "http://x", "--keep-alive", "0"], "--keep-alive"),
        (["--origin", "http://x", "--keep-alive", "soon"], "--keep-alive"),
        (["--origin", "http://x", "--max-header-bytes", "100"], "--max-header-bytes"),
        (["--origin", "http://x", "--max-url-bytes", "100"], "--max-url-bytes"),
        (["--origin", "http://x", "--max-body-bytes", "lots"], "is not a size"),
        (["--origin", "http://x", "--max-headers", "0"], "--max-headers"),
        (["--origin", "http://x", "--targeted-cache-control", "bad name"], "not a field name"),
        (["--origin", "http://x", "--targeted-cache-control", "Cache-Control"], "not a field name"),
        (["--origin", "http://x", "--forwarded-host", "a/b"], "is not host[:port]"),
    ],
)
def test_bad_options_name_the_problem_and_exit_non_zero(args, message):
    result = CliRunner().invoke(app, ["edge", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_sizes_and_listen_addresses():
    assert parse_size("1048576") == 2**20
    assert parse_size("64MiB") == parse_size("64m") == 64 * 2**20
    assert parse_size("512 KiB") == 512 * 2**10
    assert parse_listen("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_listen("[::1]:80") == ("::1", 80)
    with pytest.raises(typer.BadParameter):
        parse_listen("127.0.0.1:99999")
