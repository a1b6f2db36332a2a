"""The labelbeam job: read manifests, normalize, validate, split, write; then run.json.

    labelbeam --input PATTERN --output URL [--format NAME] [--output_format NAME ...]
              [--config FILE ...] [--overwrite] [--max_error_rate F] [Beam options]
    python -m pipelines.normalize_manifests ...   (the same)
"""

from __future__ import annotations

import sys
import time

import apache_beam as beam

from pipelines import report
from pipelines.options import ConfigError, JobConfig, parse_launch
from transforms import errors, storage
from transforms.counters import COUNTERS_FILE, MergeCounters, WriteCounters, counters_of_dead_letters, issue_counts
from transforms.masks import ValidateMasks
from transforms.normalize import COUNTS, RECORDS, NormalizeRecords
from transforms.read import BATCHES, FILES, SHARD_LINES, ReadManifests
from transforms.split import AssignSplit
from transforms.stats import ComputeStatistics
from transforms.write import WriteDeadLetters, WriteManifests, WriteRecords, ensure_records_dataset


def build(pipeline: beam.Pipeline, job: JobConfig) -> dict[str, beam.PCollection]:
    """The whole job graph on `pipeline`; returns its main PCollections by name."""
    out = job.output.rstrip("/")
    store = job.storage_options or None
    read = pipeline | "ReadManifests" >> ReadManifests(
        job.input,
        format_name=job.format,
        shard_size=job.shard_size,
        storage_options=store,
        batch_lines=job.batch_size,
        max_line_bytes=job.max_line_bytes,
    )
    normalized = read[BATCHES] | "NormalizeRecords" >> NormalizeRecords(
        job.format_options(), job.relative_to
    )
    records = normalized[RECORDS] | "AssignSplit" >> AssignSplit(job.split_ratios, job.split_salt)
    dead_letters = [normalized[errors.DEAD_LETTERS]]

    validated = _validate_masks(records, job, store)
    if validated is not None:
        records = validated["records"]
        dead_letters.append(validated[errors.DEAD_LETTERS])

    records | "WriteRecords" >> WriteRecords(storage.join(out, "records"), store)
    records | "ComputeStatistics" >> ComputeStatistics(storage.join(out, "stats"), store)
    for name in job.output_format:
        written = records | f"WriteManifests[{name}]" >> WriteManifests(
            storage.join(out, "manifests", name), name, job.format_options(), store
        )
        dead_letters.append(written[errors.DEAD_LETTERS])

    all_dead = dead_letters | "AllDeadLetters" >> beam.Flatten()
    all_dead | "WriteDeadLetters" >> WriteDeadLetters(storage.join(out, "errors"), store)

    counters = (
        (
            read[FILES],
            read[SHARD_LINES],
            normalized[COUNTS],
            all_dead | "CountDeadLetters" >> beam.Map(counters_of_dead_letters),
            records | "CountWarnings" >> beam.FlatMap(issue_counts),
        )
        | "AllCounters" >> beam.Flatten()
        | "MergeCounters" >> beam.CombinePerKey(MergeCounters())
    )
    counters | "WriteCounters" >> WriteCounters(storage.join(out, COUNTERS_FILE), store)
    return {"records": records, "dead_letters": all_dead, "counters": counters}


def _validate_masks(records, job: JobConfig, store):
    """ValidateMasks, when masks are checked, images probed, or a target profile applies."""
    if not (job.validate_masks or job.probe_images or job.validation_profile != "none"):
        return None
    config = job.mask_config()
    return records | "ValidateMasks" >> ValidateMasks(config, store)


def _prepare_output(job: JobConfig) -> None:
    """An empty --output folder to write into; never one that holds the job's own inputs."""
    fs, path = storage.filesystem(job.output, job.storage_options)
    folder = storage.to_url(fs, path).rstrip("/") + "/"
    for pattern in job.input:
        for url, _ in storage.expand(pattern, job.storage_options):
            if url.startswith(folder):
                raise ConfigError(f"input {url} is inside --output {job.output}; write somewhere else")
    if fs.exists(path) and (not fs.isdir(path) or fs.ls(path)):
        if not fs.isdir(path):
            raise ConfigError(f"--output {job.output} is a file, not a folder")
        if not job.overwrite:
            raise ConfigError(f"--output {job.output} is not empty; pass --overwrite to replace it")
        fs.rm(path, recursive=True)
    fs.makedirs(path, exist_ok=True)


def _new_pipeline(launch) -> beam.Pipeline:
    """The pipeline, its runner resolved first: a wrong --runner fails before the output is touched."""
    try:
        return beam.Pipeline(options=launch.pipeline_options)
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None


def run(argv: list[str] | None = None) -> int:
    """Launch the job; returns the process exit code (0, 1 past --max_error_rate, 2 bad config)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        launch = parse_launch(argv)
        pipeline = _new_pipeline(launch)
        _prepare_output(launch.job)
    except ConfigError as exc:
        print(f"labelbeam: error: {exc}", file=sys.stderr)
        return 2
    job = launch.job
    started = time.time()
    build(pipeline, job)
    result = pipeline.run()
    state = result.wait_until_finish()
    ensure_records_dataset(storage.join(job.output, "records"), job.storage_options)
    finished = time.time()
    summary = report.write_run_report(job, launch.beam_options(), started, finished, str(state))
    print(report.describe(job, summary))
    return summary["exit_code"]


if __name__ == "__main__":
    from pipelines.cli import main

    main()
