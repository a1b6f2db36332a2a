"""Importing Beam without the optional connectors it pulls in and no local run uses.

`import apache_beam` imports, whatever the pipeline, the clients of Azure Blob Storage (with
aiohttp), Google Cloud Storage, BigQuery and Pub/Sub, and pandas: each inside `try: import ...
except ImportError`, so Beam works without them. They are about 0.9 of the 1.5 CPU s and 90 of
the 230 MB a process spends importing Beam. labelbeam reads and writes through fsspec
(transforms/storage.py), never through Beam's I/O connectors or its pandas batches, so a process
that runs the job locally imports Beam while those modules are reported absent (`import_lean`);
afterwards they are importable again, and whatever needs one imports it as usual. pyarrow's
check for pandas objects is answered in that window too (it would import pandas on the first
conversion of a Python value).

Who does: the local worker processes (pipelines/sdk_worker_main.py) always, and the job's own
process when the run is local (`runs_locally`: the FnApiRunner, named or chosen by default).
A run on another runner imports Beam in full: Dataflow submits and stages through Beam's GCS
client, and other runners may need theirs.
"""

from __future__ import annotations

import os
import sys

# Module names (and their submodules) Beam imports only inside `try: ... except ImportError`.
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
# --runner values that run the job in this process or in local worker processes.
_LOCAL_RUNNERS = ("fnapirunner", "apache_beam.runners.portability.fn_api_runner.fnapirunner",
                  "apache_beam.runners.portability.fn_api_runner.fn_runner.fnapirunner")  # fmt: skip


class _SkipOptionalConnectors:
    """A meta path finder that reports the skipped modules as not installed (Beam's `except
    ImportError` then skips them)."""

    def find_spec(self, name, path=None, target=None):
        if any(name == skipped or name.startswith(skipped + ".") for skipped in SKIPPED_WHILE_BEAM_IMPORTS):
            raise ModuleNotFoundError(f"{name} is not imported with Beam by a local labelbeam run", name=name)
        return None


def import_lean(module: str = "apache_beam"):
    """Imports `module` (Beam, or one of its modules) with the optional connectors skipped; a
    process that has already imported Beam is left as it is."""
    import importlib

    finder = _SkipOptionalConnectors()
    sys.meta_path.insert(0, finder)
    try:
        imported = importlib.import_module(module)
        _pyarrow_asks_for_pandas_now()
        return imported
    finally:
        sys.meta_path.remove(finder)


def _pyarrow_asks_for_pandas_now() -> None:
    """pyarrow imports pandas (0.16 CPU s) the first time it converts a Python value (`pa.scalar`,
    `fill_null(0)`) only to learn whether the value is a pandas object. Asked while pandas is
    reported absent, it remembers the answer: no local run hands pyarrow a pandas object. A
    pyarrow call that needs pandas (`to_pandas`) still imports it then (pyarrow's shim retries)."""
    try:
        import pyarrow

        pyarrow.lib._pandas_api.have_pandas  # noqa: B018, SLF001 - pyarrow's Python side asks here
        pyarrow.array([0])  # and its C++ converter (once per process, pandas.NA and NaT) here
    except Exception:  # noqa: BLE001 - another pyarrow: it asks when it needs to, as before
        pass


def runs_locally(argv: list[str]) -> bool:
    """Whether these command-line arguments run the job on the FnApiRunner (named, or chosen
    when no runner is given), read before Beam is imported: the last --runner of the local
    --config files' pipeline_options and the flags. A config file that cannot be read here
    counts as naming another runner (Beam is then imported in full; the launch reports it)."""
    runner = ""
    configs = [arg.split("=", 1)[1] if arg.startswith("--config=") else argv[i + 1]
               for i, arg in enumerate(argv) if arg.startswith("--config=") or (arg == "--config" and i + 1 < len(argv))]  # fmt: skip
    for path in configs:
        if "://" in path or not os.path.isfile(path):
            return False
        try:
            import yaml

            with open(path, "rb") as handle:
                loaded = yaml.safe_load(handle) or {}
            runner = str(((loaded.get("pipeline_options") or {}).get("runner")) or runner)
        except Exception:  # noqa: BLE001 - the launch parses it again and says what is wrong
            return False
    for i, arg in enumerate(argv):
        if arg.startswith("--runner="):
            runner = arg.split("=", 1)[1]
        elif arg == "--runner" and i + 1 < len(argv):
            runner = argv[i + 1]
    return runner == "" or runner.lower() in _LOCAL_RUNNERS
