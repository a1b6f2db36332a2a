"""Inputs and outputs are checked before any work: a glob keeps regular files only, an output
bucket must exist (never created), a storage failure at launch names its reason, and
--storage_timeout bounds the wait on an endpoint that accepts connections and never answers."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from pipelines.normalize_manifests import run
from pipelines.options import ConfigError, parse_launch
from transforms import storage

RUNNER = "--runner=FnApiRunner"
LINE = json.dumps({"source-ref": "s3://b/a.jpg", "class": 0, "class-metadata": {"class-name": "cat", "type": "groundtruth/image-classification", "job-name": "j", "human-annotated": "yes", "confidence": 1}})


@pytest.fixture
def hung_endpoint():
    """A loopback server that accepts every connection and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture
def credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def _s3_options(endpoint: str, **extra) -> str:
    return "--storage_options=" + json.dumps({"s3": {"endpoint_url": endpoint, "skip_instance_cache": True, **extra}})


def _refusal(argv) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_launch(argv)
    return str(caught.value)


# -- regular files only ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "symlink_to_device", "symlink_to_fifo"])
def test_a_glob_that_matches_a_fifo_or_device_is_refused_at_launch_like_the_path_itself(tmp_path, kind, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.manifest").write_text(LINE + "\n")
    special = folder / "z.manifest"
    if kind == "fifo":
        os.mkfifo(special)
    elif kind == "symlink_to_device":
        special.symlink_to("/dev/zero")
    else:
        os.mkfifo(tmp_path / "pipe")
        special.symlink_to(tmp_path / "pipe")
    for pattern in (f"{folder}/*", str(special)):
        message = _refusal(["--input", pattern, "--output", str(tmp_path / "out")])
        assert "not a regular file" in message and str(special) in message
    started = time.monotonic()
    code = run(["--input", f"{folder}/*", "--output", str(tmp_path / "out"), RUNNER])
    assert code == 2 and time.monotonic() - started < 30
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a regular file" in err
    assert not (tmp_path / "out").exists()


def test_a_symlink_to_a_regular_file_is_still_an_input(tmp_path):
    (tmp_path / "real.manifest").write_text(LINE + "\n")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "link.manifest").symlink_to(tmp_path / "real.manifest")
    assert storage.expand(f"{folder}/*") == [(str(folder / "link.manifest"), len(LINE) + 1)]


@pytest.mark.parametrize("incremental", [False, True])
def test_inputs_are_listed_once_per_launch(tmp_path, monkeypatch, incremental):
    """The launch lists the patterns once; the output check, the incremental plan and the
    reader take that listing (a second listing could also see a different set of files)."""
    for name in ("a", "b"):
        (tmp_path / f"{name}.manifest").write_text(LINE + "\n")
    listed = []
    real = storage.expand
    monkeypatch.setattr(storage, "expand", lambda pattern, *a, **k: listed.append(pattern) or real(pattern, *a, **k))
    pattern = str(tmp_path / "*.manifest")
    argv = ["--input", pattern, "--output", str(tmp_path / "out"), RUNNER, "--quiet"] + (["--incremental"] if incremental else [])
    assert run(argv) == 0
    assert listed == [pattern]
    import pyarrow.parquet as pq

    written = [p for p in (tmp_path / "out").rglob("*.parquet") if "records" in p.parts]
    assert sum(pq.read_metadata(p).num_rows for p in written) == 2  # both files were read


# -- object storage at launch (moto's S3 server) ---------------------------------------------


@pytest.fixture
def bucket(s3_endpoint, credentials):
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    if not fs.exists("launch-in"):
        fs.mkdir("launch-in")
    fs.pipe("launch-in/in/a.manifest", (LINE + "\n").encode())
    return fs


def test_an_output_bucket_that_does_not_exist_is_refused_and_never_created(s3_endpoint, bucket, tmp_path, capsys):
    code = run(["--input", "s3://launch-in/in/*.manifest", "--output", "s3://bucket-that-does-not-exist/out", RUNNER, _s3_options(s3_endpoint)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "s3://bucket-that-does-not-exist does not exist" in err
    assert not bucket.exists("bucket-that-does-not-exist")
    assert "bucket-that-does-not-exist" not in bucket.ls("")


def test_an_output_in_an_existing_bucket_is_accepted(s3_endpoint, bucket):
    launch = parse_launch(["--input", "s3://launch-in/in/*.manifest", "--output", "s3://launch-in/out", _s3_options(s3_endpoint)])
    assert launch.job.output == "s3://launch-in/out"


def test_missing_credentials_at_launch_are_named_not_no_match(s3_endpoint, bucket, tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for pattern in ("s3://launch-in/in/*.manifest", "s3://launch-in/in/a.manifest"):
        message = _refusal(["--input", pattern, "--output", str(tmp_path / "out"), _s3_options(s3_endpoint)])
        assert "(no_credentials)" in message and "no input file matches" not in message
    (tmp_path / "a.manifest").write_text(LINE + "\n")
    message = _refusal(["--input", str(tmp_path / "a.manifest"), "--output", "s3://launch-in/out", _s3_options(s3_endpoint)])
    assert "(no_credentials)" in message and "--output s3://launch-in" in message


def test_a_bad_storage_option_is_named_not_no_match(s3_endpoint, bucket, tmp_path):
    message = _refusal(["--input", "s3://launch-in/in/a.manifest", "--output", str(tmp_path / "out"), _s3_options(s3_endpoint, not_an_option=1)])
    assert "(bad_option)" in message and "not_an_option" in message


def test_a_missing_input_is_still_no_match(s3_endpoint, bucket, tmp_path):
    message = _refusal(["--input", "s3://launch-in/in/none-*.manifest", "--output", str(tmp_path / "out"), _s3_options(s3_endpoint)])
    assert message == "no input file matches s3://launch-in/in/none-*.manifest"


# -- --storage_timeout ---------------------------------------------------------------------------


def test_a_hung_input_endpoint_is_refused_within_the_storage_timeout(hung_endpoint, credentials, tmp_path, capsys):
    started = time.monotonic()
    code = run(["--input", "s3://hung/in/*.manifest", "--output", str(tmp_path / "out"), RUNNER, _s3_options(hung_endpoint), "--storage_timeout=2"])
    took = time.monotonic() - started
    assert code == 2 and took < 15
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "(unreachable)" in err and "2 s" in err


def test_a_hung_output_endpoint_is_refused_within_the_storage_timeout(hung_endpoint, credentials, tmp_path):
    (tmp_path / "a.manifest").write_text(LINE + "\n")
    started = time.monotonic()
    message = _refusal(["--input", str(tmp_path / "a.manifest"), "--output", "s3://hung/out", _s3_options(hung_endpoint), "--storage_timeout=2"])
    assert "(unreachable)" in message and time.monotonic() - started < 15


def test_client_timeouts_fit_in_the_storage_timeout_and_user_values_win():
    options = storage.client_timeouts("s3://b/k", 120)["config_kwargs"]
    assert 8 * options["read_timeout"] <= 120  # 8 requests at most for one stalled read (measured below) and options["connect_timeout"] <= options["read_timeout"]
    merged = storage._with_timeouts("s3://b/k", {"config_kwargs": {"read_timeout": 7}}, 120)
    assert merged["config_kwargs"]["read_timeout"] == 7 and merged["config_kwargs"]["connect_timeout"] == options["connect_timeout"]
    assert storage.client_timeouts("/local/path", 120) == {} and storage.client_timeouts("s3://b/k", None) == {}
    fs, _ = storage.filesystem("s3://b/k", {"s3": {"endpoint_url": "http://127.0.0.1:9", "skip_instance_cache": True}}, 8)
    assert fs.retries == 2 and fs.config_kwargs["read_timeout"] == 1.0 and fs.config_kwargs["retries"]["max_attempts"] == 1


def test_the_storage_timeout_is_a_documented_setting():
    launch = parse_launch(["--input", __file__, "--output", "/tmp/x-never-written"])
    assert launch.job.storage_timeout == storage.DEFAULT_STORAGE_TIMEOUT
    assert launch.job.storage_config().timeout == storage.DEFAULT_STORAGE_TIMEOUT
    reliability = (Path(__file__).resolve().parents[1] / "docs" / "reliability.md").read_text()
    assert "--storage_timeout" in reliability


# -- masks behind a hung endpoint (whole job runs) --------------------------------------------


def _masks_manifest(tmp_path: Path, n: int = 3) -> Path:
    from tests.test_hostile_references import _line

    manifest = tmp_path / "in" / "m.manifest"
    manifest.parent.mkdir()
    manifest.write_text("".join(_line(f"s3://hung/images/{i}.jpg", f"s3://hung/masks/{i}.png") + "\n" for i in range(n)))
    return manifest


@pytest.mark.e2e
@pytest.mark.parametrize("limits", [("--storage_timeout=2",), ("--storage_timeout=600", "--mask_timeout_seconds=1")], ids=["client_timeouts", "check_deadline"])
def test_masks_behind_a_hung_endpoint_are_file_unreadable_unreachable(hung_endpoint, credentials, tmp_path, limits):
    import pyarrow.dataset as ds

    manifest = _masks_manifest(tmp_path)
    out = tmp_path / "out"
    started = time.monotonic()
    code = run(["--input", str(manifest), "--output", str(out), RUNNER, _s3_options(hung_endpoint), "--allowed_roots=s3://hung", *limits])
    assert code == 0 and time.monotonic() - started < 120
    rows = ds.dataset(out / "records", format="parquet", partitioning="hive").to_table().to_pylist()
    assert len(rows) == 3
    for row in rows:
        assert [i["code"] for i in row["issues"]] == ["FILE_UNREADABLE"]
        assert row["issues"][0]["message"].split(": ")[1] == "unreachable"
    summary = json.loads((out / "run.json").read_text())
    assert summary["totals"]["warnings_by_reason"] == {"FILE_UNREADABLE": [{"reason": "unreachable", "count": 3}]}


@pytest.mark.e2e
def test_an_endpoint_hanging_mid_run_gives_exit_4_within_the_storage_timeout(s3_endpoint, credentials, tmp_path):
    from tests.faults import FaultProxy
    from tests.test_storage_faults import _upload_big_manifest

    lines = _upload_big_manifest(s3_endpoint, "hangs")

    def hang(method, path, headers):  # planning reads from byte 0; every later range hangs
        rng = headers.get("Range") or headers.get("range") or ""
        return method == "GET" and path.startswith("/hangs/in/big.manifest") and rng.startswith("bytes=") and not rng.startswith("bytes=0-")

    out = tmp_path / "out"
    with FaultProxy(s3_endpoint, hang=hang) as proxy:
        started = time.monotonic()
        code = run(["--input", "s3://hangs/in/big.manifest", "--output", str(out), RUNNER, _s3_options(proxy.url), "--validate_masks=false", "--shard_size=8KB", "--storage_timeout=4"])
        took = time.monotonic() - started
    assert code == 4 and took < 60, took  # measured: 22 s with 2 shards behind the hung endpoint
    [report] = list((out / ".labelbeam" / "failed").glob("*/run.json"))
    summary = json.loads(report.read_text())
    assert summary["totals"]["complete"] is False and summary["totals"]["lines"] < lines
    assert summary["totals"]["dead_letters_by_code"].get("READ_FAILED", 0) >= 1


def test_one_stalled_read_gives_up_after_about_the_storage_timeout(s3_endpoint, credentials):
    import s3fs

    from tests.faults import FaultProxy

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    if not fs.exists("stalls"):
        fs.mkdir("stalls")
    fs.pipe("stalls/big", b"x\n" * 100_000)

    def hang(method, path, headers):
        return method == "GET" and (headers.get("Range") or headers.get("range") or "").startswith("bytes=")

    with FaultProxy(s3_endpoint, hang=hang) as proxy:
        store = storage.Storage({"s3": {"endpoint_url": proxy.url, "skip_instance_cache": True}}, 4)
        started = time.monotonic()
        with pytest.raises(Exception) as caught:  # noqa: PT011 - botocore's ReadTimeoutError
            with store.open("s3://stalls/big", "rb") as handle:
                handle.seek(50_000)
                handle.read(100)
        took = time.monotonic() - started
        gets = sum(1 for method, _, _ in proxy.requests if method == "GET")
    assert storage.failure_reason(caught.value) == storage.UNREACHABLE
    assert 3 < took < 25 and gets <= 8, (took, gets)  # 7 s measured alone; without the limit a read waits minutes


@pytest.fixture
def denying_endpoint():
    """A loopback S3 endpoint that answers every request 403 AccessDenied, as S3 does."""
    import http.server

    body = b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>'

    class Deny(http.server.BaseHTTPRequestHandler):
        def _deny(self):
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_PUT = do_POST = _deny

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Deny)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_access_denied_at_launch_is_named(denying_endpoint, credentials, tmp_path):
    for pattern in ("s3://denied/in/*.manifest", "s3://denied/in/a.manifest"):
        message = _refusal(["--input", pattern, "--output", str(tmp_path / "out"), _s3_options(denying_endpoint), "--storage_timeout=10"])
        assert "(access_denied)" in message and "no input file matches" not in message
    (tmp_path / "a.manifest").write_text(LINE + "\n")
    message = _refusal(["--input", str(tmp_path / "a.manifest"), "--output", "s3://denied/out", _s3_options(denying_endpoint), "--storage_timeout=10"])
    assert "(access_denied)" in message


def test_a_client_timeout_names_the_storage_timeout_like_the_deadline_does():
    """Whichever runs out first at launch, the client's read timeout (sized to fit inside the
    limit) or labelbeam's own deadline, the refusal names the limit the user can raise."""
    from botocore.exceptions import ReadTimeoutError

    from pipelines.options import _storage_refused

    by_client = str(_storage_refused("listing s3://b/k", ReadTimeoutError(endpoint_url="http://127.0.0.1:1/b/k"), 2))
    by_deadline = str(_storage_refused("listing s3://b/k", storage.StorageTimeout("no answer from storage within 2 s (listing); --storage_timeout sets the limit"), 2))
    for message in (by_client, by_deadline):
        assert "(unreachable)" in message and "2 s" in message and message.count("2 s") == 1
