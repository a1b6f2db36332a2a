"""The throughput table from one run: labelbeam beside the converter a user would run instead
(panlabel) and beside hand-written floor loops, in wall time, CPU seconds and peak memory.

    pip install -e ".[bench]"        # panlabel==0.7.0, psutil
    python -m benchmarks.peers [--scale 1.0] [--repeats 3] [--only gt_coco,lookout,...]
                               [--workdir DIR] [--json PATH]
    python -m benchmarks.peers --scale 0.02 --repeats 1        # a quick check, a few minutes

Rows (each reproducible alone with --only ROW; sizes at --scale 1, multiplied by --scale):

- gt_coco: 1,000,000 Ground Truth object-detection lines (4 boxes a line, 4 classes) ->
  records/ + COCO. labelbeam on configs/local.yaml (two worker processes) and in process,
  beside `panlabel convert --from sagemaker --to coco --allow-lossy` on the same file.
- lookout: 4,000,000 Lookout for Vision lines -> records/. labelbeam in process and on
  configs/local.yaml, beside the floor loop (one process: orjson + the known fields + Arrow +
  one Parquet file; benchmarks/floor.py).
- ls_gt: a Label Studio JSON-array export of 500,000 tasks x 8 rectangles -> a Ground Truth
  manifest. labelbeam on configs/local.yaml beside `panlabel convert --from label-studio --to
  sagemaker --allow-lossy`.
- fixed: the job's fixed cost, 1,000 Lookout lines (never scaled): configs/local.yaml beside in
  process. Reported apart: it is what a run costs whatever its size.
- masks: 5,000 palette PNG masks checked by the job, configs/local.yaml and in process (one
  worker), beside a bare Pillow loop (open, load, getcolors; benchmarks/floor.py).
- memory: peak RSS of the process tree on configs/local.yaml at 1x (1,000,000 Lookout lines)
  and 10x; rows in records/ checked against run.json and the input.

Every case is a child process, measured the same way: wall time; CPU seconds (user + system)
of the whole process tree, from the kernel's accounting of every descendant (this process
makes itself the subreaper of the tree, so worker processes that outlive their parent are
reaped, and counted, here); peak of the summed RSS of the tree and the largest process
(psutil, every 0.1 s, so a run much shorter than that is under-sampled). Each figure is a
median over --repeats. Every case's output is counted after its first run (records, images,
annotations, boxes) and a count that differs from the input is marked CHECK FAILED. Inputs are generated into
--workdir (default: a new temporary folder) and reused by later runs on the same folder.
Prints a Markdown table of the cases and one of the targets (each measured ratio, its bound,
met or not), and writes every measurement, each repeat included, as JSON (--json; default
WORKDIR/peers.json). labelbeam's modules are compiled to bytecode first, as an installed
package has them.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.peak_rss import run_measured

REPO = Path(__file__).resolve().parents[1]
LOCAL_CONFIG = str(REPO / "configs" / "local.yaml")
FIXED_LINES = 1_000

# Sizes at --scale 1 (the issue's).
SIZES = {
    "gt_coco": 1_000_000,  # Ground Truth detection lines
    "lookout": 4_000_000,  # Lookout for Vision lines
    "ls_gt": 500_000,  # Label Studio tasks
    "masks": 5_000,  # PNG masks
    "memory": 1_000_000,  # Lookout lines at 1x (and 10x that)
}
ROWS = ("gt_coco", "lookout", "ls_gt", "fixed", "masks", "memory")


# -- measuring one child process tree --------------------------------------------------------


def _become_subreaper() -> bool:
    """Orphaned descendants (worker processes killed or left behind when the job exits) are
    reparented to this process instead of init, so their CPU time is accounted here once
    reaped. Linux only; elsewhere a worker that outlives its parent is not counted."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _reap_orphans(deadline_s: float = 10.0) -> None:
    """Waits for every remaining child (orphans reparented here), so the kernel adds their CPU
    time to RUSAGE_CHILDREN; gives up on any still running after `deadline_s`."""
    ends = time.monotonic() + deadline_s
    while time.monotonic() < ends:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


def measure(argv: list[str], log: str, env: dict | None = None) -> dict:
    """Runs argv to completion: wall, CPU of the tree, peak RSS of the tree, exit code."""
    run = run_measured(argv, log, cwd=REPO, env=env, reap=_reap_orphans)
    return {
        "exit": run["exit"],
        "wall_s": run["wall"],
        "cpu_s": run["cpu"],
        "peak_rss_mb": run["peak_tree_mb"],
        "largest_mb": run["peak_process_mb"],
        "processes": run["processes"],
    }


# -- inputs (generated, reused) --------------------------------------------------------------


def _head(source: Path, target: Path, lines: int) -> None:
    partial = target.with_suffix(".partial")
    with open(source, "rb") as src, open(partial, "wb") as dst:
        for _, line in zip(range(lines), src):
            dst.write(line)
    os.replace(partial, target)


def lookout_input(work: Path, lines: int) -> Path:
    """Lookout for Vision lines (30% anomalies with a mask on s3://example-bucket, outside the
    manifest's root, so the file checks decide them without opening anything). A smaller file
    is the head of a larger one already generated: the generator is sequential."""
    path = work / f"lookout-{lines}.manifest"
    if not path.exists():
        larger = sorted((p for p in work.glob("lookout-*.manifest") if int(p.stem.split("-")[1]) > lines), key=lambda p: int(p.stem.split("-")[1]))
        if larger:
            _head(larger[0], path, lines)
        else:
            from benchmarks.synthetic import write_manifest

            write_manifest(str(path) + ".partial", lines)
            os.replace(str(path) + ".partial", path)
    return path


def detection_input(work: Path, lines: int) -> Path:
    path = work / f"detection-{lines}.manifest"
    if not path.exists():
        from benchmarks.coco_write import write_detection_manifest

        write_detection_manifest(str(path), lines)
    return path


def label_studio_input(work: Path, tasks: int) -> Path:
    from benchmarks.label_studio_convert import BOXES, write_export

    path = work / f"label-studio-{tasks}x{BOXES}.json"
    if not path.exists():
        write_export(str(path), tasks)
    return path


def masks_input(work: Path, count: int) -> tuple[Path, list[str]]:
    from benchmarks.masks_throughput import corpus

    folder = work / f"masks-{count}"
    folder.mkdir(parents=True, exist_ok=True)
    manifest, paths = corpus(str(folder), count)
    return Path(manifest), paths


# -- what each tool wrote ---------------------------------------------------------------------


def records_rows(out: Path) -> int:
    import pyarrow.dataset as ds

    return ds.dataset(out / "records", format="parquet", partitioning="hive").count_rows() if (out / "records").exists() else 0


def landed(out: Path) -> tuple[int | None, int | None]:
    summary = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
    return summary.get("outputs", {}).get("records", {}).get("landed"), summary.get("totals", {}).get("lines")


def coco_counts(paths: list[str]) -> dict:
    from benchmarks.coco_write import document_counts

    images, annotations = document_counts(paths)
    return {"files": len(paths), "images": images, "annotations": annotations}


def manifest_counts(paths: list[str]) -> dict:
    from benchmarks.label_studio_convert import count_manifest

    lines, boxes, _ = count_manifest(paths)
    return {"lines": lines, "boxes": boxes}


# -- cases ------------------------------------------------------------------------------------


def labelbeam(source: Path, out: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "--input", str(source), "--output", str(out), "--overwrite", "--quiet", *flags]


TWO_WORKERS = ("--config", LOCAL_CONFIG)
IN_PROCESS = ("--runner=FnApiRunner",)


def panlabel_bin() -> str | None:
    """panlabel's wheel puts the binary beside the interpreter, which may not be on PATH."""
    return shutil.which("panlabel", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))


@dataclass
class Case:
    key: str
    name: str
    argv: Callable[[Path], list[str]]  # out folder -> command
    check: Callable[[Path], tuple[dict, bool]]  # out folder -> (counts, as expected)
    needs: str | None = None  # why it cannot run here, or None
    runs: list[dict] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    ok: bool = True
    skipped: str | None = None


def _records_check(lines: int) -> Callable[[Path], tuple[dict, bool]]:
    def check(out: Path) -> tuple[dict, bool]:
        rows = records_rows(out)
        landed_rows, read_lines = landed(out)
        return {"records": rows, "landed": landed_rows, "lines": read_lines}, rows == landed_rows == read_lines == lines

    return check


def gt_coco_cases(work: Path, lines: int) -> list[Case]:
    source = detection_input(work, lines)

    def labelbeam_check(out: Path) -> tuple[dict, bool]:
        counts = coco_counts(sorted(glob.glob(str(out / "manifests" / "coco" / "**" / "*.json"), recursive=True)))
        counts["records"] = records_rows(out)
        return counts, counts["images"] == lines == counts["records"] and counts["annotations"] == 4 * lines

    def panlabel_check(out: Path) -> tuple[dict, bool]:
        counts = coco_counts([str(out / "coco.json")])
        return counts, counts["images"] == lines and counts["annotations"] == 4 * lines

    pan = panlabel_bin()
    return [
        Case("local", "labelbeam, configs/local.yaml (2 workers) -> records/ + COCO",
             lambda out: labelbeam(source, out, *TWO_WORKERS, "--output_format", "coco"), labelbeam_check),
        Case("inproc", "labelbeam, in process -> records/ + COCO",
             lambda out: labelbeam(source, out, *IN_PROCESS, "--output_format", "coco"), labelbeam_check),
        Case("panlabel", "panlabel convert --from sagemaker --to coco",
             lambda out: [pan or "panlabel", "convert", "--from", "sagemaker", "--to", "coco", "--allow-lossy",
                          "--input", str(source), "--output", str(_made(out) / "coco.json")],
             panlabel_check, needs=None if pan else "panlabel is not installed (.[bench])"),
    ]  # fmt: skip


def _made(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    return out


def lookout_cases(work: Path, lines: int) -> list[Case]:
    source = lookout_input(work, lines)

    def floor_check(out: Path) -> tuple[dict, bool]:
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(out / "floor.parquet").metadata.num_rows
        return {"records": rows}, rows == lines

    return [
        Case("floor", "floor loop: 1 process, orjson + known fields + Arrow + Parquet",
             lambda out: [sys.executable, "-m", "benchmarks.floor", "lookout", str(source), str(out)], floor_check),
        Case("inproc", "labelbeam, in process -> records/", lambda out: labelbeam(source, out, *IN_PROCESS), _records_check(lines)),
        Case("local", "labelbeam, configs/local.yaml (2 workers) -> records/", lambda out: labelbeam(source, out, *TWO_WORKERS), _records_check(lines)),
    ]  # fmt: skip


def ls_gt_cases(work: Path, tasks: int) -> list[Case]:
    from benchmarks.label_studio_convert import BOXES

    source = label_studio_input(work, tasks)

    def check(paths: Callable[[Path], list[str]]) -> Callable[[Path], tuple[dict, bool]]:
        def counted(out: Path) -> tuple[dict, bool]:
            counts = manifest_counts(paths(out))
            return counts, counts["lines"] == tasks and counts["boxes"] == tasks * BOXES

        return counted

    pan = panlabel_bin()
    return [
        Case("local", "labelbeam, configs/local.yaml (2 workers) -> Ground Truth manifest",
             lambda out: labelbeam(source, out, *TWO_WORKERS, "--output_format", "sagemaker"),
             check(lambda out: sorted(glob.glob(str(out / "manifests" / "sagemaker" / "**" / "*.manifest"), recursive=True)))),
        Case("panlabel", "panlabel convert --from label-studio --to sagemaker",
             lambda out: [pan or "panlabel", "convert", "--from", "label-studio", "--to", "sagemaker", "--allow-lossy",
                          "--input", str(source), "--output", str(_made(out) / "output.manifest")],
             check(lambda out: [str(out / "output.manifest")]), needs=None if pan else "panlabel is not installed (.[bench])"),
    ]  # fmt: skip


def fixed_cases(work: Path, _: int) -> list[Case]:
    source = lookout_input(work, FIXED_LINES)
    return [
        Case("inproc", f"labelbeam, in process, {FIXED_LINES:,} lines", lambda out: labelbeam(source, out, *IN_PROCESS), _records_check(FIXED_LINES)),
        Case("local", f"labelbeam, configs/local.yaml (2 workers), {FIXED_LINES:,} lines", lambda out: labelbeam(source, out, *TWO_WORKERS),
             _records_check(FIXED_LINES)),
    ]  # fmt: skip


def masks_cases(work: Path, count: int) -> list[Case]:
    manifest, _ = masks_input(work, count)

    def bare_check(out: Path) -> tuple[dict, bool]:
        seen = int((out / "count").read_text())
        return {"masks": seen}, seen == count

    checks = ("--validate_masks=true",)
    return [
        Case("bare", "bare Pillow loop: open, load, getcolors (1 process)",
             lambda out: [sys.executable, "-m", "benchmarks.floor", "masks", str(manifest), str(out)], bare_check),
        Case("local", "labelbeam, configs/local.yaml (2 workers), mask checks on",
             lambda out: labelbeam(manifest, out, *TWO_WORKERS, *checks), _records_check(count)),
        Case("inproc", "labelbeam, in process (1 worker), mask checks on",
             lambda out: labelbeam(manifest, out, *IN_PROCESS, *checks), _records_check(count)),
    ]  # fmt: skip


def memory_cases(work: Path, lines: int) -> list[Case]:
    cases = []
    for factor in (10, 1):  # the larger first: the smaller input is its head
        source = lookout_input(work, factor * lines)
    for factor in (1, 10):
        source = lookout_input(work, factor * lines)
        cases.append(Case(f"local_{factor}x", f"labelbeam, configs/local.yaml, {factor}x: {factor * lines:,} Lookout lines",
                          lambda out, source=source: labelbeam(source, out, *TWO_WORKERS), _records_check(factor * lines)))  # fmt: skip
    return cases


BUILDERS = {"gt_coco": gt_coco_cases, "lookout": lookout_cases, "ls_gt": ls_gt_cases, "fixed": fixed_cases, "masks": masks_cases, "memory": memory_cases}
TITLES = {
    "gt_coco": "Ground Truth object detection -> records/ + COCO",
    "lookout": "Lookout for Vision -> records/",
    "ls_gt": "Label Studio rectangles -> Ground Truth manifest",
    "fixed": "fixed cost",
    "masks": "mask PNGs checked",
    "memory": "memory, Lookout for Vision, configs/local.yaml",
}
UNITS = {"gt_coco": "lines", "lookout": "lines", "ls_gt": "tasks x 8 rectangles", "fixed": "lines", "masks": "PNGs", "memory": "lines at 1x"}


# -- the targets of the issue, as ratios of medians -------------------------------------------


def _median(case: Case, key: str) -> float | None:
    return statistics.median(r[key] for r in case.runs) if case.runs else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(row: str, cases: dict[str, Case]) -> list[dict]:
    """Each target of the issue for this row: what is compared, the measured figure, the bound
    (`strict`: the figure must be below it, else at most it)."""
    m = lambda key, what: _median(cases[key], what) if key in cases else None  # noqa: E731
    found: list[tuple[str, float | None, float | None, str, bool]] = []
    if row == "gt_coco":
        found += [("local wall / panlabel wall", _ratio(m("local", "wall_s"), m("panlabel", "wall_s")), 1.0, "x", False),
                  ("in process CPU / panlabel CPU", _ratio(m("inproc", "cpu_s"), m("panlabel", "cpu_s")), 3.0, "x", False)]  # fmt: skip
    elif row == "lookout":
        found += [("in process CPU / floor CPU", _ratio(m("inproc", "cpu_s"), m("floor", "cpu_s")), 2.5, "x", False),
                  ("2 workers wall / in process wall", _ratio(m("local", "wall_s"), m("inproc", "wall_s")), 0.6, "x", False)]  # fmt: skip
    elif row == "ls_gt":
        found += [("2 workers wall / panlabel wall", _ratio(m("local", "wall_s"), m("panlabel", "wall_s")), 1.0, "x", False),
                  ("2 workers peak RSS / panlabel peak RSS", _ratio(m("local", "peak_rss_mb"), m("panlabel", "peak_rss_mb")), 1.0, "x", True)]  # fmt: skip
    elif row == "fixed":
        local, inproc = m("local", "wall_s"), m("inproc", "wall_s")
        extra = local - inproc if local is not None and inproc is not None else None
        found.append(("2 workers wall - in process wall", extra, 2.0, " s", False))
        local, inproc = m("local", "cpu_s"), m("inproc", "cpu_s")
        extra = local - inproc if local is not None and inproc is not None else None
        found.append(("2 workers CPU s - in process CPU s (no target; load moves it less than wall)", extra, None, " s", False))
    elif row == "masks":
        found += [("2 workers wall / bare loop wall", _ratio(m("local", "wall_s"), m("bare", "wall_s")), 1.0, "x", True),
                  ("1 worker wall / bare loop wall", _ratio(m("inproc", "wall_s"), m("bare", "wall_s")), 1.2, "x", False)]  # fmt: skip
    elif row == "memory":
        found += [(f"{key[6:]} peak RSS of the tree", m(key, "peak_rss_mb"), 1024.0, " MB", False) for key in cases]
    return [{"what": what, "measured": value, "bound": bound, "unit": unit, "strict": strict,
             "met": None if value is None or bound is None else (value < bound if strict else value <= bound)}
            for what, value, bound, unit, strict in found]  # fmt: skip


# -- the run ----------------------------------------------------------------------------------


def run_row(row: str, work: Path, size: int, repeats: int, only_cases: set[str] | None) -> tuple[dict[str, Case], dict]:
    started = time.perf_counter()
    cases = {case.key: case for case in BUILDERS[row](work, size) if not only_cases or case.key in only_cases}
    info = {"size": size, "unit": UNITS[row], "generated_s": round(time.perf_counter() - started, 1)}
    print(f"\n{TITLES[row]}: {size:,} {UNITS[row]} (inputs ready in {info['generated_s']} s)", flush=True)
    for case in cases.values():
        case.skipped = case.needs
    for repeat in range(repeats):
        for case in cases.values():
            if case.skipped:
                continue
            out = work / f"out-{row}-{case.key}"
            shutil.rmtree(out, ignore_errors=True)
            result = measure(case.argv(out), str(work / f"{row}-{case.key}.log"))
            result["load"] = os.getloadavg()[0]
            if result["exit"] != 0:
                case.skipped = f"exit {result['exit']}, see {work / f'{row}-{case.key}.log'}"
                continue
            ok = True
            if not case.counts:  # the first run's output (a 1,000,000-image COCO file takes seconds and GBs to load)
                case.counts, ok = case.check(out)
                case.ok = ok
            case.runs.append(result)
            print(f"  repeat {repeat + 1}: {case.key}: {result['wall_s']:.2f} s wall, {result['cpu_s']:.2f} CPU s, "
                  f"{result['peak_rss_mb']:,.0f} MB tree, load {result['load']:.1f}{'' if ok else ' CHECK FAILED'}", flush=True)  # fmt: skip
            shutil.rmtree(out, ignore_errors=True)
    return cases, info


def table(results: dict) -> str:
    lines = ["| row | case | median wall | median CPU s | peak RSS of the tree | largest process | output counted |", "|---|---|---|---|---|---|---|"]
    for row, found in results["rows"].items():
        for case in found["cases"]:
            label = f"{TITLES[row]}, {found['size']:,} {found['unit']}"
            if case["skipped"] and not case["runs"]:
                lines.append(f"| {label} | {case['name']} | skipped: {case['skipped']} | | | | |")
                continue
            med = case["median"]
            counts = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in case["counts"].items())
            lines.append(f"| {label} | {case['name']} | {med['wall_s']:.2f} s | {med['cpu_s']:.1f} | {med['peak_rss_mb']:,.0f} MB | "
                         f"{med['largest_mb']:,.0f} MB | {counts}{'' if case['ok'] else ' CHECK FAILED'} |")  # fmt: skip
    lines += ["", "| row | target | measured | bound | met |", "|---|---|---|---|---|"]
    for row, found in results["rows"].items():
        for t in found["targets"]:
            value = "-" if t["measured"] is None else f"{t['measured']:,.2f}{t['unit']}"
            bound = "-" if t["bound"] is None else ("< " if t["strict"] else "<= ") + f"{t['bound']:g}{t['unit']}"
            met = "-" if t["met"] is None else ("yes" if t["met"] else "**no**")
            lines.append(f"| {TITLES[row]} | {t['what']} | {value} | {bound} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every input size except the fixed-cost row's")
    parser.add_argument("--repeats", type=int, default=3, help="medians of this many runs")
    parser.add_argument("--only", default=",".join(ROWS), help=f"rows, comma separated: {','.join(ROWS)}")
    parser.add_argument("--cases", default="", help="only these cases of each row (e.g. local,panlabel)")
    parser.add_argument("--workdir", default=None, help="inputs and outputs (default: a new temporary folder)")
    parser.add_argument("--json", default=None, help="where the measurements go (default: WORKDIR/peers.json)")
    args = parser.parse_args(argv)
    rows = [row for row in args.only.split(",") if row]
    unknown = set(rows) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; known: {','.join(ROWS)}")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="labelbeam-peers-"))
    work.mkdir(parents=True, exist_ok=True)
    subreaper = _become_subreaper()
    # Bytecode for labelbeam's modules, as an installed package has it: with PYTHONDONTWRITEBYTECODE
    # set, every process (each worker too) would otherwise compile them again at start.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "transforms", "pipelines", "benchmarks"], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    pan = panlabel_bin()
    version = subprocess.run([pan, "--version"], capture_output=True, text=True).stdout.strip() if pan else "no panlabel"
    import apache_beam
    import pyarrow

    machine = {"cores": os.cpu_count(), "python": sys.version.split()[0], "beam": apache_beam.__version__, "pyarrow": pyarrow.__version__,
               "panlabel": version, "scale": args.scale, "repeats": args.repeats, "subreaper": subreaper, "workdir": str(work),
               "load_at_start": os.getloadavg()[0], "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    print(f"{machine['cores']} cores, python {machine['python']}, Beam {machine['beam']}, pyarrow {machine['pyarrow']}, {version}; "
          f"scale {args.scale}, medians of {args.repeats}; inputs in {work}", flush=True)  # fmt: skip
    results: dict = {"machine": machine, "rows": {}}
    only_cases = set(filter(None, args.cases.split(","))) or None
    for row in rows:
        size = FIXED_LINES if row == "fixed" else max(1, round(SIZES[row] * args.scale))
        cases, info = run_row(row, work, size, args.repeats, only_cases)
        results["rows"][row] = {
            **info,
            "cases": [{"key": c.key, "name": c.name, "runs": c.runs, "counts": c.counts, "ok": c.ok, "skipped": c.skipped,
                       "median": {k: _median(c, k) for k in ("wall_s", "cpu_s", "peak_rss_mb", "largest_mb")} if c.runs else None}
                      for c in cases.values()],  # fmt: skip
            "targets": targets(row, {k: c for k, c in cases.items() if c.runs}),
        }
    text = table(results)
    print("\n" + text)
    target = Path(args.json or work / "peers.json")
    target.write_text(json.dumps(results, indent=1))
    print(f"\nmeasurements in {target}; inputs kept in {work}")


if __name__ == "__main__":
    main()
