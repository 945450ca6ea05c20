"""Named crash points for tests of recovery: `MADBWPU_R_FAILPOINTS=name,...` SIGKILLs there.

A kill at a precise point (after a commit, before its outbox row is delivered) is the only
honest way to test that nothing is lost or done twice; unset, a failpoint costs one lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "MADBWPU_R_FAILPOINTS"


def failpoint(name: str) -> None:
    if name in os.environ.get(ENV, "").split(","):
        os.kill(os.getpid(), signal.SIGKILL)
