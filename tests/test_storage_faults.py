"""Storage that fails: no credentials, an endpoint that is closed or dies mid-run (moto's S3
server on loopback, behind a fault-injecting proxy). Every case is coded, none exits 0 with
lines unread, none is a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from pipelines.normalize_manifests import run  # noqa: E402
from tests.faults import FaultProxy, closed_port  # noqa: E402
from tests.stores import scratch_mask_png
from tests.test_hostile_references import _line  # noqa: E402

pytestmark = pytest.mark.e2e  # runs the whole job: deselect with -m "not e2e" for the fast subset

RUNNER = "--runner=FnApiRunner"
REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "sagemaker"
FAST_FAIL = {"retries": {"max_attempts": 1, "mode": "standard"}, "connect_timeout": 2, "read_timeout": 5}


@pytest.fixture(autouse=True)
def few_retries(monkeypatch):
    """s3fs retries each failed read 5 times inside botocore's own retries (about 150 requests
    and 50 s for one dead range); the failure is the same after one, and the suite stays fast."""
    import s3fs

    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 1)


@pytest.fixture
def credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def _options(endpoint: str) -> str:
    return "--storage_options=" + json.dumps({"s3": {"endpoint_url": endpoint, "skip_instance_cache": True, "config_kwargs": FAST_FAIL}})


def _s3(endpoint: str):
    import s3fs

    return s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True, key="testing", secret="testing")


def _records(out: Path) -> list[dict]:
    return ds.dataset(out / "records", format="parquet", partitioning="hive").to_table().to_pylist()


def _local_manifest_with_s3_masks(tmp_path: Path, bucket: str, n: int = 5) -> Path:
    manifest = tmp_path / "in" / "lookout.manifest"
    manifest.parent.mkdir()
    manifest.write_text("".join(_line(f"s3://{bucket}/images/{i}.jpg", f"s3://{bucket}/masks/{i}.png") + "\n" for i in range(n)))
    return manifest


def _issue_codes(row: dict) -> list[str]:
    return [i["code"] for i in row["issues"]]


def test_masks_on_s3_without_credentials_are_file_unreadable_not_internal_errors(s3_endpoint, tmp_path, monkeypatch):
    fs = _s3(s3_endpoint)
    fs.mkdir("nocreds")
    for i in range(5):
        fs.pipe(f"nocreds/masks/{i}.png", scratch_mask_png())
    manifest = _local_manifest_with_s3_masks(tmp_path, "nocreds")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    out = tmp_path / "out"
    code = run(["--input", str(manifest), "--output", str(out), RUNNER, _options(s3_endpoint), "--allowed_roots=s3://nocreds"])
    assert code == 0
    rows = _records(out)
    assert len(rows) == 5
    for row in rows:
        assert _issue_codes(row) == ["FILE_UNREADABLE"] and row["issues"][0]["message"].split(": ")[1] == "no_credentials"
        assert row["mask"]["validated"] is False
    summary = json.loads((out / "run.json").read_text())
    assert summary["totals"]["warnings_by_code"] == {"FILE_UNREADABLE": 5}
    assert summary["totals"]["warnings_by_reason"] == {"FILE_UNREADABLE": [{"reason": "no_credentials", "count": 5}]}
    assert "INTERNAL_ERROR" not in (out / "run.json").read_text()
    # The same manifest without --allowed_roots: s3://nocreds is not the manifest's root, nothing is opened.
    code = run(["--input", str(manifest), "--output", str(tmp_path / "out2"), RUNNER, _options(s3_endpoint)])
    assert code == 0
    assert {c for row in _records(tmp_path / "out2") for c in _issue_codes(row)} == {"REFERENCE_OUTSIDE_ROOTS"}


def test_masks_on_an_unreachable_endpoint_are_file_unreadable(tmp_path, credentials):
    manifest = _local_manifest_with_s3_masks(tmp_path, "gone", n=3)
    out = tmp_path / "out"
    dead = f"http://127.0.0.1:{closed_port()}"
    code = run(["--input", str(manifest), "--output", str(out), RUNNER, _options(dead), "--allowed_roots=s3://gone"])
    assert code == 0
    rows = _records(out)
    assert len(rows) == 3
    assert all(_issue_codes(r) == ["FILE_UNREADABLE"] and ": unreachable: " in r["issues"][0]["message"] for r in rows)
    assert json.loads((out / "run.json").read_text())["totals"]["warnings_by_reason"] == {"FILE_UNREADABLE": [{"reason": "unreachable", "count": 3}]}


def test_an_unreachable_input_endpoint_is_refused_at_launch_in_one_line(tmp_path, credentials, capsys):
    dead = f"http://127.0.0.1:{closed_port()}"
    code = run(["--input", "s3://gone/in/*.manifest", "--output", str(tmp_path / "out"), RUNNER, _options(dead)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("labelbeam: error: ") and "s3://gone/in/*.manifest" in err and "connect" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "records").exists()


def _upload_big_manifest(endpoint: str, bucket: str) -> int:
    fs = _s3(endpoint)
    fs.mkdir(bucket)
    lines = (SAMPLES / "lookout-for-vision.manifest").read_bytes().splitlines()
    body = b"\n".join(lines * 4) + b"\n"
    fs.pipe(f"{bucket}/in/big.manifest", body)
    return body.count(b"\n")


def test_an_endpoint_dying_after_planning_gives_an_incomplete_run_never_exit_0(s3_endpoint, tmp_path, credentials):
    lines = _upload_big_manifest(s3_endpoint, "dies")

    def fail(method, path, headers):  # planning reads from byte 0; every later range fails
        rng = headers.get("Range") or headers.get("range") or ""
        return method == "GET" and path.startswith("/dies/in/big.manifest") and rng.startswith("bytes=") and not rng.startswith("bytes=0-")

    out = tmp_path / "out"
    with FaultProxy(s3_endpoint, fail) as proxy:
        code = run(["--input", "s3://dies/in/big.manifest", "--output", str(out), RUNNER, _options(proxy.url), "--validate_masks=false", "--shard_size=4KB"])
        failed_requests = sum(1 for _, _, failed in proxy.requests if failed)
    assert failed_requests > 0
    assert code == 4  # incomplete input: documented, non-zero
    assert not (out / "_SUCCESS").exists() and not (out / "records").exists()  # nothing published
    [report] = list((out / ".labelbeam" / "failed").glob("*/run.json"))
    summary = json.loads(report.read_text())
    assert summary["exit_code"] == 4 and summary["totals"]["complete"] is False
    [entry] = summary["incomplete_files"]
    assert entry["uri"] == "s3://dies/in/big.manifest" and entry["incomplete_reads"] >= 1
    assert summary["totals"]["dead_letters_by_code"].get("READ_FAILED", 0) == entry["incomplete_reads"]
    assert summary["totals"]["lines"] < lines


def test_allow_incomplete_publishes_without_success(s3_endpoint, tmp_path, credentials):
    _upload_big_manifest(s3_endpoint, "dies2")

    def fail(method, path, headers):
        rng = headers.get("Range") or headers.get("range") or ""
        return method == "GET" and path.startswith("/dies2/in/big.manifest") and not rng.startswith("bytes=0-")

    out = tmp_path / "out"
    with FaultProxy(s3_endpoint, fail) as proxy:
        code = run(["--input", "s3://dies2/in/big.manifest", "--output", str(out), RUNNER, _options(proxy.url), "--validate_masks=false", "--shard_size=4KB", "--allow_incomplete"])
    assert code == 4
    assert (out / "records").exists() and (out / "run.json").exists() and not (out / "_SUCCESS").exists()


def test_a_shard_whose_lines_cannot_be_counted_is_read_failed_not_misnumbered(tmp_path, credentials):
    from apache_beam.pvalue import TaggedOutput

    from transforms import shards, storage
    from transforms.read_layout import JSONL
    from transforms.schema import RawBatch
    from transforms.stages import read

    dead = storage.Storage({"s3": {"endpoint_url": f"http://127.0.0.1:{closed_port()}", "skip_instance_cache": True, "config_kwargs": FAST_FAIL}})
    shard = shards.Shard("s3://gone/in/big.manifest", 2, 8192, 12288, JSONL, "sagemaker")
    [(uri, (counted, lines))] = list(read._CountShardLinesFn(dead).process(shard))
    assert uri == shard.uri and lines == -1 and counted.layout.startswith("unreadable:")
    assert "unreachable" in counted.layout
    [numbered] = list(shards.with_line_bases((uri, [(counted, lines)])))
    out = list(read._ReadShardFn(dead, 1000, 1 << 20).process(numbered))
    [batch] = [o for o in out if isinstance(o, RawBatch)]
    [ledger] = [o.value for o in out if isinstance(o, TaggedOutput)]
    assert [f[1] for f in batch.failures] == ["READ_FAILED"] and batch.offsets == [8192]
    assert ledger[1]["incomplete_reads"] == 1


def test_masks_cut_mid_transfer_are_coded_and_the_terminal_stays_short(s3_endpoint, tmp_path, credentials):
    """Every mask GET breaks half way (the endpoint announces the length, sends half, closes):
    each record gets FILE_UNREADABLE (io_error), and the CLI's stderr stays a few lines, not a
    traceback per record."""
    n = 120
    fs = _s3(s3_endpoint)
    fs.mkdir("cutmasks")
    for i in range(n):
        fs.pipe(f"cutmasks/masks/{i}.png", scratch_mask_png())
    manifest = _local_manifest_with_s3_masks(tmp_path, "cutmasks", n=n)
    out = tmp_path / "out"
    with FaultProxy(s3_endpoint, cut=lambda method, path, headers: method == "GET" and "/masks/" in path) as proxy:
        done = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "--input", str(manifest), "--output", str(out), RUNNER,
             _options(proxy.url), "--allowed_roots=s3://cutmasks", "--quiet"],
            cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        cut = sum(1 for method, path, _ in proxy.requests if method == "GET" and "/masks/" in path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert cut >= n  # every mask transfer was cut: the test proves something
    rows = _records(out)
    assert len(rows) == n
    assert all(_issue_codes(r) == ["FILE_UNREADABLE"] and ": io_error: ClientPayloadError" in r["issues"][0]["message"] for r in rows)
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) <= 5 and len(done.stderr) < 2000
    assert f"warnings on kept records: FILE_UNREADABLE {n} (io_error {n})" in done.stdout  # one cause, one count
