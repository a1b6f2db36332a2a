"""Object storage for real: moto's S3 server on loopback, the job reading and writing s3://."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from pipelines.normalize_manifests import run  # noqa: E402

pytestmark = pytest.mark.e2e  # runs the whole job: deselect with -m "not e2e" for the fast subset

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "sagemaker"


@pytest.fixture
def aws_env(monkeypatch, s3_endpoint):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3_endpoint


def _bucket(endpoint: str, name: str):
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
    fs.mkdir(name)
    fs.put(str(SAMPLES / "lookout-for-vision.manifest"), f"{name}/in/lookout.manifest")
    fs.put(str(SAMPLES / "broken.manifest"), f"{name}/in/broken.manifest")
    return fs


def _check_outputs(fs, bucket: str):
    summary = json.loads(fs.cat_file(f"{bucket}/out/run.json"))
    assert summary["totals"]["lines"] == 21 and summary["totals"]["reconciled"]
    assert {Path(f["uri"]).name for f in summary["files"]} == {"lookout.manifest", "broken.manifest"}
    assert all(f["uri"].startswith(f"s3://{bucket}/in/") for f in summary["files"])
    parquet = fs.glob(f"{bucket}/out/records/split=*/task=*/part-*.parquet")
    manifests = fs.glob(f"{bucket}/out/manifests/sagemaker/split=*/part-*-of-*.manifest")
    errors = fs.glob(f"{bucket}/out/errors/part-*.jsonl")
    assert parquet and manifests and errors
    assert not fs.glob(f"{bucket}/out/.labelbeam-tmp/**")
    # the job's state keeps only the list of what it published: no lock, staging or journal left
    assert [p.rsplit("/", 1)[-1] for p in fs.find(f"{bucket}/out/.labelbeam")] == ["published.json"]
    assert fs.exists(f"{bucket}/out/_SUCCESS")
    letters = [json.loads(line) for path in errors for line in fs.cat_file(path).splitlines()]
    assert len(letters) == summary["totals"]["dead_letters"] == 8
    # Image refs in s3:// manifests resolve against the manifest's own folder.
    lines = [json.loads(line) for path in manifests for line in fs.cat_file(path).splitlines()]
    assert all(line["source-ref"].startswith(f"s3://{bucket}/in/images/") for line in lines)


def test_standard_aws_configuration_needs_no_flag(aws_env, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env)
    fs = _bucket(aws_env, "env-bucket")
    code = run(["--input", "s3://env-bucket/in/*.manifest", "--output", "s3://env-bucket/out", "--output_format=sagemaker", "--runner=FnApiRunner", "--validate_masks=false"])
    assert code == 0
    _check_outputs(fs, "env-bucket")


def test_storage_options_reach_every_reader_and_writer(aws_env, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    fs = _bucket(aws_env, "flag-bucket")
    options = json.dumps({"s3": {"endpoint_url": aws_env, "skip_instance_cache": True}})
    code = run(["--input", "s3://flag-bucket/in/*.manifest", "--output", "s3://flag-bucket/out", "--output_format=sagemaker", "--runner=FnApiRunner", "--validate_masks=false", f"--storage_options={options}"])
    assert code == 0
    _check_outputs(fs, "flag-bucket")
    summary = json.loads(fs.cat_file("flag-bucket/out/run.json"))
    assert summary["options"]["job"]["storage"]["s3"]["endpoint_url"] == aws_env
