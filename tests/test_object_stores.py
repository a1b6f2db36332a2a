"""The object-store matrix: the job on S3, GCS and Azure Blob Storage, each on its emulator on
loopback (moto's server, fake-gcs-server, Azurite; scripts/install_emulators.sh installs the
last two and .ci/run calls it). One set of tests, parametrized over the three stores: input read
through fsspec, masks checked from the store, output written and published to the store, no
credentials, the endpoint dying mid-run. Only a store whose emulator is not installed skips."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from pipelines.normalize_manifests import run
from tests.faults import FaultProxy
from tests.stores import STORE_VARIABLES, Store, ranged_read_of, scratch_mask_png
from tests.test_hostile_references import _line

pytestmark = pytest.mark.e2e  # runs the whole job: deselect with -m "not e2e" for the fast subset

RUNNER = "--runner=FnApiRunner"
REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "sagemaker"
STORES = ["s3", "gs", "az"]
CLIENTS = {"s3": "s3fs", "gs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}


@pytest.fixture(params=STORES)
def store(request, monkeypatch) -> Store:
    """One store on its emulator, with every storage variable of the environment cleared."""
    pytest.importorskip(CLIENTS[request.param])
    endpoint = request.getfixturevalue({"s3": "s3_server", "gs": "gcs_server", "az": "azurite_server"}[request.param])
    _clean_environment(monkeypatch)
    return Store(request.param, endpoint)


def _clean_environment(monkeypatch):
    """No storage variable set, and no filesystem fsspec cached under another environment: a
    client built without options (environment only) is otherwise reused from an earlier test."""
    for name in STORE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for module, name in (("s3fs", "S3FileSystem"), ("gcsfs", "GCSFileSystem"), ("gcsfs.core", "GCSFileSystem"), ("adlfs", "AzureBlobFileSystem")):
        try:
            getattr(__import__(module, fromlist=[name]), name).clear_instance_cache()
        except ImportError:
            pass


def _bucket_name(request) -> str:
    """A bucket name valid on the three stores (3-63 lowercase letters, digits, hyphens)."""
    return "t" + request.node.name.split("[")[0].replace("test_", "").replace("_", "-")[:40].strip("-") + "-" + request.node.callspec.id.replace("_", "-")


def _upload_samples(store: Store, bucket: str):
    fs = store.bucket(bucket)
    fs.pipe(f"{bucket}/in/lookout.manifest", (SAMPLES / "lookout-for-vision.manifest").read_bytes())
    fs.pipe(f"{bucket}/in/broken.manifest", (SAMPLES / "broken.manifest").read_bytes())
    return fs


def _check_published(store: Store, fs, bucket: str, scheme: str | None = None) -> dict:
    """What a clean run publishes, read back from the store with the test's own client."""
    scheme = scheme or store.scheme
    summary = json.loads(fs.cat_file(f"{bucket}/out/run.json"))
    assert summary["exit_code"] == 0 and summary["totals"]["lines"] == 21 and summary["totals"]["reconciled"]
    assert sorted(f["uri"] for f in summary["files"]) == [f"{scheme}://{bucket}/in/broken.manifest", f"{scheme}://{bucket}/in/lookout.manifest"]
    parquet = fs.glob(f"{bucket}/out/records/split=*/task=*/part-*.parquet")
    manifests = fs.glob(f"{bucket}/out/manifests/sagemaker/split=*/part-*-of-*.manifest")
    errors = fs.glob(f"{bucket}/out/errors/part-*.jsonl")
    assert parquet and manifests and errors
    # published: nothing left staged, no journal (only the list of what was published), the marker written
    assert not fs.glob(f"{bucket}/out/.labelbeam-tmp/**")
    assert [p.rsplit("/", 1)[-1] for p in fs.find(f"{bucket}/out/.labelbeam")] == ["published.json"]
    assert fs.exists(f"{bucket}/out/_SUCCESS")
    letters = [json.loads(line) for path in errors for line in fs.cat_file(path).splitlines()]
    assert len(letters) == summary["totals"]["dead_letters"] == 8
    assert sum(_parquet_rows(fs, p) for p in parquet) == summary["totals"]["records"]
    # Image refs resolve against the manifest's own folder, on the same store.
    lines = [json.loads(line) for path in manifests for line in fs.cat_file(path).splitlines()]
    assert lines and all(line["source-ref"].startswith(f"{scheme}://{bucket}/in/images/") for line in lines)
    text = fs.cat_file(f"{bucket}/out/run.json").decode()
    assert not any(secret in text for secret in store.secrets())
    return summary


def _parquet_rows(fs, path: str) -> int:
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def test_input_output_and_publish_through_storage_options(store, request):
    bucket = _bucket_name(request)
    fs = _upload_samples(store, bucket)
    code = run(["--input", store.url(f"{bucket}/in/*.manifest"), "--output", store.url(f"{bucket}/out"), "--output_format=sagemaker", RUNNER, "--validate_masks=false", store.flag()])
    assert code == 0
    summary = _check_published(store, fs, bucket)
    recorded = summary["options"]["job"]["storage"][store.protocol]  # the options reached the job, secrets redacted
    if store.protocol == "az":
        assert recorded["connection_string"] == "***"
    else:
        assert recorded["endpoint_url"] == store.endpoint


def test_the_usual_environment_needs_no_flag(store, request, monkeypatch):
    for name, value in store.environment().items():
        monkeypatch.setenv(name, value)
    bucket = _bucket_name(request)
    fs = _upload_samples(store, bucket)
    code = run(["--input", store.url(f"{bucket}/in/*.manifest"), "--output", store.url(f"{bucket}/out"), "--output_format=sagemaker", RUNNER, "--validate_masks=false"])
    assert code == 0
    _check_published(store, fs, bucket)


@pytest.mark.parametrize("scheme", ["abfs"])
def test_abfs_urls_are_azure_too(scheme, request, monkeypatch):
    pytest.importorskip("adlfs")
    store = Store(scheme, request.getfixturevalue("azurite_server"))
    _clean_environment(monkeypatch)
    bucket = "abfs-urls"
    fs = _upload_samples(store, bucket)
    code = run(["--input", store.url(f"{bucket}/in/*.manifest"), "--output", store.url(f"{bucket}/out"), "--output_format=sagemaker", RUNNER, "--validate_masks=false", store.flag()])
    assert code == 0
    _check_published(store, fs, bucket, scheme="abfs")


def _manifest_with_masks(store: Store, bucket: str, n: int) -> str:
    """A manifest on the store whose masks are on the store: n lines, valid PNG masks."""
    fs = store.bucket(bucket)
    for i in range(n):
        fs.pipe(f"{bucket}/masks/{i}.png", scratch_mask_png())
    body = "".join(_line(f"images/{i}.jpg", store.url(f"{bucket}/masks/{i}.png")) + "\n" for i in range(n))
    fs.pipe(f"{bucket}/in/masks.manifest", body.encode())
    return store.url(f"{bucket}/in/masks.manifest")


def _records(out: Path) -> list[dict]:
    return ds.dataset(out / "records", format="parquet", partitioning="hive").to_table().to_pylist()


def test_masks_are_checked_from_the_store(store, request, tmp_path):
    bucket = _bucket_name(request)
    manifest = _manifest_with_masks(store, bucket, 6)
    out = tmp_path / "out"
    code = run(["--input", manifest, "--output", str(out), RUNNER, store.flag()])
    assert code == 0
    rows = _records(out)
    assert len(rows) == 6
    assert all(row["mask"]["validated"] is True and row["issues"] == [] for row in rows)
    assert all(row["mask"]["uri"].startswith(store.url(f"{bucket}/masks/")) for row in rows)


# Without credentials, each client fails its own way: botocore finds none (no_credentials);
# adlfs given no account at all refuses to build a client (no_credentials); anonymous access
# to a private container is refused by Azurite (access_denied); gcsfs falls back to anonymous
# access, which real GCS refuses on a private bucket with 401 (fake-gcs-server checks no
# credentials: a proxy in front answers 401 as GCS does, to requests without a token).
NO_CREDENTIALS = {
    "s3": ("no_credentials", lambda s, proxy: {"s3": {"endpoint_url": s.endpoint}}),
    "gs": ("access_denied", lambda s, proxy: {"gs": {"endpoint_url": proxy}}),
    "az": ("no_credentials", lambda s, proxy: {}),
}


def test_masks_without_credentials_are_file_unreadable(store, request, tmp_path, monkeypatch):
    bucket = _bucket_name(request)
    manifest = _manifest_with_masks(store, bucket, 4)
    local = tmp_path / "in" / "masks.manifest"  # the manifest is read locally; only the masks lack credentials
    local.parent.mkdir()
    local.write_bytes(store.client().cat_file(manifest.split("://", 1)[1]))
    local.write_text(local.read_text().replace('"images/', f'"{store.url(bucket)}/images/'))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))  # no application default credentials
    reason, options = NO_CREDENTIALS[store.protocol]

    def anonymous(method, path, headers):
        return not any(k.lower() == "authorization" for k in headers)

    out = tmp_path / "out"
    with FaultProxy(store.endpoint, answer=lambda m, p, h: _gcs_401() if anonymous(m, p, h) else None) as proxy:
        code = run(["--input", str(local), "--output", str(out), RUNNER, "--storage_options=" + json.dumps(options(store, proxy.url)), f"--allowed_roots={store.url(bucket)}"])
    assert code == 0
    rows = _records(out)
    assert len(rows) == 4
    for row in rows:
        assert [i["code"] for i in row["issues"]] == ["FILE_UNREADABLE"], row["issues"]
        assert row["issues"][0]["message"].split(": ")[1] == reason, row["issues"]
        assert row["mask"]["validated"] is False
    summary = json.loads((out / "run.json").read_text())
    assert summary["totals"]["warnings_by_reason"] == {"FILE_UNREADABLE": [{"reason": reason, "count": 4}]}


def test_anonymous_access_to_a_private_azure_container_is_access_denied(request, tmp_path, monkeypatch):
    pytest.importorskip("adlfs")
    from tests.conftest import azurite_connection_string

    store = Store("az", request.getfixturevalue("azurite_server"))
    _clean_environment(monkeypatch)
    manifest = _manifest_with_masks(store, "anonymous", 3)
    out = tmp_path / "out"
    options = {"az": {"connection_string": azurite_connection_string(store.endpoint, key=False)}}
    local = tmp_path / "masks.manifest"
    local.write_bytes(store.client().cat_file(manifest.split("://", 1)[1]))
    code = run(["--input", str(local), "--output", str(out), RUNNER, "--storage_options=" + json.dumps(options), "--allowed_roots=az://anonymous"])
    assert code == 0
    reasons = {row["issues"][0]["message"].split(": ")[1] for row in _records(out)}
    assert reasons == {"access_denied"}


def _gcs_401() -> tuple[int, bytes]:
    body = {"error": {"code": 401, "message": "Anonymous caller does not have storage.objects.get access.", "errors": [{"reason": "required"}]}}
    return 401, json.dumps(body).encode()


# -- the endpoint dies mid-run --------------------------------------------------------------
@pytest.fixture
def few_retries(monkeypatch):
    """Each client retries a dead range on its own before giving up: s3fs 5 times inside
    botocore's retries, gcsfs 6 tries with backoff up to 32 s, the Azure SDK 3 retries after
    15, 18 and 24 s. The outcome is the same after one try; the suite stays fast. (The
    default give-up times are in docs/reliability.md.)"""
    import s3fs

    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 1)
    try:
        from gcsfs import retry
        from gcsfs.core import GCSFileSystem

        monkeypatch.setattr(GCSFileSystem, "_request", retry.retry_request(retries=1)(GCSFileSystem._request.__wrapped__))
    except ImportError:
        pass
    try:
        from azure.storage.blob._shared import policies, policies_async

        for module in (policies, policies_async):
            defaults = list(module.ExponentialRetry.__init__.__defaults__)
            monkeypatch.setattr(module.ExponentialRetry.__init__, "__defaults__", (0, 0, 0, *defaults[3:]))
    except ImportError:
        pass


def _upload_big_manifest(store: Store, bucket: str) -> int:
    fs = store.bucket(bucket)
    lines = (SAMPLES / "lookout-for-vision.manifest").read_bytes().splitlines()
    body = b"\n".join(lines * 4) + b"\n"
    fs.pipe(f"{bucket}/in/big.manifest", body)
    return body.count(b"\n")


def test_an_endpoint_dying_mid_run_is_an_incomplete_run_never_exit_0(store, request, tmp_path, few_retries):
    bucket = _bucket_name(request)
    lines = _upload_big_manifest(store, bucket)
    out = tmp_path / "out"
    with FaultProxy(store.endpoint, ranged_read_of("in/big.manifest")) as proxy:
        started = time.monotonic()
        code = run(["--input", store.url(f"{bucket}/in/big.manifest"), "--output", str(out), RUNNER, store.flag(proxy.url, fast_fail=True), "--validate_masks=false", "--shard_size=4KB"])
        elapsed = time.monotonic() - started
        failed = sum(1 for _, _, f in proxy.requests if f)
    assert failed > 0  # the reads did fail: the test proves something
    assert code == 4
    assert not (out / "_SUCCESS").exists() and not (out / "records").exists()  # nothing published
    [report] = list((out / ".labelbeam" / "failed").glob("*/run.json"))
    summary = json.loads(report.read_text())
    assert summary["exit_code"] == 4 and summary["totals"]["complete"] is False
    [entry] = summary["incomplete_files"]
    assert entry["uri"] == store.url(f"{bucket}/in/big.manifest") and entry["incomplete_reads"] >= 1
    assert summary["totals"]["dead_letters_by_code"].get("READ_FAILED", 0) == entry["incomplete_reads"]
    assert summary["totals"]["lines"] < lines
    assert elapsed < 120, elapsed  # one try per read: seconds, not the minutes of the defaults


# -- nothing creates a bucket ---------------------------------------------------------------
# The launch looks the output's bucket up before any work: refused in one line, never created
# (s3fs's makedirs would create it; gcsfs and adlfs would fail at the first write).
@pytest.fixture(params=["s3", "gs", "az"])
def store_for_missing_bucket(request, monkeypatch) -> Store:
    pytest.importorskip(CLIENTS[request.param])
    endpoint = request.getfixturevalue({"s3": "s3_server", "gs": "gcs_server", "az": "azurite_server"}[request.param])
    _clean_environment(monkeypatch)
    return Store(request.param, endpoint)


def test_a_missing_output_bucket_is_refused_at_launch_and_never_created(store_for_missing_bucket, tmp_path, capsys):
    store = store_for_missing_bucket
    manifest = SAMPLES / "lookout-for-vision.manifest"
    code = run(["--input", str(manifest), "--output", store.url("no-such-bucket/out"), RUNNER, "--validate_masks=false", store.flag()])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("labelbeam: error: --output bucket ") and "does not exist" in err and len(err.strip().splitlines()) == 1, err
    assert not store.client().exists("no-such-bucket")
