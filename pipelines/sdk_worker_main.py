"""The SDK worker process of the local multi-process runner: Beam's own worker
(`apache_beam.runners.worker.sdk_worker_main`), imported without the optional connectors that
no labelbeam stage uses (pipelines/beam_import.py): about 0.56 CPU s instead of 1.46 for each
worker of every local run.

Arrow's memory pool in these processes is jemalloc (unless ARROW_DEFAULT_MEMORY_POOL says
otherwise), not the wheel's default mimalloc: it holds about 30 MB less per worker at the same
speed on the Lookout runs of docs/benchmarks.md ("Memory"). Linux only, where it was measured
and every pyarrow wheel has it.

pipelines/runners.py starts the FnApiRunner's worker processes with this module instead of
Beam's (docs/runners.md).
"""

from __future__ import annotations

import os
import sys

from pipelines.beam_import import import_lean


def choose_arrow_memory_pool() -> None:
    """jemalloc for Arrow in this process, unless the environment chose a pool (read by pyarrow
    when it first allocates, so before Beam imports it)."""
    if sys.platform.startswith("linux"):
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")


def import_beam_worker():
    """Beam's worker module, imported with the optional connectors skipped."""
    return import_lean("apache_beam.runners.worker.sdk_worker_main")


if __name__ == "__main__":
    choose_arrow_memory_pool()
    import_beam_worker().main(sys.argv)
