"""One log line per cause: thousands of equal failures print one traceback and a count."""

from __future__ import annotations

import io
import logging
import traceback

from transforms.logs import CauseLog, CollapseRepeatedTracebacks, cause_of


def _logger(name: str, *filters: logging.Filter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for f in filters:
        handler.addFilter(f)
    logger = logging.getLogger(name)
    logger.handlers, logger.propagate, logger.level = [handler], False, logging.INFO
    return logger, stream


def _fetch(i: int) -> None:
    raise ConnectionError(f"Could not connect to the endpoint URL: http://127.0.0.1:9000/bucket/masks/{i}.png")


def _failures(n: int, fetch=_fetch):
    for i in range(n):
        try:
            fetch(i)
        except Exception as exc:  # noqa: BLE001 - what a worker catches per record
            yield i, exc


def test_a_cause_is_its_type_and_message_with_digits_masked():
    [(_, first), (_, second)] = _failures(2)
    assert cause_of(first) == cause_of(second) == "ConnectionError: Could not connect to the endpoint URL: http://#.#.#.#:#/bucket/masks/#.png"
    assert cause_of(PermissionError("denied")) != cause_of(first)


def test_a_worker_logs_one_traceback_per_cause_then_one_count_line():
    logger, stream = _logger("labelbeam.test.worker")
    causes = CauseLog(logger)
    for i, exc in _failures(5000):
        causes.failed(f"file checks failed for s3://bucket/masks/{i}.png", exc)
    for _, exc in _failures(3, fetch=lambda i: (_ for _ in ()).throw(PermissionError(f"Access Denied for key {i}"))):
        causes.failed("file checks failed", exc)
    causes.flush()
    text = stream.getvalue()
    assert text.count("Traceback (most recent call last)") == 2  # one per cause
    assert "4999 more failure(s) of the same cause: ConnectionError" in text
    assert "2 more failure(s) of the same cause: PermissionError" in text
    assert len(text.splitlines()) < 40 and len(text) < 5000
    causes.flush()  # counts were handed out: nothing repeats
    assert stream.getvalue() == text


def test_the_cli_filter_collapses_tracebacks_logged_or_relayed_as_text():
    collapse = CollapseRepeatedTracebacks()
    logger, stream = _logger("labelbeam.test.cli", collapse)
    for i, exc in _failures(3000):
        logger.error("failed on record %d", i, exc_info=exc)
        # a worker process's record, relayed by the runner with the traceback in its text
        logger.error("worker: failed on record %d\n%s", i, "".join(traceback.format_exception(exc)))
    logger.warning("a warning without a traceback passes every time")
    logger.warning("a warning without a traceback passes every time")
    text = stream.getvalue()
    assert text.count("Traceback (most recent call last)") == 1  # the first, in full: both spellings are one cause
    assert text.count("a warning without a traceback passes every time") == 2
    summary = collapse.summary()
    assert len(summary) == 1 and "5,999 more log record(s) with the same traceback not shown" in summary[0]
    assert "ConnectionError: Could not connect to the endpoint URL" in summary[0]
    assert len(text) < 5000
