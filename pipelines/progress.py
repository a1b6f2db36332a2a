"""Progress on the terminal while a local run is going: lines read, shards, records/s, dead letters.

Reads the small files `transforms/stages/progress.py` writes on the local runners and prints
one line: rewritten in place every second on a terminal, a new line every `LOG_SECONDS`
otherwise (logs, CI), the first as the job starts and, in logs, a last one with the final
totals, so no gap between two lines is longer than `LOG_SECONDS` plus one read of the totals
(tests/test_progress.py measures it on a real run). `--quiet` turns it off. Remote runners show the same counters as Beam
metrics in their own UI, so nothing is printed for them.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import tempfile
import threading
import time

import orjson
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

LOCAL_RUNNERS = {None, "", "DirectRunner", "FnApiRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner", "PrismRunner"}
TTY_SECONDS = 1.0
LOG_SECONDS = 4.0


def is_local(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner
    return (runner.rsplit(".", 1)[-1] if isinstance(runner, str) else runner) in LOCAL_RUNNERS


def read_totals(folder: str) -> dict[str, int]:
    """Sums the running totals every worker wrote into `folder`."""
    totals: dict[str, int] = {}
    for path in glob.glob(os.path.join(folder, "*.json")):
        try:
            with open(path, "rb") as handle:
                counts = orjson.loads(handle.read())
        except (OSError, orjson.JSONDecodeError):
            continue  # being replaced right now: read next time
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + int(value)
    return totals


def describe(totals: dict[str, int], seconds: float, rate: float) -> str:
    return (
        f"labelbeam: {seconds:6.1f}s  lines read {totals.get('lines', 0):,} ({rate:,.0f}/s) "
        f"from {totals.get('lines_shards', 0):,} shard(s)  records {totals.get('records', 0):,}  "
        f"dead letters {totals.get('dead_letters', 0):,}"
    )


class Progress:
    """A folder for the workers' totals and a thread that prints them; a context manager."""

    def __init__(self, enabled: bool, stream=None):
        self.folder = tempfile.mkdtemp(prefix="labelbeam-progress-") if enabled else None
        self._stream = stream or sys.stderr
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="labelbeam-progress", daemon=True)
        self.lines_printed = 0

    def __enter__(self) -> "Progress":
        if self.folder:
            self._started = time.monotonic()
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.folder:
            self._stop.set()
            self._thread.join()
            if self._tty:
                self._stream.write("\r\033[K")
                self._stream.flush()
            else:
                self._show()  # the final totals, in logs
            shutil.rmtree(self.folder, ignore_errors=True)

    def _loop(self) -> None:
        every = TTY_SECONDS if self._tty else LOG_SECONDS
        self._last = (0, time.monotonic())
        self._show()
        while not self._stop.wait(every):
            self._show()

    def _show(self) -> None:
        totals, now = read_totals(self.folder), time.monotonic()
        last_lines, last_time = self._last
        rate = (totals.get("lines", 0) - last_lines) / max(now - last_time, 1e-9)
        self._last = (totals.get("lines", 0), now)
        line = describe(totals, now - self._started, rate)
        self._stream.write(f"\r\033[K{line}" if self._tty else f"{line}\n")
        self._stream.flush()
        self.lines_printed += 1
