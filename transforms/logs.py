"""One log line per cause, with a count: a storage outage must not print a traceback per record.

A failure that hits every record (an endpoint gone, credentials expired) raises the same
exception thousands of times. Two pieces keep the log readable, both Beam-free:

- `CauseLog`, in the workers: the first failure of each cause is logged with its traceback,
  the repeats are only counted, and `flush()` (at the end of a bundle) logs one line per cause
  with the number of repeats.
- `CollapseRepeatedTracebacks`, a logging filter on the CLI's handler: whatever logs tracebacks
  (our workers relayed by a local runner, Beam, a storage client), the first record of each
  cause passes, the rest are counted, and `summary()` gives one line per cause with its count.

A cause is the exception's type and its message's first line with digits masked, so
`ConnectionError: ... http://127.0.0.1:9000/b/masks/17.png` and `.../18.png` are one cause.
"""

from __future__ import annotations

import logging
import re
import threading

from transforms.storage import redact_url

_DIGITS = re.compile(r"\d+")
_LIMIT = 240
TRACEBACK_HEADER = "Traceback (most recent call last)"


def cause_of(exc: BaseException) -> str:
    """The exception's type and the first line of its message, digits masked, bounded."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {_DIGITS.sub('#', first)}"[:_LIMIT]


def cause_of_text(text: str) -> str:
    """The cause of a formatted traceback: its last non-empty line (`Type: message`), digits masked."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return _DIGITS.sub("#", lines[-1] if lines else "")[:_LIMIT]


class CauseLog:
    """Per worker (thread-safe): the first failure of a cause with its traceback, then counts."""

    def __init__(self, logger: logging.Logger):
        self._logger = logger
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._repeats: dict[str, int] = {}

    def failed(self, message: str, exc: BaseException) -> None:
        cause = cause_of(exc)
        with self._lock:
            first = cause not in self._seen
            self._seen.add(cause)
            if not first:
                self._repeats[cause] = self._repeats.get(cause, 0) + 1
        if first:  # the handler's RedactingFormatter redacts the traceback too
            self._logger.error("%s (%s; repeats of this cause are counted, not logged)", redact_url(message), redact_url(cause), exc_info=exc)

    def flush(self) -> None:
        """Logs one line per cause that repeated since the last flush, with its count."""
        with self._lock:
            repeats, self._repeats = self._repeats, {}
        for cause, n in sorted(repeats.items()):
            self._logger.error("%d more failure(s) of the same cause: %s", n, cause)


class RedactingFormatter(logging.Formatter):
    """Wraps a handler's formatter: URL userinfo is redacted from the whole formatted record,
    its traceback and the messages of third-party exceptions in it included."""

    def __init__(self, inner: logging.Formatter | None = None):
        super().__init__()
        self._inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return redact_url(self._inner.format(record))


class CollapseRepeatedTracebacks(logging.Filter):
    """A handler filter: the first record carrying a traceback of each cause passes, the rest
    are counted; `summary()` lists the causes that repeated, one line each, with the count."""

    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        cause = self._cause(record)
        if cause is None:
            return True
        with self._lock:
            self.counts[cause] = self.counts.get(cause, 0) + 1
            return self.counts[cause] == 1

    @staticmethod
    def _cause(record: logging.LogRecord) -> str | None:
        if record.exc_info and record.exc_info[1] is not None:
            return f"{record.name}: {cause_of(record.exc_info[1])}"
        message = record.getMessage()
        if TRACEBACK_HEADER in message:  # a worker's traceback relayed as text by the runner
            return f"{record.name}: {cause_of_text(message)}"
        return None

    def summary(self) -> list[str]:
        return [
            f"labelbeam: {n - 1:,} more log record(s) with the same traceback not shown: {cause}"
            for cause, n in sorted(self.counts.items(), key=lambda item: -item[1])
            if n > 1
        ]
