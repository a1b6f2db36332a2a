"""Runner choices made at launch: the default runner, the project's Prism binary, refused modes,
running to the end.

A run that names no runner gets the configuration docs/benchmarks.md measures fastest and
tested lossless on a local machine (configs/local.yaml): the FnApiRunner with one worker
process per core (in process on a single core, where a worker process only adds its start-up).

`--runner=DirectRunner` in Beam 2.77 first tries Prism (Beam's Go runner), which it downloads
from GitHub; `--runner=PrismRunner` needs it too. `scripts/install_prism.sh` builds the binary
from the Go module proxy into PRISM_DIR; when it is there and no --prism_location is given, the
job points Beam at it, so both runners work offline.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    PrismRunnerOptions,
    StandardOptions,
    TestOptions,
)
from apache_beam.portability import python_urns
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.runner import create_runner

from pipelines.options import ConfigError

_LOG = logging.getLogger(__name__)
BEAM_VERSION = beam.__version__
PRISM_DIR = Path(os.environ.get("LABELBEAM_PRISM_DIR", Path.home() / ".cache" / "labelbeam" / "prism"))
_PRISM_RUNNERS = {"DirectRunner", "PrismRunner", "apache_beam.runners.direct.direct_runner.DirectRunner"}


class RunnerRefused(ConfigError):
    """A runner configuration that is known to give wrong results."""


def prism_binary() -> Path | None:
    """The Prism built for this Beam version by scripts/install_prism.sh, if there is one."""
    candidate = PRISM_DIR / f"v{BEAM_VERSION}" / "prism"
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def cores() -> int:
    """The cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def choose_default(options: PipelineOptions) -> str | None:
    """Without --runner: the FnApiRunner, one worker process per core (a --direct_running_mode
    or --direct_num_workers given is kept). Sets the options (run.json records them) and returns
    the one line that says so; None when a runner was named."""
    standard = options.view_as(StandardOptions)
    if standard.runner:
        return None
    direct = options.view_as(DirectOptions)
    named = {flag.split("=", 1)[0] for flag in options._flags if flag.startswith("--")}  # noqa: SLF001 (what the user gave)
    workers = direct.direct_num_workers if "--direct_num_workers" in named else cores()
    if "--direct_running_mode" in named:
        mode = direct.direct_running_mode
    else:
        mode = "multi_processing" if workers > 1 else "in_memory"
    if mode == "in_memory" and "--direct_num_workers" not in named:
        workers = 1
    standard.runner = "FnApiRunner"
    direct.direct_running_mode = mode
    direct.direct_num_workers = workers
    if mode == "in_memory":
        how = "in process"
    else:
        how = f"with {workers} worker process{'es' if workers != 1 else ''}" + (", one per core" if workers == cores() else "")
    return f"labelbeam: no --runner given, so FnApiRunner {how} (as configs/local.yaml); --runner chooses another"


def prepare(options: PipelineOptions) -> None:
    """Point Prism-based runners at the project's Prism binary; refuse lossy configurations."""
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    prism = options.view_as(PrismRunnerOptions)
    if runner in _PRISM_RUNNERS and not prism.prism_location:
        binary = prism_binary()
        if binary is not None:
            prism.prism_location = str(binary)
        elif runner == "PrismRunner":
            raise RunnerRefused(
                "PrismRunner needs the Prism binary: run scripts/install_prism.sh (Go from the module proxy), "
                "or pass --prism_location"
            )


def is_dry_run(options: PipelineOptions) -> bool:
    return bool(options.view_as(TestOptions).dry_run)


def dry_run(pipeline: beam.Pipeline, options: PipelineOptions) -> str:
    """`--dry_run=True`: the graph (already built on `pipeline`) is translated by a runner that
    honours the flag (Dataflow: the whole job request, staging files included, without sending
    it) and never run by one that does not (the local runners ignore it); the one line to print."""
    runner = (options.view_as(StandardOptions).runner or "").rsplit(".", 1)[-1]
    if runner in ("DataflowRunner", "TestDataflowRunner"):
        pipeline.run()  # dry_run: translated and checked, not submitted
        what = f"translated for {runner} and would be submitted"
    else:
        what = f"built and would be run on {runner}"
    transforms = len(pipeline.to_runner_api().components.transforms)
    return f"labelbeam: dry run: the job graph ({transforms} transforms) was {what}; nothing ran, nothing was published"


def new_pipeline(options: PipelineOptions) -> beam.Pipeline:
    """The pipeline, its runner resolved first: a wrong --runner fails before the output is touched."""
    try:
        return beam.Pipeline(runner=_local_workers_runner(options), options=options)
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None


# The command Beam's FnApiRunner starts each worker process with in multi_processing mode, and ours.
BEAM_WORKER_COMMAND = f"{sys.executable} -m apache_beam.runners.worker.sdk_worker_main"
WORKER_COMMAND = f"{sys.executable} -m pipelines.sdk_worker_main"


def _local_workers_runner(options: PipelineOptions):
    """The FnApiRunner in multi_processing mode starts its worker processes with
    pipelines/sdk_worker_main.py (Beam's worker without the cloud connectors no stage uses: about
    1 CPU s less per worker); None (the runner the options name) for every other runner."""
    name = options.view_as(StandardOptions).runner
    if not name or options.view_as(DirectOptions).direct_running_mode != "multi_processing":
        return None
    try:
        runner = create_runner(name)
    except (ValueError, ImportError):
        return None  # Beam's own message, from the Pipeline
    return LocalWorkersFnApiRunner() if type(runner) is FnApiRunner else runner


def _light_worker_environments(pipeline_proto) -> int:
    """Rewrites the worker command of the pipeline's subprocess environments from Beam's worker to
    ours; how many were rewritten."""
    rewritten = 0
    for environment in pipeline_proto.components.environments.values():
        if environment.urn == python_urns.SUBPROCESS_SDK and environment.payload.decode("utf-8") == BEAM_WORKER_COMMAND:
            environment.payload = WORKER_COMMAND.encode("utf-8")
            rewritten += 1
    return rewritten


class LocalWorkersFnApiRunner(FnApiRunner):
    """The FnApiRunner, its multi_processing workers started with pipelines/sdk_worker_main.py."""

    def run_via_runner_api(self, pipeline_proto, options):
        if not _light_worker_environments(pipeline_proto):  # Beam changed its worker command
            _LOG.warning("the worker processes start with Beam's own command (%s not found): about 1 CPU s more each", BEAM_WORKER_COMMAND)
        return super().run_via_runner_api(pipeline_proto, options)


# What Beam's local job service raises, in its own thread, when a worker process dies.
_WORKER_DIED = "Worker subprocess exited with return code"


def run_to_completion(pipeline: beam.Pipeline) -> str:
    """Runs the pipeline to its end; the final state, 'FAILED: ...' when the runner raised.

    A worker process of the local multi-process runner that dies (killed, out of memory) is
    not retried by Beam 2.77, and the driver would wait for it forever: its death is seen in
    the thread that watched it, the run is stopped, the other workers are ended, and the state
    says so (exit code 5, nothing published)."""
    died: list[str] = []
    stopped = threading.Event()
    previous = threading.excepthook

    def on_thread_error(args):
        if isinstance(args.exc_value, RuntimeError) and _WORKER_DIED in str(args.exc_value):
            if not died:
                died.append(str(args.exc_value))
                if interrupt is not None:  # the run is in the main thread: wake it
                    threading.Thread(target=_interrupt_until, args=(stopped,), daemon=True).start()
            return
        previous(args)

    def on_sigint(signum, frame):  # the wake-up above, or Ctrl-C for the handler installed before (pipelines/interrupts.py)
        if died or not callable(interrupt) or interrupt is signal.default_int_handler:
            raise KeyboardInterrupt
        interrupt(signum, frame)

    threading.excepthook = on_thread_error
    interrupt = None
    if threading.current_thread() is threading.main_thread():  # SIGINT may be ignored (a background job)
        interrupt = signal.signal(signal.SIGINT, on_sigint)
    try:
        result = pipeline.run()
        return str(result.wait_until_finish())
    except KeyboardInterrupt:
        if died and interrupt is not None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a last pending interrupt lands nowhere
        stopped.set()
        if not died:
            raise
        time.sleep(0.1)
        _end_worker_processes()
        _LOG.error("a worker process died: %s", died[0])
        code = died[0].split(_WORKER_DIED)[-1].strip()
        return f"FAILED: a worker process died (exit code {code}); Beam's local runner does not retry it"
    except Exception as exc:  # noqa: BLE001 - a failed job is reported (run.json, exit 5), not a traceback
        _LOG.error("the job failed: %s", exc, exc_info=_LOG.isEnabledFor(logging.DEBUG))
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"FAILED: {type(exc).__name__}: {first[:500]}"
    finally:
        threading.excepthook = previous
        if interrupt is not None:
            signal.signal(signal.SIGINT, interrupt)


def _interrupt_until(stopped: threading.Event) -> None:
    """SIGINT to this process every second until the main thread has stopped the run (a runner
    waiting inside gRPC may swallow one KeyboardInterrupt)."""
    while not stopped.is_set():
        os.kill(os.getpid(), signal.SIGINT)
        stopped.wait(1.0)


def _children(pid: int) -> list[int]:
    """Child processes of `pid` (of any of its threads: each thread lists its own)."""
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(p) for p in handle.read().split()]
        except OSError:
            continue
    return found


def _end_worker_processes() -> None:
    """Ends this process's Beam worker processes (and their children): the run is over."""
    for child in _children(os.getpid()):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as handle:
                if b"sdk_worker_main" not in handle.read():
                    continue
        except OSError:
            continue
        for pid in [*_children(child), child]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
