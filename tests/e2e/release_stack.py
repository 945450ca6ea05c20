"""`madbwpu-r up` for the release tests, with a start-up bound that survives a loaded machine.

The release tests start a whole stack per module; on a shared 2-core box its start-up alone can
take most of a minute, so they wait longer than `Running`'s default before calling it a failure.
"""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_stack import Running

START_TIMEOUT = 240.0


class ReleaseStack(Running):
    def __init__(self, data_dir: Path, *extra: str):  # noqa: D107 - Running's, longer bound
        super().__init__(data_dir, *extra, start_timeout=START_TIMEOUT)
