"""Records/s of the job against a plain single-process loop writing the same Parquet rows.

    python -m benchmarks.normalize_throughput --lines 1000000 [--repeats 3]

The baseline is the least a Python program must do for the same output: read the lines, decode
them with orjson, turn them into canonical rows with the same format plugin, build Arrow
batches, assign splits and write hive-partitioned Parquet with pyarrow, in one process, no Beam.
The pipeline runs the real CLI on the DirectRunner's engine (FnApiRunner): in process, and with
two worker processes. All are measured in the same run on the same generated file; medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

import orjson
import pyarrow.dataset as ds
from transforms.split import DEFAULT_RATIOS, SplitAssigner
from transforms.write import _ParquetFile, partition_batch

from benchmarks.synthetic import write_manifest
from pipelines.normalize_manifests import run
from transforms import schema
from transforms.formats.base import ParseContext, get_format


def baseline(manifest: str, out: str, batch_lines: int = 1000) -> int:
    """orjson + the plugin + pyarrow, one process: the same Parquet rows (and row groups) as records/."""
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


def _pipeline(manifest: str, out: str, extra: list[str]) -> int:
    code = run(["--input", manifest, "--output", out, "--overwrite", "--runner=FnApiRunner", "--validate_masks=false", *extra])
    assert code == 0
    return ds.dataset(os.path.join(out, "records"), partitioning="hive").count_rows()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="labelbeam-bench-")
    manifest = os.path.join(workdir, "lookout.manifest")
    if not os.path.exists(manifest):
        write_manifest(manifest, args.lines)
    size = os.path.getsize(manifest)
    print(f"input: {args.lines} lines, {size / 1e6:.0f} MB, cpus={os.cpu_count()}")
    shard = f"--shard_size={max(size // 16, 1 << 20)}"
    cases = {
        "baseline loop (orjson + pyarrow, 1 process)": lambda out: baseline(manifest, out),
        "pipeline, FnApiRunner in process": lambda out: _pipeline(manifest, out, [shard]),
        "pipeline, FnApiRunner multi_processing x2": lambda out: _pipeline(
            manifest, out, [shard, "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
        ),
    }
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, case in cases.items():
            out = os.path.join(workdir, "out")
            shutil.rmtree(out, ignore_errors=True)
            started = time.perf_counter()
            rows = case(out)
            timings[name].append(time.perf_counter() - started)
            assert rows == args.lines, (name, rows)
    base = statistics.median(timings[next(iter(cases))])
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"{name:48s} median {median:7.2f}s  {args.lines / median:9.0f} records/s  {median / base:5.2f}x baseline time")


if __name__ == "__main__":
    main()
