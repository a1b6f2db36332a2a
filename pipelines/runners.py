"""Runner choices made at launch: the project's Prism binary, refused modes, running to the end.

`--runner=DirectRunner` in Beam 2.77 first tries Prism (Beam's Go runner), which it downloads
from GitHub; `--runner=PrismRunner` needs it too. `scripts/install_prism.sh` builds the binary
from the Go module proxy into PRISM_DIR; when it is there and no --prism_location is given, the
job points Beam at it, so both runners work offline.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, PrismRunnerOptions, StandardOptions

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


def new_pipeline(options: PipelineOptions) -> beam.Pipeline:
    """The pipeline, its runner resolved first: a wrong --runner fails before the output is touched."""
    try:
        return beam.Pipeline(options=options)
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None


def run_to_completion(pipeline: beam.Pipeline) -> str:
    """Runs the pipeline to its end; the final state, 'FAILED: ...' when the runner raised."""
    try:
        result = pipeline.run()
        return str(result.wait_until_finish())
    except Exception as exc:  # noqa: BLE001 - a failed job is reported (run.json, exit 5), not a traceback
        _LOG.error("the job failed: %s", exc, exc_info=_LOG.isEnabledFor(logging.DEBUG))
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"FAILED: {type(exc).__name__}: {first[:500]}"
