"""Wall time of the job against honest single-process baselines, measured in the same run.

    python -m benchmarks.normalize_throughput --lines 1000000 [--repeats 3] [--cases floor,inproc,...]

Cases (all on the same generated Lookout for Vision manifest, medians over repeats):

- floor: the least a Python program must do. One process: orjson.loads per line, pick the
  fields of this one known shape, build Arrow columns, write one Parquet file. It knows the
  shape in advance and checks nothing; the job must beat it with two workers.
- pyarrow_json: pyarrow.json.read_json (Arrow's multi-threaded C++ reader) + one Parquet file:
  the physical reference of what parsing these bytes costs.
- plugin_loop: the same format plugin as the job, in one process, no Beam (orjson + plugin +
  from_pylist + split + hive Parquet): what the job's per-record Python costs without Beam.
- inproc_plugin: the real CLI in process with the columnar fast path taken out: the job as it
  was before its fast paths.
- inproc / mp2 / prism: the real CLI on the FnApiRunner in process, on the FnApiRunner with two
  worker processes, and on the PrismRunner.
- inproc_checks: inproc with the file checks on (every other case turns them off): the manifest's
  mask references lie outside its own root, so this is what CheckFiles costs on rows it opens
  nothing for.
- inproc_fixed / mp2_fixed: the same job on the first 1,000 lines: what a run costs whatever its
  size (graph construction, runner and worker start-up, statistics, report, publishing), which
  the per-line work adds to.

Ratios are wall time over the first case's (lower is faster). CPU seconds (this process and
its worker processes) are printed too: on a shared machine they move less than wall time.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.json as pj
import pyarrow.parquet as pq

from benchmarks.floor import floor
from benchmarks.synthetic import write_manifest
from pipelines.normalize_manifests import run
from transforms import schema
from transforms.formats.base import ManifestFormat, ParseContext, get_format
from transforms.formats.sagemaker import SageMakerFormat
from transforms.output_files import _ParquetFile
from transforms.partitions import partition_batch
from transforms.stages.split import DEFAULT_RATIOS, SplitAssigner


def pyarrow_json(manifest: str, out: str) -> int:
    """Arrow's C++ JSON reader (its own threads) + one Parquet file."""
    os.makedirs(out, exist_ok=True)
    table = pj.read_json(manifest, read_options=pj.ReadOptions(block_size=16 << 20))
    pq.write_table(table, os.path.join(out, "arrow.parquet"), compression="zstd")
    return table.num_rows


def plugin_loop(manifest: str, out: str, batch_lines: int = 1000) -> int:
    """orjson + the job's plugin + pyarrow, one process: the same Parquet rows as records/."""
    fmt = get_format("sagemaker")
    ctx = ParseContext(uri=manifest, base_uri=os.path.dirname(manifest))
    splitter = SplitAssigner(DEFAULT_RATIOS)
    writers: dict[str, _ParquetFile] = {}
    total, rows, offset = 0, [], 0
    with open(manifest, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                for index, row in enumerate(fmt.parse(orjson.loads(line), ctx).rows):
                    row["record_id"] = schema.record_id(manifest, offset, index)
                    row["source"] = {"uri": manifest, "line": number, "offset": offset, "format": "sagemaker"}
                    rows.append(row)
            offset += len(line)
            if len(rows) >= batch_lines:
                total += _write(rows, splitter, writers, out)
                rows = []
    total += _write(rows, splitter, writers, out)
    for writer in writers.values():
        writer.close()
        writer.handle.close()
    return total


def _write(rows, splitter, writers, out) -> int:
    if not rows:
        return 0
    batch = splitter.assign_batch(schema.rows_to_batch(rows))
    for partition, piece in partition_batch(batch, ("split", "task")):
        if partition not in writers:
            os.makedirs(os.path.join(out, partition), exist_ok=True)
            writers[partition] = _ParquetFile(open(os.path.join(out, partition, "part-0.parquet"), "wb"))
        writers[partition].write(piece)
    return batch.num_rows


_FAST_PATHS = SageMakerFormat.fast_paths


def _pipeline(manifest: str, out: str, runner: str, extra: list[str], fast: bool = True, checks: bool = False) -> int:
    """The real CLI; fast=False takes the format's fast paths out (in process only: a worker
    process imports its own copy of the module)."""
    if not fast:
        SageMakerFormat.fast_paths = ManifestFormat.fast_paths  # the reference path alone
    try:
        code = run(["--input", manifest, "--output", out, "--overwrite", f"--runner={runner}", f"--validate_masks={str(checks).lower()}", *extra])
    finally:
        SageMakerFormat.fast_paths = _FAST_PATHS
    assert code == 0
    return ds.dataset(os.path.join(out, "records"), partitioning="hive").count_rows()


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (worker processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


TINY_LINES = 1_000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default="floor,pyarrow_json,plugin_loop,inproc,mp2")
    parser.add_argument("--workdir", default=None, help="where the manifest and outputs go (default: a new temp dir)")
    parser.add_argument("--shard_size", type=int, default=0, help="bytes per shard (default: size/16, at least 1 MiB)")
    args = parser.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="labelbeam-bench-")
    os.makedirs(workdir, exist_ok=True)
    manifest = os.path.join(workdir, f"lookout-{args.lines}.manifest")
    if not os.path.exists(manifest):
        write_manifest(manifest, args.lines)
    size = os.path.getsize(manifest)
    print(f"input: {args.lines} lines, {size / 1e6:.0f} MB, cpus={os.cpu_count()}, python {sys.version.split()[0]}, pyarrow {pa.__version__}")
    shard = f"--shard_size={args.shard_size or max(size // 16, 1 << 20)}"
    tiny = os.path.join(workdir, f"lookout-{TINY_LINES}-of-{args.lines}.manifest")
    if not os.path.exists(tiny):
        with open(manifest, "rb") as source, open(tiny, "wb") as head:
            head.writelines(itertools.islice(source, TINY_LINES))
    two_workers = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    available = {
        "floor": ("floor: 1 process, orjson + known fields + Arrow + Parquet", lambda out: floor(manifest, out)),
        "pyarrow_json": ("pyarrow.json.read_json + Parquet (C++, threads)", lambda out: pyarrow_json(manifest, out)),
        "plugin_loop": ("1 process, orjson + same plugin + from_pylist", lambda out: plugin_loop(manifest, out)),
        "inproc_plugin": (
            "labelbeam in process, fast path off (plugin only)",
            lambda out: _pipeline(manifest, out, "FnApiRunner", [shard], fast=False),
        ),
        "inproc": ("labelbeam, FnApiRunner in process", lambda out: _pipeline(manifest, out, "FnApiRunner", [shard])),
        # The same with the file checks on (the default): every mask reference is on
        # s3://example-bucket, outside the manifest's own root, so CheckFiles opens nothing.
        "inproc_checks": (
            "labelbeam in process, file checks on",
            lambda out: _pipeline(manifest, out, "FnApiRunner", [shard], checks=True),
        ),
        "mp2": (
            "labelbeam, FnApiRunner multi_processing x2",
            lambda out: _pipeline(manifest, out, "FnApiRunner", [shard, *two_workers]),
        ),
        "prism": ("labelbeam, PrismRunner", lambda out: _pipeline(manifest, out, "PrismRunner", [shard])),
        # The job's fixed cost (graph, runner, workers, report, publishing) on the same runners.
        "inproc_fixed": (f"the same in process, first {TINY_LINES:,} lines only", lambda out: _pipeline(tiny, out, "FnApiRunner", [])),
        "mp2_fixed": (f"the same with two workers, first {TINY_LINES:,} lines only", lambda out: _pipeline(tiny, out, "FnApiRunner", two_workers)),
    }
    cases = {key: available[key] for key in args.cases.split(",")}
    timings: dict[str, list[float]] = {key: [] for key in cases}
    cpu_times: dict[str, list[float]] = {key: [] for key in cases}
    for repeat in range(args.repeats):
        for key, (name, case) in cases.items():
            out = os.path.join(workdir, "out")
            shutil.rmtree(out, ignore_errors=True)
            started, cpu = time.perf_counter(), _cpu_seconds()
            rows = case(out)
            timings[key].append(time.perf_counter() - started)
            cpu_times[key].append(_cpu_seconds() - cpu)
            assert rows == (TINY_LINES if key.endswith("_fixed") else args.lines), (name, rows)
            print(f"  repeat {repeat + 1}: {name}: {timings[key][-1]:.2f}s wall, {cpu_times[key][-1]:.2f}s cpu, load {os.getloadavg()[0]:.1f}", flush=True)
    shutil.rmtree(os.path.join(workdir, "out"), ignore_errors=True)
    base = statistics.median(timings[next(iter(cases))])
    print(f"\n| run | median wall | records/s | vs {next(iter(cases))} | median CPU s (all processes) |\n|---|---|---|---|---|")
    for key, values in timings.items():
        median = statistics.median(values)
        rate = f"{args.lines / median:,.0f}" if not key.endswith("_fixed") else "-"
        print(f"| {cases[key][0]} | {median:.2f} s | {rate} | {median / base:.2f}x | {statistics.median(cpu_times[key]):.1f} |")
    if "inproc" in timings and "mp2" in timings:
        print(f"\ntwo workers vs in process: {statistics.median(timings['inproc']) / statistics.median(timings['mp2']):.2f}x faster")


if __name__ == "__main__":
    main()
