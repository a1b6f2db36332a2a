"""Progress on the terminal while a local run is going: how much of the input was read (a
percentage and the time left, when the input's size is known), items, shards, records, dead letters.

Reads the small files `transforms/stages/progress.py` writes on the local runners and prints
one line: rewritten in place every second on a terminal, a new line every `LOG_SECONDS`
otherwise (logs, CI), the first as the job starts and, in logs, a last one with the final
totals, so no gap between two lines is longer than `LOG_SECONDS` plus one read of the totals
(tests/test_progress.py measures it on a real run). `--quiet` turns it off. Remote runners show the same counters as Beam
metrics in their own UI, so nothing is printed for them.

The input is sized as the shard plan sizes it: the files the patterns match and their sizes,
listed again in the printing thread (never in the job's way). The bytes read are those the
read shards' records cover; a compressed file's size says nothing of its content, so with one
in the input no percentage is shown. The items are called what they are: lines of JSON-lines
files, elements of JSON arrays (a Label Studio export), items when the input has both. Numbers
are written as in the summary the job prints when it ends.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import sys
import tempfile
import threading
import time

import orjson
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from transforms import storage

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


@dataclasses.dataclass(frozen=True)
class InputPlan:
    """What is known of the input before it is read: its size (None when a file is
    compressed) and what an item of it is (lines, elements, or items when mixed)."""

    files: int
    size: int | None
    unit: str = "items"


_SNIFF_FILES = 200  # the layout of this many files is looked at, the rest are assumed alike
_SNIFF_BYTES = 64 << 10


def plan_input(listed: list[tuple[str, int]], store) -> InputPlan:
    """The input's files (as the launch listed them: url, size), their total size and their
    layout, as the shard plan will see them."""
    from transforms.read_layout import JSON_ARRAY, compression_of, sniff

    found = sorted(set(listed))
    compressed = any(compression_of(uri) for uri, _ in found)
    layouts = set()
    for uri, _ in found[:_SNIFF_FILES]:
        try:
            with storage.open_file(uri, "rb", store.options, compression="infer") as handle:
                head = handle.read(_SNIFF_BYTES)
            layouts.add("elements" if sniff(head, len(head) < _SNIFF_BYTES) == JSON_ARRAY else "lines")
        except Exception:  # noqa: BLE001 - the job itself reports an unreadable file; here it is only a label
            layouts.add("items")
    unit = layouts.pop() if len(layouts) == 1 else "items"
    return InputPlan(len(found), None if compressed else sum(size for _, size in found), unit)


def _size(n: float) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def describe(totals: dict[str, int], seconds: float, rate: float, plan: InputPlan | None = None, byte_rate: float = 0.0) -> str:
    """One progress line; counts written as the final summary writes them (plain integers)."""
    unit = plan.unit if plan else "lines"
    read = totals.get("lines_bytes", 0)
    share = ""
    if plan and plan.size:
        done = min(read / plan.size, 1.0)
        share = f"{done:4.0%} of {_size(plan.size)}"
        if byte_rate > 0 and round(done * 100) < 100:  # a shard's trailing newline is not a record's
            share += f", about {_duration((plan.size - read) / byte_rate)} left"
        share += "  "
    return (
        f"labelbeam: {seconds:6.1f}s  {share}{unit} read {totals.get('lines', 0)} ({rate:.0f}/s) "
        f"from {totals.get('lines_shards', 0)} shard(s)  records {totals.get('records', 0)}  "
        f"dead letters {totals.get('dead_letters', 0)}"
    )


class Progress:
    """A folder for the workers' totals and a thread that prints them; a context manager."""

    def __init__(self, enabled: bool, stream=None, inputs: list[tuple[str, int]] | None = None, store=None):
        self.folder = tempfile.mkdtemp(prefix="labelbeam-progress-") if enabled else None
        self._inputs, self._store = inputs, store
        self.plan: InputPlan | None = None
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
        self._first_bytes: tuple[int, float] | None = None
        self._show()
        if self._inputs:
            try:
                self.plan = plan_input(self._inputs, self._store)
            except Exception:  # noqa: BLE001 - without a plan the line has no percentage, nothing more
                self.plan = None
        while not self._stop.wait(every):
            self._show()

    def _show(self) -> None:
        totals, now = read_totals(self.folder), time.monotonic()
        last_lines, last_time = self._last
        rate = (totals.get("lines", 0) - last_lines) / max(now - last_time, 1e-9)
        self._last = (totals.get("lines", 0), now)
        read = totals.get("lines_bytes", 0)
        if read and self._first_bytes is None:
            self._first_bytes = (read, now)
        byte_rate = read / max(now - self._started, 1e-9)  # the first time: since the start
        if self._first_bytes and now > self._first_bytes[1]:  # then since reading began: start-up is not reading
            byte_rate = (read - self._first_bytes[0]) / (now - self._first_bytes[1])
        line = describe(totals, now - self._started, rate, self.plan, byte_rate)
        self._stream.write(f"\r\033[K{line}" if self._tty else f"{line}\n")
        self._stream.flush()
        self.lines_printed += 1
