"""CPU and wall time of the record stages' cores on normalized batches, in process, no runner.

    python -m benchmarks.cores_throughput [--lines 200000] [--repeats 3] [--workdir DIR]

A generated Lookout for Vision manifest (30% of lines reference a mask on s3://example-bucket,
outside the manifest's own root, as in benchmarks/normalize_throughput.py) is cut into batches
of 4,096 lines and normalized once, untimed. Then, per repeat, each stage's DoFn / CombineFn
runs over every batch as a runner would call it:

- validate: ValidateRecords' DoFn (profile `none`).
- check_files: CheckFiles' DoFn with the job's default settings (masks checked, allowed roots
  = the manifest's own folder): every mask reference is outside the roots, so no file opens.
- statistics: the statistics CombineFn, add_input per batch, then extract_output.

Medians of the repeats, CPU seconds (time.process_time: every thread of this process) beside
wall. docs/benchmarks.md keeps the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from benchmarks.synthetic import write_manifest
from transforms import storage
from transforms.checks import profiles
from transforms.file_checks import FileCheckConfig
from transforms.schema import RawBatch
from transforms.stages.check_files import _CheckFilesFn
from transforms.stages.normalize import RecordNormalizer
from transforms.stages.stats import StatisticsCombineFn
from transforms.stages.validate import _ValidateRecordsFn

BATCH_LINES = 4096


def normalized_batches(manifest: str) -> list:
    normalizer = RecordNormalizer()
    batches, offset = [], 0
    raw = RawBatch(manifest, "sagemaker", 0)
    with open(manifest, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            raw.lines.append(number)
            raw.offsets.append(offset)
            raw.raws.append(line.rstrip(b"\n"))
            offset += len(line)
            if len(raw.raws) == BATCH_LINES:
                batches.append(normalizer.normalize(raw)[0])
                raw = RawBatch(manifest, "sagemaker", 0)
    if raw.raws:
        batches.append(normalizer.normalize(raw)[0])
    return batches


def _run_fn(fn, batches) -> list:
    fn.setup() if hasattr(fn, "setup") else None
    out = []
    for batch in batches:
        out.extend(piece for piece in fn.process(batch) if not hasattr(piece, "tag"))
    return out


def cases(manifest: str, batches: list) -> dict:
    checks = FileCheckConfig.from_values({}, allowed_roots=())
    combine = StatisticsCombineFn()

    def statistics_case():
        accumulator = combine.create_accumulator()
        for batch in batches:
            accumulator = combine.add_input(accumulator, batch)
        return combine.extract_output(accumulator)

    return {
        "validate": lambda: _run_fn(_ValidateRecordsFn(profiles.get_profile("none")), batches),
        "check_files": lambda: _run_fn(_CheckFilesFn(checks, storage.Storage()), batches),
        "statistics": statistics_case,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="labelbeam-cores-")
    os.makedirs(workdir, exist_ok=True)
    manifest = os.path.join(workdir, f"lookout-{args.lines}.manifest")
    if not os.path.exists(manifest):
        write_manifest(manifest, args.lines)
    batches = normalized_batches(manifest)
    print(f"input: {args.lines} lines in {len(batches)} batches, cpus={os.cpu_count()}")
    timed = cases(manifest, batches)
    walls: dict[str, list[float]] = {name: [] for name in timed}
    cpus: dict[str, list[float]] = {name: [] for name in timed}
    for repeat in range(args.repeats):
        for name, case in timed.items():
            wall, cpu = time.perf_counter(), time.process_time()
            case()
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(time.process_time() - cpu)
            print(f"  repeat {repeat + 1}: {name}: {walls[name][-1]:.2f} s wall, {cpus[name][-1]:.2f} CPU s, load {os.getloadavg()[0]:.1f}", flush=True)
    print("\n| stage core | median wall | median CPU s | CPU us / line |\n|---|---|---|---|")
    for name in timed:
        cpu = statistics.median(cpus[name])
        print(f"| {name} | {statistics.median(walls[name]):.2f} s | {cpu:.2f} | {cpu / args.lines * 1e6:.1f} |")


if __name__ == "__main__":
    main()
