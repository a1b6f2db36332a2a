"""Peak memory of the whole process tree of a labelbeam run, at growing input sizes.

    python -m benchmarks.peak_rss [--sizes 1,4,10] [--config configs/local.yaml] [--runs 1]
                                  [--label-studio-gb 1.0] [--data /tmp/labelbeam-bench]

For each size factor N it generates (once, reused) N x 1,000,000 synthetic Lookout for Vision
lines (425 MB per 1x; masks point at a missing local folder, so the mask checks run without a
cloud account), runs the job in a child process with the given config, and samples every 0.1 s
the resident memory of the child and every process below it (the runner's SDK workers): the
peak of the sum is what the machine must have. It then counts the rows in records/ from the
Parquet footers and checks them against run.json's landed count and the input. With
--label-studio-gb it does the same for a Label Studio JSON-array export of that size (one file,
one shard: the array is streamed).

Prints one Markdown table row per run (docs/benchmarks.md quotes them).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import psutil
import pyarrow.dataset as ds

from benchmarks.synthetic import write_manifest

LINES_PER_X = 1_000_000


class TreeSampler:
    """Samples the RSS of a process and all its descendants; keeps the peaks."""

    def __init__(self, pid: int, interval: float = 0.1):
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_total = 0
        self.peak_single = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                tree = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                break
            sizes = []
            for process in tree:
                try:
                    sizes.append(process.memory_info().rss)
                except psutil.Error:
                    pass
            if sizes:
                self.peak_total = max(self.peak_total, sum(sizes))
                self.peak_single = max(self.peak_single, max(sizes))
                self.peak_processes = max(self.peak_processes, len(sizes))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_measured(argv: list[str], log: str | None = None, cwd=None, env: dict | None = None, reap: Callable[[], None] | None = None) -> dict:
    """Runs argv to completion, its output to `log` (a temporary file when None): exit code,
    wall seconds, CPU seconds (user + system) of the child and of every process it or `reap`
    waited for (the kernel's accounting of ended children), peak RSS of the process tree and of
    its largest process (sampled), and the last lines it printed. `reap` runs after the child
    ends: a subreaper waits there for the orphans the child left, so their CPU counts too."""
    cpu_before = _children_cpu()
    started = time.perf_counter()
    with open(log, "w+b") if log else tempfile.TemporaryFile() as output:
        child = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        with TreeSampler(child.pid) as sampler:
            _, status, _ = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        if reap is not None:
            reap()
        output.seek(max(output.seek(0, os.SEEK_END) - 4096, 0))
        tail = output.read().decode(errors="replace").strip().splitlines()[-3:]
    return {
        "exit": os.waitstatus_to_exitcode(status),
        "wall": wall,
        "cpu": _children_cpu() - cpu_before,
        "peak_tree_mb": sampler.peak_total / 2**20,
        "peak_process_mb": sampler.peak_single / 2**20,
        "processes": sampler.peak_processes,
        "tail": tail,
    }


def measure(argv: list[str], out: Path) -> dict:
    started = time.time()
    child = subprocess.Popen([sys.executable, "-m", "pipelines.normalize_manifests", *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    with TreeSampler(child.pid) as sampler:
        printed, _ = child.communicate()
    seconds = time.time() - started
    summary = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
    rows = ds.dataset(out / "records", format="parquet", partitioning="hive").count_rows() if (out / "records").exists() else 0
    return {
        "exit": child.returncode,
        "seconds": seconds,
        "peak_tree_mb": sampler.peak_total / 2**20,
        "peak_process_mb": sampler.peak_single / 2**20,
        "processes": sampler.peak_processes,
        "rows": rows,
        "landed": summary.get("outputs", {}).get("records", {}).get("landed"),
        "lines": summary.get("totals", {}).get("lines"),
        "tail": printed.decode(errors="replace").strip().splitlines()[-1:] if child.returncode else [],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,4,10", help="size factors, 1x = 1,000,000 lines")
    parser.add_argument("--config", default="configs/local.yaml")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--label-studio-gb", type=float, default=0.0)
    parser.add_argument("--data", default="/tmp/labelbeam-bench")
    parser.add_argument("--extra", default="", help="more job flags, space separated")
    args = parser.parse_args()
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    cases = []
    for factor in [int(f) for f in args.sizes.split(",") if f]:
        manifest = data / f"lookout-{factor}x.manifest"
        if not manifest.exists():
            write_manifest(str(manifest), factor * LINES_PER_X, mask_prefix=str(data / "no-such-masks"))
        cases.append((f"lookout {factor}x", manifest, factor * LINES_PER_X))
    if args.label_studio_gb:
        from benchmarks.label_studio_array import generate

        export = data / "label_studio_export.json"
        generate(export, args.label_studio_gb)
        cases.append((f"label_studio {export.stat().st_size / 2**30:.2f} GB array", export, None))
    print(f"config {args.config} {args.extra}")
    print("| input | size | run | exit | wall | peak RSS, process tree | largest process | processes | rows in records/ | run.json landed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, path, lines in cases:
        for attempt in range(1, args.runs + 1):
            out = data / "out"
            argv = ["--config", args.config, "--input", str(path), "--output", str(out), "--overwrite", *args.extra.split()]
            m = measure(argv, out)
            ok = m["exit"] == 0 and m["rows"] == m["landed"] and (lines is None or m["lines"] == lines)
            print(
                f"| {name} | {path.stat().st_size / 2**20:,.0f} MB | {attempt} | {m['exit']} | {m['seconds']:.1f} s | "
                f"{m['peak_tree_mb']:,.0f} MB | {m['peak_process_mb']:,.0f} MB | {m['processes']} | {m['rows']:,} | "
                f"{m['landed']:,} |{'' if ok else ' CHECK FAILED ' + ' '.join(m['tail'])}",
                flush=True,
            )


if __name__ == "__main__":
    main()
