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


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    collapse = CollapseRepeatedTracebacks()
    for handler in logging.getLogger().handlers:  # filters on handlers see records of every logger
        handler.setLevel(logging.WARNING)  # loggers Beam sets to INFO (Prism's) reach the handler too
        handler.addFilter(_DropOptionalGcpNotice())
        handler.addFilter(_DropRunnerServiceNotices())
        handler.addFilter(_DropHarmlessWorkerNotices())
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
    from pipelines.normalize_manifests import run

    try:
        code = run(args)
    finally:
        for line in collapse.summary():
            print(line, file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
