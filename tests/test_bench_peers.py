"""The peers benchmark measures a whole process tree: CPU time of a worker that outlives the
process that started it is counted, smaller inputs are heads of larger ones, and a row runs
alone from the command line with its output counted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks import peers
from benchmarks.synthetic import write_manifest

REPO = Path(__file__).resolve().parents[1]

# A process that starts a grandchild burning 0.6 CPU s, and exits at once: the grandchild is
# orphaned, as SDK workers killed or left behind by the job's process are.
_ORPHANING = (
    "import subprocess, sys\n"
    "subprocess.Popen([sys.executable, '-c', 'import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.6: pass'])\n"
)


def test_cpu_of_an_orphaned_grandchild_is_counted(tmp_path):
    probe = (
        "import json, sys\n"
        "from benchmarks.peers import _become_subreaper, measure\n"
        "assert _become_subreaper()\n"
        f"print(json.dumps(measure([sys.executable, '-c', {_ORPHANING!r}], {str(tmp_path / 'log')!r})))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    measured = json.loads(done.stdout)
    assert measured["exit"] == 0
    assert measured["cpu_s"] >= 0.55, measured  # the grandchild's 0.6 s, though its parent never waited for it


def test_a_smaller_lookout_input_is_the_head_of_a_larger_one(tmp_path):
    larger = peers.lookout_input(tmp_path, 50)
    head = peers.lookout_input(tmp_path, 20)
    write_manifest(str(tmp_path / "fresh"), 20)
    assert head.read_bytes() == (tmp_path / "fresh").read_bytes()
    assert larger.read_bytes().startswith(head.read_bytes())


def test_one_row_runs_alone_and_counts_what_it_wrote(tmp_path):
    report = tmp_path / "peers.json"
    argv = ["--only", "lookout", "--cases", "floor", "--scale", "0.00005", "--repeats", "2", "--workdir", str(tmp_path), "--json", str(report)]
    # its own process: the benchmark makes itself the subreaper of what it starts
    subprocess.run([sys.executable, "-m", "benchmarks.peers", *argv], cwd=REPO, capture_output=True, check=True)
    found = json.loads(report.read_text())
    (case,) = found["rows"]["lookout"]["cases"]
    assert found["rows"]["lookout"]["size"] == 200
    assert case["ok"] and case["counts"] == {"records": 200} and len(case["runs"]) == 2
    assert case["median"]["cpu_s"] > 0 and case["median"]["peak_rss_mb"] > 0
    assert list(found["rows"]) == ["lookout"]
