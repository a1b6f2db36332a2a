"""The SDK worker process of the local multi-process runner: Beam's own worker
(`apache_beam.runners.worker.sdk_worker_main`), started without the optional connectors that
importing Beam pulls in and no labelbeam stage uses.

Importing `apache_beam` imports, whatever the pipeline, the clients of Azure Blob Storage,
Google Cloud Storage, BigQuery and Pub/Sub and pandas (each behind a `try: import ... except
ImportError`, so Beam works without them): about 1.0 of the 1.6 CPU s a worker spends importing
Beam, paid by every worker process of every local run. labelbeam reads and writes through
fsspec (transforms/storage.py), never through Beam's I/O connectors or its pandas batches, so
while Beam's worker is imported here those modules are reported absent; once it is imported
they are importable again, and a stage that needs one imports it as usual. The job's process
(the driver) imports Beam in full: it may submit to Dataflow or stage on GCS.

pipelines/runners.py starts the FnApiRunner's worker processes with this module instead of
Beam's (docs/runners.md).
"""

from __future__ import annotations

import sys

# Top-level names (and their submodules) Beam imports only in `try: ... except ImportError`.
SKIPPED_WHILE_BEAM_IMPORTS = (
    "apache_beam.io.aws",
    "apache_beam.io.azure",
    "apache_beam.io.gcp",
    "azure",
    "boto3",
    "botocore",
    "google.cloud",
    "pandas",
)


class _SkipOptionalConnectors:
    """A meta path finder that reports the skipped modules as not installed (Beam's `except
    ImportError` then skips them)."""

    def find_spec(self, name, path=None, target=None):
        if any(name == skipped or name.startswith(skipped + ".") for skipped in SKIPPED_WHILE_BEAM_IMPORTS):
            raise ModuleNotFoundError(f"{name} is not imported by labelbeam's local SDK worker", name=name)
        return None


def import_beam_worker():
    """Beam's worker module, imported with the optional connectors skipped."""
    finder = _SkipOptionalConnectors()
    sys.meta_path.insert(0, finder)
    try:
        from apache_beam.runners.worker import sdk_worker_main
    finally:
        sys.meta_path.remove(finder)
    return sdk_worker_main


if __name__ == "__main__":
    import_beam_worker().main(sys.argv)
