"""The `labelbeam` command: logging set up before Beam is imported, then the job."""

from __future__ import annotations

import logging
import sys

from transforms.logs import CollapseRepeatedTracebacks, RedactingFormatter


class _DropOptionalGcpNotice(logging.Filter):
    """Beam warns at import that Google Cloud client libraries are absent; they are optional here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


class _DropRunnerServiceNotices(logging.Filter):
    """Beam warns each time it starts or stops a runner's service process (Prism's
    "Really starting service at localhost:..."): the normal course of a run, not a problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(("Really starting service", "Really destroying service"))


class _DropHarmlessWorkerNotices(logging.Filter):
    """SDK workers of the local runners warn that they have no semi-persistent directory (a
    Dataflow notion); relayed by the local job service on every start, it says nothing here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No semi_persistent_directory found" not in record.getMessage()


def _redacted_excepthook(kind, value, tb) -> None:
    """An uncaught exception's traceback, with URL userinfo redacted like every other output."""
    import traceback

    from transforms.storage import redact_url

    sys.stderr.write(redact_url("".join(traceback.format_exception(kind, value, tb))))


class _StorageFailuresInOneLine(logging.Filter):
    """A bundle failing because storage failed (a full disk, an endpoint gone) is logged by the
    runner with its traceback; the cause is in the message, and the job ends with one line and
    exit 5, so the traceback goes. Any other exception keeps it (a bug to report)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            from transforms.storage import failure_reason

            if failure_reason(record.exc_info[1]) is not None:
                record.exc_info, record.exc_text = None, None
        return True


def _storage_failures_unraisable_in_silence() -> None:
    """A file writer left open by a failed bundle is closed by the garbage collector; on a full
    disk its close fails again and Python prints "Exception ignored" with a traceback. The job's
    own line already says the storage failed: those are dropped, any other is printed."""
    previous = sys.unraisablehook

    def hook(unraisable):
        from transforms.storage import failure_reason

        if unraisable.exc_value is not None and failure_reason(unraisable.exc_value) is not None:
            return
        previous(unraisable)

    sys.unraisablehook = hook


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    collapse = CollapseRepeatedTracebacks()
    _storage_failures_unraisable_in_silence()
    for handler in logging.getLogger().handlers:  # filters on handlers see records of every logger
        handler.setLevel(logging.WARNING)  # loggers Beam sets to INFO (Prism's) reach the handler too
        handler.addFilter(_DropOptionalGcpNotice())
        handler.addFilter(_DropRunnerServiceNotices())
        handler.addFilter(_DropHarmlessWorkerNotices())
        handler.addFilter(_StorageFailuresInOneLine())
        handler.addFilter(collapse)
        handler.setFormatter(RedactingFormatter(handler.formatter))
    sys.excepthook = _redacted_excepthook
    args = sys.argv[1:]
    if "-h" in args or "--help" in args:
        from pipelines.options import help_text

        print(help_text())
        sys.exit(0)
    if "--help-beam" in args:
        from pipelines.options import beam_help_text

        print(beam_help_text())
        sys.exit(0)
    if "--version" in args:
        from pipelines.options import version_text

        print(version_text())
        sys.exit(0)
    from pipelines import beam_import

    if beam_import.runs_locally(args):  # no Dataflow, no Beam I/O connector: Beam without them
        beam_import.import_lean()
    from pipelines.normalize_manifests import run

    try:
        code = run(args, exit_on_signal=exit_now)
    finally:
        for line in collapse.summary():
            print(line, file=sys.stderr)
    exit_now(code)


def exit_now(code: int) -> None:
    """Ends the process with `code` once its output is flushed and its exit handlers have run,
    without the interpreter's teardown. Beam's in-process runners leave native threads behind
    (gRPC's completion-queue and executor threads, Arrow's pools); when the interpreter tears
    down while one of them is still joinable, C++ aborts ("terminate called without an active
    exception", SIGABRT) after labelbeam printed its exit code, and the process's status no
    longer equals run.json's. `os._exit` skips that teardown."""
    import atexit
    import os

    try:
        atexit._run_exitfuncs()  # Beam's job servers and worker pools stop here, as at a normal exit
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


if __name__ == "__main__":
    main()
