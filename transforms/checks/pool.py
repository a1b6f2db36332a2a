"""Run many file checks at once, each bounded in time, on threads that can never hang the process.

File checks wait on storage (fetches) and on decoders (Pillow, zlib and numpy release the GIL
for the heavy part), so a batch's files are checked concurrently on a fixed set of daemon
threads. Each task is bounded in time: one that runs past the limit gets its `on_timeout`
result, and every other task finishes as usual. A stuck thread cannot be killed; it is left
behind (daemon threads never keep a process from exiting) and later work goes to fresh threads.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import dataclasses
import os
import queue
import threading
import time
from typing import Any, Callable

# Seconds between looks at running tasks while waiting for a batch.
_POLL_SECONDS = 0.05


class DaemonPool:
    """A fixed set of daemon threads running submitted calls, returning Futures.

    Unlike ThreadPoolExecutor, whose threads the interpreter joins at exit, a thread stuck in a
    hostile file here can never keep a worker process (or the CLI) from exiting.
    """

    def __init__(self, workers: int, name: str = "check-files"):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._workers = max(1, workers)
        for _ in range(self._workers):
            threading.Thread(target=self._work, name=name, daemon=True).start()

    def submit(self, fn, *args) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((future, fn, args))
        return future

    def shutdown(self) -> None:
        for _ in range(self._workers):
            self._queue.put(None)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                future.set_exception(exc)


@dataclasses.dataclass
class Task:
    """One unit of work; the running thread sets `started` and may set `stage` as it goes, so a
    timeout can say where it stopped."""

    payload: Any
    started: float | None = None
    stage: str = ""


class BoundedRunner:
    """Runs `check(task)` for every task concurrently, each within `timeout_seconds`."""

    def __init__(self, concurrency: int, timeout_seconds: float):
        self._concurrency = concurrency
        self._timeout = timeout_seconds
        limit_malloc_arenas()
        self._pool = DaemonPool(concurrency)

    def close(self) -> None:
        self._pool.shutdown()

    def run(self, tasks: list[Task], check: Callable[[Task], Any], on_timeout: Callable[[Task, float], Any]) -> list[Any]:
        """Results in task order; a task past the limit gets on_timeout(task, limit)."""

        def timed(task: Task):
            task.started = time.monotonic()
            return check(task)

        futures = {self._pool.submit(timed, task): i for i, task in enumerate(tasks)}
        results: list[Any] = [None] * len(tasks)
        pending = set(futures)
        timed_out = False
        while pending:
            done, pending = concurrent.futures.wait(pending, timeout=_POLL_SECONDS, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                results[futures[future]] = future.result()
            now = time.monotonic()
            for future in list(pending):
                task = tasks[futures[future]]
                if task.started is not None and now - task.started > self._timeout:
                    pending.discard(future)
                    future.cancel()
                    timed_out = True
                    results[futures[future]] = on_timeout(task, self._timeout)
            if timed_out and pending:
                pending = self._requeue_waiting(pending, futures, tasks, timed)
        if timed_out:
            self._fresh_pool()
        return results

    def _fresh_pool(self) -> None:
        self._pool.shutdown()
        self._pool = DaemonPool(self._concurrency)

    def _requeue_waiting(self, pending, futures, tasks, timed):
        """Tasks queued behind stuck threads would never start: run them on a new pool."""
        queued = [f for f in pending if tasks[futures[f]].started is None and f.cancel()]
        if not queued:
            return pending
        self._fresh_pool()
        pending = set(pending) - set(queued)
        for future in queued:
            index = futures.pop(future)
            again = self._pool.submit(timed, tasks[index])
            futures[again] = index
            pending.add(again)
        return pending


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
