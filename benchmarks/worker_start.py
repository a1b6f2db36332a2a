"""What an SDK worker process imports before it does any work: Beam's part and labelbeam's.

    python -m benchmarks.worker_start [--repeats 5] [--workdir DIR]

Part of the job's fixed cost with worker processes (benchmarks/peers.py, row `fixed`): each
worker is a fresh interpreter that imports Beam's worker, then unpickles the stages it runs,
which imports their modules and whatever those import at module level.

1. Which modules: the job runs once on 1,000 Lookout for Vision lines with one worker process
   (`--direct_running_mode=multi_processing --direct_num_workers=1`) under
   PYTHONPROFILEIMPORTTIME; the worker's part of the log names the modules it imported once its
   Beam worker had started (labelbeam's stages and everything they pull in).
2. What they cost without the profiler (labelbeam's bytecode compiled first, as an installed
   package has it): in --repeats fresh interpreters, the CPU time
   (time.process_time) of importing Beam's worker as the job's workers do
   (pipelines/sdk_worker_main.py: Beam's `apache_beam.runners.worker.sdk_worker_main` without the
   optional cloud connectors and pandas), then of importing those modules; medians. Beam's worker
   imported in full is timed beside it. The heavy third-party modules among them
   (cv2, PIL, pycocotools, label_studio_sdk, ...) are listed: a worker that never uses them
   should not pay for them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from pipelines.beam_import import SKIPPED_WHILE_BEAM_IMPORTS

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("cv2", "PIL", "pycocotools", "label_studio_sdk", "pandas", "scipy", "duckdb", "defusedxml", "matplotlib")
_HEADER = "import time: self [us] | cumulative | imported package\n"


def worker_modules(work: Path) -> list[str]:
    """The top-level modules the job's one worker imported after Beam's worker started, in order."""
    from benchmarks.synthetic import write_manifest

    manifest = work / "lookout-1000.manifest"
    if not manifest.exists():
        write_manifest(str(manifest), 1000)
    argv = [sys.executable, "-m", "pipelines.cli", "--input", str(manifest), "--output", str(work / "out"), "--overwrite", "--quiet",
            "--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=1"]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the job failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    # One header per process: the job, the `sh` wrapper, the worker (the one that imports Beam's worker, not the job's CLI).
    parts = [p for p in done.stderr.split(_HEADER) if "apache_beam.runners.worker" in p and "pipelines.normalize_manifests" not in p]
    if not parts:
        raise SystemExit("no worker import log found")
    lines = [line.split("|", 2)[2] for line in parts[-1].splitlines() if line.startswith("import time:")]
    top = [name.strip() for name in lines if not name.startswith("  ")]  # one imported by another is counted in its parent
    # Beam's worker is imported first (pipelines/sdk_worker_main.py); what follows its last module is the job's.
    last_beam = max(i for i, name in enumerate(top) if name.startswith("apache_beam.runners.worker"))
    names = []
    skipped = lambda name: any(name == s or name.startswith(s + ".") for s in SKIPPED_WHILE_BEAM_IMPORTS)  # noqa: E731 - looked up, reported absent
    for name in top[last_beam + 1 :]:
        if not name.startswith("apache_beam") and not skipped(name) and name not in names:
            names.append(name)
    return names


_PROBE = """
import json, sys, time
t0 = time.process_time()
if sys.argv[2] == "full":
    import apache_beam.runners.worker.sdk_worker_main
else:
    from pipelines.sdk_worker_main import import_beam_worker
    import_beam_worker()
t1 = time.process_time()
before = set(sys.modules)
for name in sys.argv[1].split(","):
    try:
        __import__(name)
    except ImportError:  # probed by Beam or a library, absent here: the worker paid the same failed lookup
        pass
t2 = time.process_time()
print(json.dumps({"beam": t1 - t0, "labelbeam": t2 - t1, "loaded": sorted(set(sys.modules) - before)}))
"""


def probe(names: list[str], beam: str = "worker") -> dict:
    """`beam`: "worker" imports Beam's worker as the job's workers do (pipelines/sdk_worker_main.py,
    the optional cloud connectors skipped), "full" as `python -m apache_beam...sdk_worker_main` does."""
    done = subprocess.run([sys.executable, "-c", _PROBE, ",".join(names), beam], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="labelbeam-worker-start-"))
    work.mkdir(parents=True, exist_ok=True)
    # Bytecode for labelbeam's modules, as an installed package has it (see benchmarks/peers.py).
    subprocess.run([sys.executable, "-m", "compileall", "-q", "transforms", "pipelines"], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    names = worker_modules(work)
    print(f"the worker imported, once Beam's worker had started: {', '.join(names)}")
    runs = [probe(names) for _ in range(args.repeats)]
    full = statistics.median(probe(names, "full")["beam"] for _ in range(args.repeats))
    loaded = runs[-1]["loaded"]
    heavy = sorted({name.split(".")[0] for name in loaded if name.split(".")[0] in HEAVY})
    ours = sorted(name for name in loaded if name.split(".")[0] in ("transforms", "pipelines"))
    beam = statistics.median(r["beam"] for r in runs)
    own = statistics.median(r["labelbeam"] for r in runs)
    print(f"\n| import, fresh interpreter, median of {args.repeats} | CPU s |\n|---|---|")
    print(f"| Beam's worker as the job's workers import it (pipelines/sdk_worker_main.py) | {beam:.3f} |")
    print(f"| (Beam's worker in full: apache_beam.runners.worker.sdk_worker_main, every optional connector) | {full:.3f} |")
    print(f"| then the modules the worker imported for the job ({len(loaded)} modules, {len(ours)} of labelbeam) | {own:.3f} |")
    print(f"\nheavy third-party modules among them: {', '.join(heavy) or 'none'}")
    print(f"labelbeam modules: {', '.join(ours)}")


if __name__ == "__main__":
    main()
