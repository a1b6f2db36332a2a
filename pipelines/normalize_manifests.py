"""The labelbeam job: read manifests, normalize, validate, check files, split, write; then report
and publish.

    labelbeam --input PATTERN [PATTERN ...] --output URL [--format NAME] [--output_format NAME ...]
              [--config FILE ...] [--overwrite] [--max_error_rate F] [Beam options]
    python -m pipelines.normalize_manifests ...   (the same)

The record path is one chain of ParDos with no shuffle and no flatten in it
(ReadShards -> Normalize -> ValidateRecords -> CheckFiles -> AssignSplit -> writers), so every
runner fuses it into one stage and no stage ever holds the dataset: memory stays flat as inputs
grow. Dead letters are written where they are produced, by the stage that refused them (errors/;
a writer's refusals of records it cannot represent, apart, in refused/<format>/).
One exception, on request only: a duplicate policy (--on_duplicate) groups the records by image
before the split. COCO numbers its categories when its finalize step assembles one document
per split; the sagemaker writer without a pinned class list writes from records/ once they
have landed, with every class name known (RereadRecords in transforms/stages/reread.py), so
neither holds anything back.

Exit codes (a scheduler acts on them; docs/scheduling.md):
  0  done, every input line accounted for, outputs published with _SUCCESS
  1  done and published, but dead letters / input lines passed --max_error_rate, or input that
     was not blank kept no record at all (no _SUCCESS)
  2  refused at launch: a bad option or input, storage unreachable or refusing access, another
     run holds the output, or the output holds files no labelbeam run wrote
  3  data loss: an output holds fewer rows than were given to it, or a staged file differs from
     what its writer counted; nothing published
  4  incomplete input: a file could not be read to its end; nothing published (--allow_incomplete
     publishes anyway, without _SUCCESS)
  5  the job itself failed (runner error, counters missing, storage or disk failing after
     launch); nothing published (a publish cut short is completed by the next run)
  130 / 143  stopped by SIGINT / SIGTERM before publishing; the lock released, nothing published
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import sys
import time
from typing import Callable

import apache_beam as beam

from pipelines import incremental, interrupts, progress, publish, report, runners
from pipelines.config import JobConfig
from pipelines.options import ConfigError, parse_launch
from transforms import errors, file_checks, spill, storage
from transforms.checks.masks import MaskPolicy
from transforms.file_checks import FileCheckConfig
from transforms.formats.base import detect_format, document_format, get_format, input_format_names
from transforms.image_copies import ImageCopies
from transforms.read_layout import sample_records, sniff
from transforms.shards import FileChecks
from transforms.stages.accounting import COUNTERS_FILE, LEDGER, WriteCounters
from transforms.stages.check_files import CheckFiles
from transforms.stages.dedupe import ResolveDuplicates
from transforms.stages.documents import JoinDocuments
from transforms.stages.duplicates import FindDuplicates
from transforms.stages.normalize import RECORDS, NormalizeRecords
from transforms.stages.progress import CountProgress
from transforms.stages.read import BATCHES, ReadManifests
from transforms.stages.split import AssignSplit
from transforms.stages.stats import ComputeStatistics
from transforms.stages.validate import ValidateRecords
from transforms.stages.write import (
    CLASSES,
    ERRORS_OUTPUT,
    PUBLISHED,
    RECORDS_OUTPUT,
    RereadRecords,
    WriteDeadLetters,
    WriteManifests,
    WriteRecords,
    manifests_output,
    refused_output,
)
from transforms.uri_map import References

# The record stages, in graph order: each reports rows in / out / refused to the ledger.
RECORD_STAGES = (errors.VALIDATE, errors.CHECK_FILES, "split")


def record_stages(job: JobConfig) -> tuple[str, ...]:
    """The record stages of this job: a duplicate policy adds its stage before the split."""
    if not job.on_duplicate:
        return RECORD_STAGES
    return (errors.VALIDATE, errors.CHECK_FILES, errors.DEDUPE, "split")


def file_check_config(job: JobConfig) -> FileCheckConfig:
    """The file checks' settings: the job's validated `validate` section as it is, its profile
    resolved (once per launch: ValidateRecords gets the same object) and the allowed roots."""
    return FileCheckConfig.of(job.validate, allowed_roots(job))


def mask_policy(job: JobConfig) -> MaskPolicy:
    """The file checks' mask rules, for writers that write a mask's pixels (same counts)."""
    return file_checks.mask_policy(job.validate.mask)


def allowed_roots(job: JobConfig) -> tuple[str, ...]:
    """Where workers may open referenced files, besides each manifest's own root."""
    return tuple(job.validate.allowed_roots) + ((job.read.relative_to,) if job.read.relative_to else ())


def build(pipeline: beam.Pipeline, job: JobConfig, out: str | None = None, progress_dir: str | None = None,
          inputs: tuple[tuple[str, int], ...] | None = None) -> dict:
    """The whole job graph on `pipeline`, writing under `out` (the run's staging folder; the
    job's output when None), its progress counts into `progress_dir` when given (local runners),
    reading `inputs` (the launch's listing of job.input; listed by the graph when None).
    Returns the main PCollections and the record stages' names."""
    out = (out or job.output).rstrip("/")
    store = job.storage_config()
    checks = file_check_config(job)
    read = pipeline | "ReadManifests" >> ReadManifests(
        job.input,
        format_name=job.read.format,
        shard_size=job.read.shard_size,
        store=store,
        batch_lines=job.read.batch_size,
        max_line_bytes=job.read.max_line_bytes,
        checks=FileChecks(masks=checks.settings.masks, images=checks.settings.probe_images),
        files=inputs,
    )
    batches, (joins, only_documents) = read[BATCHES], reads_documents(job, inputs, store)
    if joins:  # COCO: parts of documents, joined by image id before they are parsed
        joined = batches | "JoinDocuments" >> JoinDocuments(
            job.read.batch_size, storage.join(out, JOIN_FOLDER), store, spill.bucket_count(joins), every_batch=only_documents
        )
        batches = joined[BATCHES]
    normalized = batches | "NormalizeRecords" >> NormalizeRecords(job.format_options(), job.read.relative_to)
    validated = normalized[RECORDS] | "ValidateRecords" >> ValidateRecords(checks.profile)
    checked = validated["main"] | "CheckFiles" >> CheckFiles(checks, store)
    stage_outputs = [normalized, validated, checked]
    kept = checked["main"]
    if job.on_duplicate:  # a GroupByKey of whole records by image: only when the user names a policy
        resolved = kept | "ResolveDuplicates" >> ResolveDuplicates(job.on_duplicate, job.read.batch_size)
        stage_outputs.append(resolved)
        kept = resolved["main"]
    split = kept | "AssignSplit" >> AssignSplit(
        job.split.ratios, job.split.salt, by=job.split.by, group=job.split.group_key(), keep_input=job.split.keep_input
    )
    records = split["main"]

    ledgers = [read[LEDGER], *(stage[LEDGER] for stage in stage_outputs), split[LEDGER]]
    dead_letters = [stage[errors.DEAD_LETTERS] for stage in stage_outputs]
    stage_letters = list(zip((errors.NORMALIZE, *record_stages(job)), dead_letters))  # split refuses nothing
    if joins:
        ledgers.append(joined[LEDGER])
        dead_letters.append(joined[errors.DEAD_LETTERS])
        stage_letters.append((errors.NORMALIZE + "_join", joined[errors.DEAD_LETTERS]))

    options = job.format_options()
    numbered = [name for name in job.write.formats if get_format(name).needs_class_names(options[name])]
    partitions = job.write.records_partitions()
    written = records | "WriteRecords" >> WriteRecords(storage.join(out, RECORDS_OUTPUT), store, partitions, collect_classes=bool(numbered))
    ledgers += written[LEDGER]
    if numbered:  # writers that number classes read records/ back, with every class name known
        reread = written[PUBLISHED] | "RereadRecords" >> RereadRecords(store, job.read.batch_size, partitions)
    if job.find_duplicates:  # a shuffle of one key per record: opt-in, memory grows with the input
        # the records as the sources hold them, before a duplicate policy folds any
        checked["main"] | "FindDuplicates" >> FindDuplicates(storage.join(out, "stats", "duplicates.parquet"), store)
    refusals = []
    references = References(job.write.uri_map, job.write.relative_output)
    for name in job.write.formats:
        source, names = (reread["records"], reread[CLASSES]) if name in numbered else (records, None)
        manifests = source | f"WriteManifests[{name}]" >> WriteManifests(
            storage.join(out, "manifests", name), name, options[name], store, job.write.manifest_partitions(), class_names=names,
            label_attributes=tuple(job.write.label_attribute),
            mask_policy=mask_policy(job),
            references=references,
            published_root=storage.join(job.output, "manifests", name),
            copies=ImageCopies(store, storage.join(job.output, "manifests", name), allowed_roots(job), job.validate.io_concurrency, job.read.relative_to) if job.write.copy_images else None,
        )
        ledgers += manifests[LEDGER]
        refused = tuple(manifests[errors.DEAD_LETTERS]) | f"WriteRefused[{name}]" >> WriteDeadLetters(
            storage.join(out, refused_output(name)), store, output=refused_output(name)
        )
        ledgers += refused[LEDGER]
        refusals += manifests[errors.DEAD_LETTERS]

    all_letters = tuple(dead_letters + refusals) | "AllDeadLetters" >> beam.Flatten()
    (records, all_letters) | "ComputeStatistics" >> ComputeStatistics(storage.join(out, "stats"), store)
    read[BATCHES] | "ProgressLines" >> CountProgress("lines", progress_dir)
    records | "ProgressRecords" >> CountProgress("records", progress_dir)
    for stage, letters_of_stage in stage_letters:  # fused with their stage
        letters_of_stage | f"ProgressDeadLetters[{stage}]" >> CountProgress("dead_letters", progress_dir)
    letters = tuple(dead_letters) | "WriteDeadLetters" >> WriteDeadLetters(storage.join(out, ERRORS_OUTPUT), store)
    ledgers += letters[LEDGER]
    tuple(ledgers) | "WriteCounters" >> WriteCounters(storage.join(out, COUNTERS_FILE), store)
    return {"records": records, "record_stages": record_stages(job), "outputs": output_names(job)}


# the spill files of the join by image id (transforms/spill.py), in the run's staging folder
JOIN_FOLDER = ".labelbeam-join"


def _remove_spill_files(job: JobConfig, staging: str) -> None:
    """The join's spill files (the COCO input's size again) go when the graph is done, whatever
    its outcome: a failed run's staging folder is kept for a look, without them."""
    fs, path = job.storage_config().fs(storage.join(staging, JOIN_FOLDER))
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except OSError:  # the staging folder goes with the run anyway
        pass


def reads_documents(job: JobConfig, inputs: tuple[tuple[str, int], ...] | None, store: storage.Storage) -> tuple[int, bool]:
    """(bytes of input the graph joins as documents read in parts (COCO), 0 for none; whether
    every input is one). --format names the format; detected, each listed `.json` input's head
    is read (64 KB: a COCO document's first member, or a results file's first elements), so a
    job of COCO files alone needs no Partition and Flatten around the join; listed by the graph
    (no launch listing), a pattern that may match a `.json` file counts as 1 GB of documents."""
    if job.read.format is not None:
        if not get_format(job.read.format).joins_documents:
            return 0, False
        return ((sum(size for _, size in inputs) or 1) if inputs is not None else 1 << 30), True
    if not any(get_format(name).joins_documents for name in input_format_names()):
        return 0, False
    if inputs is None:
        return ((1 << 30) if any(name.endswith((".json", "*", "/")) for name in job.input) else 0), False
    candidates = [(url, size) for url, size in inputs if url.endswith(".json")]
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(_HEAD_READS, len(candidates) or 1)) as pool:  # a head a request: in parallel
        flags = list(pool.map(lambda pair: _joined_document(pair[0], store), candidates))
    joined = [pair for pair, flag in zip(candidates, flags) if flag]
    return (sum(size for _, size in joined) or (1 if joined else 0)), len(joined) == len(inputs)


_HEAD_READS = 16  # heads of `.json` inputs read at once at launch (one small request each)


def _joined_document(url: str, store: storage.Storage) -> bool:
    """Whether a file's head is a document a format joins (unreadable: the read stage reports it)."""
    try:
        with store.open(url, "rb") as handle:
            head = handle.read(64 << 10)
    except Exception:  # noqa: BLE001 - an unreadable input is the read stage's dead letter
        return True
    name = document_format(head) or detect_format(sample_records(head, sniff(head, complete=False), complete=False))
    return name is not None and get_format(name).joins_documents


def output_names(job: JobConfig) -> list[str]:
    formats = job.write.formats
    return [RECORDS_OUTPUT, *(manifests_output(name) for name in formats), ERRORS_OUTPUT, *(refused_output(name) for name in formats)]


def _check_output(job: JobConfig, root: publish.OutputRoot, inputs: tuple[tuple[str, int], ...]) -> None:
    """An output folder that may be written: never one that holds the job's own inputs."""
    folder = root.url.rstrip("/") + "/"
    for url, _ in inputs:
        absolute = storage.to_url(*storage.filesystem(url, job.storage))
        if absolute.startswith(folder) or url.startswith(folder):
            raise ConfigError(f"input {storage.redact_url(url)} is inside --output {storage.redact_url(job.output)}; write somewhere else")
    if root.fs.exists(root.path) and not root.fs.isdir(root.path):
        raise ConfigError(f"--output {storage.redact_url(job.output)} is a file, not a folder")
    foreign = root.foreign_files()
    if foreign:  # never replaced, never mixed into a published dataset: the user moves them
        listed = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ConfigError(
            f"--output {storage.redact_url(job.output)} holds files no labelbeam run wrote, inside the folders a run "
            f"publishes: {listed}; move them elsewhere or choose another --output"
        )
    if root.has_outputs() and not job.overwrite:
        raise ConfigError(f"--output {storage.redact_url(job.output)} holds the outputs of an earlier run; pass --overwrite to replace them")


def run(argv: list[str] | None = None, exit_on_signal: Callable[[int], None] | None = None) -> int:
    """Launch the job; returns the process exit code (see the module docstring).

    `exit_on_signal(code)` (the CLI's): SIGINT / SIGTERM end the process from the signal
    handler once the lock is released, whatever the runner is doing; without it the run
    raises and returns the code when the runner gives control back."""
    argv = list(sys.argv[1:] if argv is None else argv)
    locks = contextlib.ExitStack()  # the output's lock (and, incremental, the root's)
    planned = None
    try:
        launch = parse_launch(argv)
        chosen = runners.choose_default(launch.pipeline_options)
        if chosen and not launch.job.quiet:
            print(chosen, file=sys.stderr)
        runners.prepare(launch.pipeline_options)
        pipeline = runners.new_pipeline(launch.pipeline_options)
        job = launch.job
        inputs = launch.inputs  # listed once, at launch: every step below reads this list
        if runners.is_dry_run(launch.pipeline_options):  # nothing is read, locked, run or published
            build(pipeline, job, storage.join(job.output, ".labelbeam", "staging", "dry-run"), inputs=inputs)
            print(runners.dry_run(pipeline, launch.pipeline_options))
            return report.EXIT_OK
        run_id = publish.new_run_id()
        if job.incremental:
            planned = incremental.plan(job, inputs)
            locks.enter_context(publish.OutputRoot(planned.root, job.storage_config()).acquire(run_id))
            if not planned.fingerprints:
                locks.close()
                print(f"labelbeam: nothing new to read: {planned.skipped} input file(s) unchanged since a successful run read them")
                return report.EXIT_OK
            job = planned.job
            inputs = tuple((url, size) for url, size in inputs if url in planned.fingerprints)
        root = publish.OutputRoot(job.output, job.storage_config())
        _check_output(job, root, inputs)
        locks.enter_context(root.acquire(run_id))
    except (ConfigError, publish.LockHeld, runners.RunnerRefused) as exc:
        locks.close()
        print(f"labelbeam: error: {exc}", file=sys.stderr)
        return report.EXIT_CONFIG
    except Exception as exc:  # noqa: BLE001 - storage failing at launch is one line, not a traceback
        locks.close()
        reason = storage.failure_reason(exc)
        if reason is None:
            raise
        print(f"labelbeam: error: storage failed at launch ({reason}): {_detail(exc)}; check the endpoint, credentials and --storage_options", file=sys.stderr)
        return report.EXIT_CONFIG
    step = ["starting"]  # what the run was doing, for a failure's one line

    def stop_now(exc: interrupts.Interrupted) -> None:
        code = _interrupted(exc, root, run_id, locks)
        exit_on_signal(code)

    signals = interrupts.Interrupts(stop_now if exit_on_signal else None)
    try:
        with signals:
            code = _run_locked(job, launch, pipeline, root, run_id, planned, signals, step, inputs)
    except KeyboardInterrupt as exc:  # SIGINT (Python's own handler while the job runs) or SIGTERM
        code = _interrupted(interrupts.as_interrupted(exc), root, run_id, locks)
    except Exception as exc:  # noqa: BLE001 - after launch every failure is exit 5 in one line
        code = _failed(exc, step[0], root)
    finally:
        locks.close()  # releasing never raises: a lock left behind is taken over once stale
    return code


def _run_locked(job, launch, pipeline, root: publish.OutputRoot, run_id: str, planned, signals, step: list[str], inputs) -> int:
    """The run, once the output's lock is held: job, report, publish."""
    step[0] = "completing an interrupted publish"
    recovered = root.recover()
    if recovered:
        print(f"labelbeam: completed the interrupted publish of run {recovered}", file=sys.stderr)
    step[0] = "clearing abandoned staging folders"
    root.clean_abandoned()
    staging = root.staging(run_id)
    started = time.time()
    shown = progress.Progress(enabled=not job.quiet and progress.is_local(launch.pipeline_options), inputs=inputs, store=job.storage_config())
    step[0] = "building the job"
    graph = build(pipeline, job, staging, shown.folder, inputs)
    step[0] = "running the job"
    with shown:
        state = runners.run_to_completion(pipeline)
    signals.check_received()  # a runner may have turned the interrupt into a failed bundle
    finished = time.time()
    _remove_spill_files(job, staging)
    step[0] = "writing the run report"
    summary = report.write_run_report(
        job, launch.beam_options(), staging, run_id, graph["record_stages"], graph["outputs"], started, finished, state
    )
    code = summary["exit_code"]
    with signals.deferred():  # a publish, once begun, is completed before a signal is acted on
        if code in (report.EXIT_OK, report.EXIT_ERROR_RATE) or (code == report.EXIT_INCOMPLETE and job.allow_incomplete):
            step[0] = "publishing"
            try:
                root.publish(run_id, success=code == report.EXIT_OK)
            except Exception as exc:  # noqa: BLE001 - a storage fault mid-publish: the journal lets the next run finish it
                if not getattr(root, "published", False):
                    print(report.describe(summary, staging))
                    raise
                print(f"labelbeam: warning: published, but clearing the previous output failed ({_detail(exc)}); "
                      "the next run on this output clears it", file=sys.stderr)
            where = job.output
        else:
            step[0] = "keeping the staged outputs of a failed run"
            where = root.keep_failed(run_id)
        print(report.describe(summary, where))
    if signals.received:
        print(f"labelbeam: {signals.received} arrived while publishing; the publish was completed first", file=sys.stderr)
    if planned is not None and code == report.EXIT_OK:
        step[0] = "recording which input files this run read (published with _SUCCESS; the next run reads them again)"
        incremental.commit(planned)
    return code


def _detail(exc: BaseException) -> str:
    return storage.redact_url(f"{type(exc).__name__}: {exc}".splitlines()[0])[:300]


def _interrupted(exc: "interrupts.Interrupted", root: publish.OutputRoot, run_id: str, locks: contextlib.ExitStack) -> int:
    """SIGINT / SIGTERM before publishing: the run stops, nothing is published, the previous
    output stays as it was, the lock is released."""
    runners._end_worker_processes()  # the local multi-process runner's workers, if any
    try:
        root.discard(run_id)
    except Exception:  # noqa: BLE001 - the next run clears an abandoned staging folder
        pass
    locks.close()
    print(f"labelbeam: interrupted by {exc.name}: nothing published, the previous output is as it was; exit {exc.code}", file=sys.stderr)
    return exc.code


def _failed(exc: BaseException, step: str, root: publish.OutputRoot) -> int:
    """A failure after launch (storage, disk full, a bug): exit 5 and one line that says what
    was published. A storage failure prints no traceback; anything else is a bug and keeps it."""
    reason = storage.failure_reason(exc)
    if reason is None:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    try:
        success = root.fs.exists(root._p(storage.join(root.url, publish.SUCCESS)))
        state = "_SUCCESS is there" if success else "no _SUCCESS"
    except Exception:  # noqa: BLE001 - storage may be failing still
        state = "whether _SUCCESS is there could not be checked"
    if getattr(root, "published", False):
        after = f"the output itself was published ({state})"
    elif step == "publishing":
        after = f"publishing did not complete ({state}); the next run on this output completes it first"
    else:
        after = f"nothing was published: the previous output, if any, is as it was ({state}); the next run clears this run's staging folder"
    print(f"labelbeam: error: {step} failed ({reason or 'bug'}): {_detail(exc)}; {after}; exit {report.EXIT_FAILED}", file=sys.stderr)
    return report.EXIT_FAILED


if __name__ == "__main__":
    from pipelines.cli import main

    main()
