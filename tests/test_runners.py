"""The same job on every local runner gives the same records and the same counts.

FnApiRunner in process is the reference; FnApiRunner with two worker processes, the
PortableRunner with Beam's external worker pool (what Flink and Dataflow workers run) and Prism
(Beam's Go runner, the engine behind --runner=DirectRunner; built by scripts/install_prism.sh)
must give identical sorted record_ids, run.json totals and landed counts, on the bundled samples
of every format and on a 200,000-line synthetic manifest cut into many shards.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from benchmarks.synthetic import write_manifest
from pipelines import runners
from pipelines.normalize_manifests import run

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
SYNTHETIC_LINES = 200_000


def _runner_flags(name: str, request) -> list[str]:
    if name == "in_process":
        return ["--runner=FnApiRunner"]
    if name == "multi_processing":
        return ["--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    if name == "portable":
        port = request.getfixturevalue("worker_pool")
        return ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=EXTERNAL", f"--environment_config=localhost:{port}"]
    if runners.prism_binary() is None:
        pytest.skip("no Prism binary: run scripts/install_prism.sh")
    return [f"--runner={'PrismRunner' if name == 'prism' else 'DirectRunner'}"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    synthetic = folder / "synthetic.manifest"
    write_manifest(str(synthetic), SYNTHETIC_LINES, broken_every=997, blank_every=1999)
    return {
        "samples": ["--input", str(SAMPLES / "*" / "*.manifest"), "--input", str(SAMPLES / "*" / "*.jsonl"),
                    "--input", str(SAMPLES / "*" / "*.json"), "--output_format=sagemaker", "--output_format=label_studio",
                    "--shard_size=1KB"],
        "synthetic": ["--input", str(synthetic), "--validate_masks=false", "--output_format=sagemaker", "--shard_size=2MB"],
    }


def _outcome(out: Path) -> dict:
    summary = json.loads((out / "run.json").read_text())
    ids = ds.dataset(out / "records", format="parquet", partitioning="hive").to_table(columns=["record_id"]).column("record_id")
    return {
        "record_ids": sorted(ids.to_pylist()),
        "totals": summary["totals"],
        "landed": {name: (entry["landed"], entry["refused"]) for name, entry in summary["outputs"].items()},
    }


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    results = {}
    for name, args in inputs.items():
        out = tmp_path_factory.mktemp("reference") / name
        assert run(["--output", str(out), "--runner=FnApiRunner", *args]) == 0
        results[name] = _outcome(out)
    return results


@pytest.mark.e2e
@pytest.mark.timeout(600)  # a crashed SDK worker can hang a portable job: fail instead
@pytest.mark.parametrize("data", ["samples", "synthetic"])
@pytest.mark.parametrize("runner", ["multi_processing", "portable", "prism", "direct"])
def test_every_local_runner_gives_the_reference_output(runner, data, inputs, reference, tmp_path, request):
    if runner == "direct" and data == "synthetic":
        pytest.skip("DirectRunner is Prism here: the prism case covers the large input")
    out = tmp_path / "out"
    assert run(["--output", str(out), *_runner_flags(runner, request), *inputs[data]]) == 0
    got, expected = _outcome(out), reference[data]
    assert len(got["record_ids"]) == len(expected["record_ids"]) > 0
    assert got["record_ids"] == expected["record_ids"]
    assert got["totals"] == expected["totals"]
    assert got["landed"] == expected["landed"]


@pytest.mark.e2e
def test_synthetic_reference_accounts_for_every_line(reference):
    totals = reference["synthetic"]["totals"]
    assert totals["lines"] == SYNTHETIC_LINES and totals["reconciled"]
    assert totals["ok"] + totals["dead_letters"] + totals["blank"] == SYNTHETIC_LINES
    assert len(reference["synthetic"]["record_ids"]) == totals["records_kept"] == len(set(reference["synthetic"]["record_ids"]))
    assert totals["dead_letters"] > 0 and totals["blank"] > 0


def test_prism_without_its_binary_is_refused_at_launch(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runners, "PRISM_DIR", tmp_path / "no-prism-here")
    out = tmp_path / "out"
    code = run(["--output", str(out), "--runner=PrismRunner", "--input", str(SAMPLES / "sagemaker" / "*.manifest")])
    assert code == 2 and "scripts/install_prism.sh" in capsys.readouterr().err
    assert not out.exists()


def test_the_project_prism_is_the_one_direct_and_prism_runners_use(tmp_path, monkeypatch):
    from apache_beam.options.pipeline_options import PipelineOptions, PrismRunnerOptions

    binary = tmp_path / f"v{runners.BEAM_VERSION}" / "prism"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setattr(runners, "PRISM_DIR", tmp_path)
    for runner in ("DirectRunner", "PrismRunner"):
        options = PipelineOptions([f"--runner={runner}"])
        runners.prepare(options)
        assert options.view_as(PrismRunnerOptions).prism_location == str(binary)
    given = PipelineOptions(["--runner=PrismRunner", "--prism_location=/opt/prism"])
    runners.prepare(given)
    assert given.view_as(PrismRunnerOptions).prism_location == "/opt/prism"
    in_process = PipelineOptions(["--runner=FnApiRunner"])
    runners.prepare(in_process)
    assert not in_process.view_as(PrismRunnerOptions).prism_location
