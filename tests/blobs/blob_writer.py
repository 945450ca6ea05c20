"""A real writer process for the kill tests: streams its stdin into a blob (python FILE URL KEY)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from madbwpu_r.blobs import open_blobs


def start_writer(url: str, key: str) -> subprocess.Popen[bytes]:
    """This file as a child process; it inherits the AWS settings of the test's environment."""
    return subprocess.Popen(
        [sys.executable, __file__, url, key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )


if __name__ == "__main__":
    info = open_blobs(sys.argv[1]).put(sys.argv[2], sys.stdin.buffer)
    print(info.sha256, flush=True)
