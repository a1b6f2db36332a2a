"""One redaction function (transforms/storage.redact_url) for every text labelbeam writes or
prints: URL userinfo in its usual, JSON-escaped and quoted-by-a-client forms."""

from __future__ import annotations

import logging

import pytest

from transforms import errors, storage
from transforms.errors import Provenance
from transforms.logs import CauseLog, RedactingFormatter


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("s3://u:pw@bucket/k.png", "s3://***@bucket/k.png"),
        ("http://user:p@ss@host/a@2x.png", "http://***@host/a@2x.png"),  # a password holding @
        ('{"source-ref":"s3:\\/\\/u:pw@b\\/k.jpg","mail":"a@b.com"}', '{"source-ref":"s3:\\/\\/***@b\\/k.jpg","mail":"a@b.com"}'),
        ('Invalid bucket name "u:pw@bucket": must match', 'Invalid bucket name "***@bucket": must match'),  # botocore quoting it
        ("http://token@host/x", "http://***@host/x"),
        ("s3://bucket/k@2x.png and a@b.com", "s3://bucket/k@2x.png and a@b.com"),  # no userinfo: unchanged
    ],
)
def test_redact_url(text, redacted):
    assert storage.redact_url(text) == redacted


def test_dead_letters_redact_the_raw_line_and_the_message():
    raw = b'{"source-ref": "s3://u:pw-1@b/x.jpg", "label": '
    letter = errors.dead_letter(Provenance("https://u:pw-2@h/m.manifest", 1, 0, "sagemaker"), "normalize", errors.INVALID_JSON, "bad s3://u:pw-3@b/x.jpg", raw)
    assert "pw-" not in repr(letter)
    assert letter["raw"] == '{"source-ref": "s3://***@b/x.jpg", "label": '


def test_log_records_and_their_tracebacks_are_redacted():
    records = []

    class _Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = _Keep()
    handler.setFormatter(RedactingFormatter(logging.Formatter("%(message)s")))
    logger = logging.getLogger("test_redaction")
    logger.addHandler(handler)
    try:
        try:
            raise OSError('Could not connect to "http://admin:pw-4@127.0.0.1:9/b/k"')
        except OSError as exc:
            CauseLog(logger).failed("masks of s3://u:pw-5@b/m.manifest failed", exc)
    finally:
        logger.removeHandler(handler)
    [text] = records
    assert "Traceback" in text and "pw-" not in text and text.count("***@") >= 2
