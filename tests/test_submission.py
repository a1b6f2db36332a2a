"""What a Dataflow or Flink submission depends on, checked offline.

Dataflow: the whole job is translated by the DataflowRunner with `--dry_run=True` (no Google
Cloud account; nothing is sent): every stage is in the job graph, the DoFns pickle, and the
setup file and requirements are staged as configured. Flink: the job runs on the PortableRunner
with an external worker pool and the options configs/flink.yaml sets (the Flink job server
itself is not served by the registries this project installs from). The worker container
names the pinned Beam version.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pytest

from pipelines import runners
from pipelines.normalize_manifests import build, run
from pipelines.options import parse_launch

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
INPUTS = ["--input", str(SAMPLES / "*" / "*.manifest"), "--input", str(SAMPLES / "*" / "*.jsonl"), "--input", str(SAMPLES / "*" / "*.json")]


def _beam_pin() -> str:
    return re.search(r'^BEAM = "apache-beam==([0-9.]+)"', (REPO / "setup.py").read_text(), re.M).group(1)


@pytest.mark.e2e
def test_dataflow_dry_run_translates_the_whole_job(tmp_path, monkeypatch):
    pytest.importorskip("apache_beam.runners.dataflow.internal.apiclient", reason='needs pip install -e ".[gcp]"')
    monkeypatch.chdir(REPO)  # configs/dataflow.yaml names ./setup.py, as a user runs it
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("orjson\n")
    launch = parse_launch([
        "--config", "configs/dataflow.yaml", *INPUTS, "--output_format=sagemaker", "--output_format=coco",
        "--dry_run=True", "--no_auth", "--sdk_location=container", "--job_name=labelbeam-dry-run",
        f"--requirements_file={requirements}", "--requirements_cache=skip",
    ])
    runners.prepare(launch.pipeline_options)
    pipeline = runners.new_pipeline(launch.pipeline_options)
    build(pipeline, launch.job, launch.job.output.rstrip("/") + "/.labelbeam/staging/dry-run")
    result = pipeline.run()
    assert str(result.state) == "DONE"
    job = result.job
    top = {t.unique_name for t in job.proto_pipeline.components.transforms.values() if "/" not in t.unique_name}
    for stage in ("ReadManifests", "NormalizeRecords", "ValidateRecords", "CheckFiles", "AssignSplit", "WriteRecords",
                  "WriteManifests[sagemaker]", "WriteManifests[coco]", "WriteDeadLetters", "ComputeStatistics", "WriteCounters"):
        assert stage in top
    staged = {}
    for environment in job.proto_pipeline.components.environments.values():
        for dependency in environment.dependencies:
            from apache_beam.portability.api import beam_runner_api_pb2

            role = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(dependency.role_payload)
            source = beam_runner_api_pb2.ArtifactFilePayload.FromString(dependency.type_payload)
            staged[role.staged_name] = source.path
    assert "requirements.txt" in staged and Path(staged["requirements.txt"]).read_text() == "orjson\n"
    with tarfile.open(staged["workflow.tar.gz"]) as sdist:  # the package built from setup_file
        names = sdist.getnames()
    assert any(n.endswith("transforms/stages/write.py") for n in names)
    assert any(n.endswith("pipelines/normalize_manifests.py") for n in names)
    from apache_beam.options.pipeline_options import SetupOptions

    assert job.options.view_as(SetupOptions).setup_file == "./setup.py"
    assert job.proto.name == "labelbeam-dry-run"


def test_the_worker_container_uses_the_pinned_beam_and_installs_the_package():
    dockerfile = (REPO / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
    assert froms == [f"apache/beam_python3.11_sdk:{_beam_pin()}"]
    assert re.search(r'^RUN pip install [^\n]*"\.\[', dockerfile, re.M), "installs this package (setup.py)"
    for copied in ("setup.py", "pipelines", "transforms"):
        assert re.search(rf"^COPY [^\n]*\b{copied}\b", dockerfile, re.M)


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_launches(path):
    # object storage: a remote runner's workers cannot write a local folder (refused at launch)
    launch = parse_launch(["--config", str(path), *INPUTS, "--output", "memory://labelbeam-configs/out"])
    assert launch.job.input and launch.pipeline_options.get_all_options()["runner"]


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_the_flink_options_run_on_the_portable_runner_with_a_worker_pool(tmp_path, request):
    port = request.getfixturevalue("worker_pool")
    out = tmp_path / "out"
    code = run([
        "--config", str(REPO / "configs" / "flink.yaml"), *INPUTS, "--output", str(out), "--output_format=sagemaker",
        "--job_endpoint=embed", f"--environment_config=localhost:{port}",
    ])
    assert code == 0
    assert (out / "_SUCCESS").exists() and list((out / "records").rglob("*.parquet"))
