"""SIGINT and SIGTERM during a run: it stops where it is, before publishing, releases the output's
lock and exits with 128 + the signal's number (130, 143), the shell's own convention, so a
scheduler tells "stopped" from "failed". A signal that arrives while a publish is under way waits
for the publish to end: the output is never left half replaced by an interrupt."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; `code` is the exit code, `name` the signal's name."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.name = signal.Signals(signum).name
        self.code = 128 + int(signum)


def as_interrupted(exc: KeyboardInterrupt) -> Interrupted:
    """A KeyboardInterrupt raised by Python's own SIGINT handler, as an Interrupted."""
    return exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)


class Interrupts:
    """Installs the handlers (main thread only) for the `with` block; `deferred()` holds signals
    back, recording the first in `received`."""

    def __init__(self, on_signal: Callable[[Interrupted], None] | None = None):
        self.received: str | None = None
        self.signum: int | None = None
        self.on_signal = on_signal  # acts at once (the CLI: release, say it, exit); else raise
        self._deferring = False
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.received is None:
            self.received, self.signum = signal.Signals(signum).name, signum
        if self._deferring:
            return
        if self.on_signal is not None:
            self.on_signal(Interrupted(signum))
        raise Interrupted(signum)  # a runner that catches it fails the run: check_received() tells why

    def check_received(self) -> None:
        """Raises Interrupted when a signal arrived (its exception may have been swallowed)."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED:
                if signal.getsignal(signum) is signal.SIG_IGN:  # started with it ignored (nohup, a background job)
                    continue
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    @contextlib.contextmanager
    def deferred(self):
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
