"""The `labelbeam` command: logging set up before Beam is imported, then the job."""

from __future__ import annotations

import logging
import sys


class _DropOptionalGcpNotice(logging.Filter):
    """Beam warns at import that Google Cloud client libraries are absent; they are optional here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().addFilter(_DropOptionalGcpNotice())
    from pipelines.normalize_manifests import run

    sys.exit(run())


if __name__ == "__main__":
    main()
