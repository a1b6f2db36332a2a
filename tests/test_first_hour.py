"""What a new user meets first: the help texts, --version, the runner chosen when none is named,
a dry run, and the launch checks that catch a typo before any work (split shares, a folder as
--input, a local --output for workers on other machines)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import runners
from pipelines.normalize_manifests import run
from pipelines.options import ConfigError, parse_launch

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"


def cli(*args: str, columns: int = 100) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_help_is_wrapped_shows_sizes_as_written_and_the_common_options_first():
    done = cli("--help", columns=80)
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert max(map(len, lines)) <= 80, [line for line in lines if len(line) > 80]
    text = done.stdout
    assert "default 64MB" in text and "67108864" not in text and "default 32MB" in text
    assert "--input PATTERN [PATTERN ...]" in text
    common, more = text.index("Common options:"), text.index("More options:")
    for flag in ("--input", "--output ", "--format ", "--output_format", "--config", "--overwrite", "--max_error_rate"):
        assert common < text.index(f"\n  {flag}") < more, flag
    assert more < text.index("\n  --mask_alpha_threshold")
    assert max(map(len, cli("--help", columns=120).stdout.splitlines())) > 80  # it follows the terminal


def test_help_beam_lists_beams_options_grouped_as_beam_groups_them():
    done = cli("--help-beam")
    assert done.returncode == 0
    text = done.stdout
    assert "--runner" in text and "--direct_num_workers" in text and "--direct_running_mode" in text
    for group, flag in (("StandardOptions:", "--runner"), ("DirectOptions:", "--direct_num_workers"), ("GoogleCloudOptions:", "--project"),
                        ("FlinkRunnerOptions:", "--flink_master"), ("PortableOptions:", "--job_endpoint"), ("WorkerOptions:", "--num_workers")):
        start = text.index(f"\n{group}\n")
        following = re.search(r"\n\w+Options:\n", text[start + 1:])
        assert flag in text[start:start + 1 + following.start() if following else None], (group, flag)
    assert len(text.splitlines()) > 200


def test_version_names_labelbeam_beam_and_pyarrow():
    import apache_beam
    import pyarrow

    done = cli("--version")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0].startswith("labelbeam ")
    assert lines[1:] == [f"apache-beam {apache_beam.__version__}", f"pyarrow {pyarrow.__version__}"]


@pytest.mark.parametrize("ratios", ["train=0.8,val=0.3", "train=0.5,test=0.4", "train=1,val=1e-8"])
def test_split_shares_that_do_not_sum_to_one_are_refused_at_launch(ratios, tmp_path, capsys):
    assert run(["--input", str(SAMPLES / "sagemaker" / "*.manifest"), "--output", str(tmp_path / "out"), f"--split_ratios={ratios}"]) == 2
    assert "must sum to 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_split_shares_in_yaml_are_checked_too_and_a_sum_of_one_passes(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("job: {split: {ratios: {train: 0.7, validation: 0.2, test: 0.2}}}\n")
    base = ["--input", str(SAMPLES / "sagemaker" / "*.manifest"), "--output", str(tmp_path / "out")]
    with pytest.raises(ConfigError, match="sum to 1.1"):
        parse_launch(["--config", str(config), *base])
    assert parse_launch([*base, "--split_ratios=train=0.7,validation=0.2,test=0.1"]).job.split.ratios["test"] == pytest.approx(0.1)


def test_a_folder_as_input_reads_every_file_under_it_but_hidden_ones(tmp_path):
    folder = tmp_path / "manifests"
    (folder / "more" / "deeper").mkdir(parents=True)
    (folder / ".cache").mkdir()
    shutil.copy(SAMPLES / "sagemaker" / "lookout-for-vision.manifest", folder / "a.manifest")
    shutil.copy(SAMPLES / "sagemaker" / "ground-truth.jsonl", folder / "more" / "deeper" / "b.jsonl")
    (folder / ".notes.manifest").write_text("not a manifest\n")
    (folder / ".cache" / "c.manifest").write_text("not a manifest either\n")
    out = tmp_path / "out"
    launch = parse_launch(["--input", str(folder), "--output", str(out)])
    assert launch.job.input == [str(folder / "a.manifest"), str(folder / "more" / "deeper" / "b.jsonl")]
    assert run(["--input", str(folder), "--output", str(out), "--runner=FnApiRunner", "--validate_masks=false", "--quiet"]) == 0
    summary = json.loads((out / "run.json").read_text())
    assert sorted(Path(f["uri"]).name for f in summary["files"]) == ["a.manifest", "b.jsonl"]
    assert summary["totals"]["dead_letters"] == 0
    empty = tmp_path / "empty"
    (empty / ".hidden").mkdir(parents=True)
    with pytest.raises(ConfigError, match="holds no files"):
        parse_launch(["--input", str(empty), "--output", str(out)])


@pytest.mark.parametrize("remote", [
    ["--runner=DataflowRunner", "--project=p", "--region=r", "--temp_location=gs://b/tmp"],
    ["--runner=FlinkRunner", "--flink_master=flink.example.com:8081"],
    ["--runner=PortableRunner", "--job_endpoint=jobs.example.com:8099"],
])
def test_a_local_output_with_workers_on_other_machines_is_refused_at_launch(remote, tmp_path, capsys):
    assert run(["--input", str(SAMPLES / "sagemaker" / "*.manifest"), "--output", str(tmp_path / "out"), *remote]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("local", [["--runner=PortableRunner", "--job_endpoint=embed"], ["--runner=PortableRunner", "--job_endpoint=localhost:8099"],
                                   ["--runner=FlinkRunner"], ["--runner=FnApiRunner"]])
def test_a_local_output_with_local_workers_is_accepted(local, tmp_path):
    parse_launch(["--input", str(SAMPLES / "sagemaker" / "*.manifest"), "--output", str(tmp_path / "out"), *local])


def test_without_a_runner_the_job_takes_the_fastest_lossless_local_configuration():
    launch = parse_launch(["--input", str(SAMPLES / "sagemaker" / "*.manifest"), "--output", "out/x"])
    line = runners.choose_default(launch.pipeline_options)
    workers = runners.cores()
    assert line and "FnApiRunner" in line and f"{workers} worker process" in line
    chosen = launch.beam_options()
    assert chosen["runner"] == "FnApiRunner" and chosen["direct_num_workers"] == workers
    assert chosen["direct_running_mode"] == ("multi_processing" if workers > 1 else "in_memory")
    given = parse_launch(["--input", str(SAMPLES / "sagemaker" / "*.manifest"), "--output", "out/x", "--direct_running_mode=in_memory"])
    assert "in process" in runners.choose_default(given.pipeline_options)
    named = parse_launch(["--input", str(SAMPLES / "sagemaker" / "*.manifest"), "--output", "out/x", "--runner=PrismRunner"])
    assert runners.choose_default(named.pipeline_options) is None


@pytest.mark.e2e
def test_a_run_without_a_runner_says_what_it_chose_and_records_it(tmp_path):
    out = tmp_path / "out"
    done = cli("--input", str(SAMPLES / "sagemaker" / "*.manifest"), "--output", str(out), "--validate_masks=false")
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if "no --runner given" in line]
    assert len(said) == 1 and f"{runners.cores()} worker process" in said[0]
    pipeline = json.loads((out / "run.json").read_text())["options"]["pipeline"]
    assert pipeline["runner"] == "FnApiRunner" and pipeline["direct_num_workers"] == runners.cores()
    quiet = cli("--input", str(SAMPLES / "sagemaker" / "*.manifest"), "--output", str(out), "--validate_masks=false", "--overwrite", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == ""


@pytest.mark.e2e
def test_quiet_is_quiet_on_prism_too(tmp_path):
    if runners.prism_binary() is None:
        pytest.skip("no Prism binary: run scripts/install_prism.sh")
    done = cli("--input", str(SAMPLES / "sagemaker" / "*.manifest"), "--output", str(tmp_path / "out"), "--runner=DirectRunner", "--quiet")
    assert done.returncode == 0 and "DONE" in done.stdout
    assert done.stderr == ""


def test_a_dry_run_on_a_local_runner_builds_the_graph_and_touches_nothing(tmp_path):
    out = tmp_path / "out"
    done = cli("--input", str(SAMPLES / "sagemaker" / "*.manifest"), "--output", str(out), "--runner=FnApiRunner", "--dry_run=True")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and "dry run" in done.stdout and "nothing ran, nothing was published" in done.stdout
    assert not out.exists()


@pytest.mark.e2e
def test_a_dataflow_dry_run_through_the_cli_exits_0_and_publishes_nothing(tmp_path):
    pytest.importorskip("apache_beam.runners.dataflow.internal.apiclient", reason='needs pip install -e ".[gcp]"')
    done = cli("--config", "configs/dataflow.yaml", "--input", str(SAMPLES / "*" / "*.manifest"), "--dry_run=True", "--no_auth",
               "--sdk_location=container", "--requirements_cache=skip")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and "translated for DataflowRunner and would be submitted" in lines[0] and "nothing ran" in lines[0]
