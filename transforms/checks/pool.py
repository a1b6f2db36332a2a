"""Run many file checks at once, each bounded in time, on threads that can never hang the process.

File checks wait on storage (fetches) and on decoders (Pillow, zlib and numpy release the GIL
for the heavy part), so a batch's files are checked concurrently on daemon threads. Each task is
bounded in time: one that runs past the limit gets its `on_timeout` result, and every other task
finishes as usual. A stuck thread cannot be killed; it is left behind (daemon threads never keep
a process from exiting) and a fresh thread takes its place.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import threading
import time
from typing import Any, Callable

# Seconds between looks at running tasks while waiting for a batch.
_POLL_SECONDS = 0.05


@dataclasses.dataclass
class Task:
    """One unit of work; the running thread sets `started` and may set `stage` as it goes, so a
    timeout can say where it stopped."""

    payload: Any
    started: float | None = None
    stage: str = ""


class _Failed:
    """An exception a check raised, carried to the waiting thread and raised there."""

    def __init__(self, exc: BaseException):
        self.exc = exc


class BoundedRunner:
    """Runs `check(task)` for every task concurrently, each within `timeout_seconds`."""

    def __init__(self, concurrency: int, timeout_seconds: float):
        self._concurrency = max(1, concurrency)
        self._timeout = timeout_seconds
        limit_malloc_arenas()

    def run(self, tasks: list[Task], check: Callable[[Task], Any], on_timeout: Callable[[Task, float], Any], threads: int | None = None) -> list[Any]:
        """Results in task order; a task past the limit gets on_timeout(task, limit).

        `threads` (at most `concurrency`, all of it when None) daemon threads take the batch's tasks in turn from a shared index, so a
        task costs a lock and a list slot, not a future and a wake-up of the waiting thread
        (waiting on a set of futures cost 150-300 us a task on 4,096-task batches). The waiting
        thread looks at the running tasks every _POLL_SECONDS; one past the limit is settled
        with on_timeout and its thread, stuck in it, is replaced by a fresh one, so the rest of
        the batch keeps its concurrency."""
        batch = _Batch(tasks, check)
        for _ in range(min(threads or self._concurrency, self._concurrency, len(tasks))):
            batch.start_thread()
        while not batch.done.wait(_POLL_SECONDS):
            for index in batch.overdue(self._timeout):
                if batch.settle(index, on_timeout(tasks[index], self._timeout)):
                    batch.start_thread()  # in place of the one stuck in this task
        for result in batch.results:
            if isinstance(result, _Failed):
                raise result.exc
        return batch.results


class _Batch:
    """The shared state of one run(): the next task to take, the results, the running tasks."""

    def __init__(self, tasks: list[Task], check: Callable[[Task], Any]):
        self.tasks, self.check = tasks, check
        self.results: list[Any] = [None] * len(tasks)
        self.settled = [False] * len(tasks)
        self.remaining = len(tasks)
        self.next = 0
        self.running: set[int] = set()
        self.lock = threading.Lock()
        self.done = threading.Event()
        if not tasks:
            self.done.set()

    def start_thread(self) -> None:
        threading.Thread(target=self._work, name="check-files", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self.lock:
                if self.next >= len(self.tasks):
                    return
                index = self.next
                self.next += 1
                self.running.add(index)
            task = self.tasks[index]
            task.started = time.monotonic()
            try:
                result = self.check(task)
            except BaseException as exc:  # noqa: BLE001 - raised again in the waiting thread
                result = _Failed(exc)
            self.settle(index, result)

    def settle(self, index: int, result: Any) -> bool:
        """Records the first result of a task (a late one after a timeout is dropped)."""
        with self.lock:
            self.running.discard(index)
            if self.settled[index]:
                return False
            self.results[index], self.settled[index] = result, True
            self.remaining -= 1
            if self.remaining == 0:
                self.done.set()
            return True

    def overdue(self, limit: float) -> list[int]:
        now = time.monotonic()
        with self.lock:
            running = list(self.running)
        return [i for i in running if self.tasks[i].started is not None and now - self.tasks[i].started > limit]


# glibc gives each thread its own malloc arena and keeps what a thread freed there, so sixteen
# threads decoding one mask at a time in turn would still hold sixteen masks' worth of memory
# (measured: 8 threads, 2000x2000 RGBA masks, one decoded at a time: +239 MB with an arena per
# thread, +45 MB with one). The check threads therefore share few arenas (M_ARENA_MAX, unless
# MALLOC_ARENA_MAX is set), and after a large decode the freed memory is handed back.
_TRIM_AFTER_PIXELS = 1_000_000
_ARENAS = 2
_M_ARENA_MAX = -8


def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc: nothing to tune
        return None


_LIBC = _libc()
_ARENAS_LIMITED = False


def limit_malloc_arenas() -> None:
    """Once per process, before the check threads start (threads keep the arena they got first)."""
    global _ARENAS_LIMITED
    if _LIBC is not None and not _ARENAS_LIMITED and "MALLOC_ARENA_MAX" not in os.environ:
        _LIBC.mallopt(_M_ARENA_MAX, _ARENAS)
    _ARENAS_LIMITED = True


def _trim_heap() -> None:
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


class PixelBudget:
    """Decoded pixels in flight across the threads of one process, bounded.

    A decoded mask costs memory by its pixels (an RGBA copy is 4 bytes a pixel, the
    classification a few more), not by its compressed size: sixteen 5000x5000 masks of 100 KB
    each are 1.6 GB of RGBA. A thread takes its mask's pixels from the budget before decoding
    and gives them back after; a mask larger than the whole budget waits until it runs alone.
    """

    def __init__(self, pixels: int):
        self.limit = max(1, int(pixels))
        self.in_use = 0
        self.peak = 0
        self._free = threading.Condition()

    def acquire(self, pixels: int) -> int:
        """Blocks until `pixels` (capped at the limit) fit; returns what was taken."""
        taken = min(max(int(pixels), 0), self.limit)
        with self._free:
            while self.in_use and self.in_use + taken > self.limit:
                self._free.wait()
            self.in_use += taken
            self.peak = max(self.peak, self.in_use)
        return taken

    def release(self, taken: int) -> None:
        if taken >= _TRIM_AFTER_PIXELS:
            _trim_heap()
        with self._free:
            self.in_use -= taken
            self._free.notify_all()

    def hold(self, pixels: int):
        budget = self

        class _Held:
            def __enter__(self):
                self.taken = budget.acquire(pixels)
                return self

            def __exit__(self, *exc):
                budget.release(self.taken)

        return _Held()
