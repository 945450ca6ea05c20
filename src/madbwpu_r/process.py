"""Child processes that do not outlive the process that started them."""

from __future__ import annotations

import ctypes
import signal
import sys

PR_SET_PDEATHSIG = 1
# Resolved once in the parent: after fork, a child of a threaded process must not dlopen.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """Run in the child before exec: when its parent dies, even by SIGKILL, it gets SIGTERM.

    Linux's PR_SET_PDEATHSIG; a no-op elsewhere, where `up` still stops its children itself.
    """
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
