"""The minimal graph once reported to lose rows on the FnApiRunner with several workers.

    python -m benchmarks.runner_loss_repro [--elements 1020] [--kb 400] [--modes in_memory,multi_threading,multi_processing]

A large main input (N elements of K KB each) through `beam.Map(f, side=AsDict(...))`, counted
at the end by a CombineGlobally; prints, per running mode, how many elements went in and how
many came out. docs/runners.md quotes the results.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions


def _payload(i: int, kb: int) -> tuple[int, bytes]:
    return i, os.urandom(16) * (kb * 64)


def run_mode(mode: str, elements: int, kb: int) -> int:
    flags = ["--runner=FnApiRunner"]
    if mode != "in_memory":
        flags += [f"--direct_running_mode={mode}", "--direct_num_workers=2"]
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "count")
        with beam.Pipeline(options=PipelineOptions(flags)) as p:
            side = p | "Side" >> beam.Create([(i, i * 2) for i in range(100)])
            (
                p
                | "Seeds" >> beam.Create(range(elements))
                | "Big" >> beam.Map(_payload, kb)
                | "WithSide" >> beam.Map(lambda kv, table: (kv[0], len(kv[1]) + table.get(kv[0] % 100, 0)), table=beam.pvalue.AsDict(side))
                | "Count" >> beam.combiners.Count.Globally()
                | "Write" >> beam.Map(lambda n: open(out, "w").write(str(n)))
            )
        with open(out) as handle:
            return int(handle.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--elements", type=int, default=1020)
    parser.add_argument("--kb", type=int, default=400)
    parser.add_argument("--modes", default="in_memory,multi_threading,multi_processing")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    for mode in args.modes.split(","):
        for attempt in range(args.repeat):
            started = time.time()
            got = run_mode(mode, args.elements, args.kb)
            print(f"{mode:17} run {attempt + 1}: {args.elements} in, {got} out ({time.time() - started:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
