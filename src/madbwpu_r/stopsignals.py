"""SIGTERM / SIGINT turned into an ordinary call, made from a thread of its own.

A Python signal handler runs in the main thread between two bytecodes, possibly while that
thread holds a lock (inside `Event.wait`, a `Condition`, logging). A handler that takes the
same lock (`Event.set()`, `logging`, a `stop()` method) then waits for itself forever. So the
handler installed here does nothing: the interpreter's C-level handler writes the signal number
to a socket (`signal.set_wakeup_fd`), and a watcher thread reads it and calls `on_stop`, which
may take any lock it likes. A burst of signals is one stop; later ones are only counted, and
once a stop was asked for the signals stay ignored after the block: the process is already
on its way out, and a second SIGTERM must not kill it halfway through its clean-up.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable, Sequence
from types import FrameType, TracebackType

__all__ = ["StopSignals"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_QUIT = b"\x00"  # no signal has number 0: the watcher's own "exit" byte


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Deliberately empty: the wakeup fd carries the signal to the watcher thread."""


class StopSignals:
    """`with StopSignals(on_stop):` calls `on_stop(signum)` once, from a watcher thread.

    Only the main thread may install signal handlers; elsewhere this is a no-op context.
    """

    def __init__(
        self, on_stop: Callable[[int], None], signals: Sequence[int] = STOP_SIGNALS
    ) -> None:
        self.on_stop = on_stop
        self.signals = tuple(signals)
        self.received: list[int] = []
        self._reader: socket.socket | None = None
        self._writer: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._previous: dict[int, object] = {}
        self._previous_fd = -1

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)  # set_wakeup_fd requires it; a full buffer drops bytes
        self._thread = threading.Thread(target=self._watch, name="stop-signals", daemon=True)
        self._thread.start()
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._previous = {sig: signal.signal(sig, _ignore) for sig in self.signals}
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._thread is None:
            return
        assert self._writer is not None and self._reader is not None
        self._writer.send(_QUIT)  # after any signal byte already written: those come first
        self._thread.join()
        self._thread = None
        for sig, handler in self._previous.items():
            # `handler` is what signal.signal returned for sig, so it is a valid handler.
            signal.signal(sig, signal.SIG_IGN if self.received else handler)  # type: ignore[arg-type]
        signal.set_wakeup_fd(self._previous_fd)
        self._writer.close()
        self._reader.close()

    def _watch(self) -> None:
        assert self._reader is not None
        while data := self._reader.recv(64):
            for signum in data:
                if signum == 0:
                    return
                self.received.append(signum)
                if len(self.received) == 1:
                    self.on_stop(signum)
