"""Secrets planted in every place a URL can come from (manifest lines, --input, --output,
--storage_options, a config file, the environment) reach no output file and no terminal line.

The job runs as users run it (the CLI in a subprocess), so stderr is what a terminal shows;
every file under the output folder is read back: records/, manifests/, errors/, stats/
(dead_letters.parquet included), run.json, report.html."""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.faults import closed_port
from tests.stores import scratch_mask_png

pytestmark = pytest.mark.e2e  # runs the whole job

pytest.importorskip("aiohttp")

REPO = Path(__file__).resolve().parents[1]
USER, PASSWORD = "ann", "pw-manifest-9Qz"
SECRETS = {
    "manifest": PASSWORD,
    "input": "pw-input-4Lk",
    "output": "pw-output-7Hd",
    "storage_options": "pw-options-2Wx",
    "storage_key": "sk-options-8Rt",
    "config": "pw-config-5Mn",
    "environment": "pw-env-3Gv",
}
COLOR_MAP = {"0": {"class-name": "BACKGROUND", "hex-color": "#ffffff"}, "1": {"class-name": "scratch", "hex-color": "#2ca02c"}}


class _Files(http.server.BaseHTTPRequestHandler):
    """Masks and a manifest over HTTP, only with basic auth (the manifest's or --input's user)."""

    manifest = b""

    def do_GET(self):  # noqa: N802
        allowed = {"Basic " + base64.b64encode(f"{USER}:{p}".encode()).decode() for p in (PASSWORD, SECRETS["input"])}
        if self.headers.get("Authorization") not in allowed:
            self.send_response(401)
            self.end_headers()
            return
        body = self.manifest if self.path.endswith(".manifest") else scratch_mask_png() if self.path.endswith(".png") else None
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _lookout(image: str, mask: str, **meta) -> str:
    return json.dumps({
        "source-ref": image,
        "anomaly-label": 1,
        "anomaly-label-metadata": {"class-name": "anomaly", "type": "groundtruth/image-classification", "job-name": "j", "human-annotated": "yes", "confidence": 1, **meta},
        "anomaly-mask-ref": mask,
        "anomaly-mask-ref-metadata": {"internal-color-map": COLOR_MAP, "type": "groundtruth/semantic-segmentation", "job-name": "j", "human-annotated": "yes"},
    })


def _manifest(host: str) -> bytes:
    auth = f"{USER}:{PASSWORD}"
    lines = [
        _lookout(f"http://{auth}@{host}/images/0.jpg", f"http://{auth}@{host}/masks/0.png"),  # opened with it
        _lookout(f"s3://{auth}@bucket/images/1.jpg", f"s3://{auth}@bucket/masks/1.png"),  # REFERENCE_INVALID
        _lookout("s3://bucket/images/2.jpg", "s3://bucket/masks/2.png"),  # the environment's endpoint, dead
        _lookout(f"http://{auth}@{host}/images/3.jpg", "masks/3.png", type=[f"http://{auth}@{host}/x"]),  # wrong type
        json.dumps({"source-ref": f"s3:\\/\\/{auth}@bucket\\/4.jpg"}).replace("\\\\/", "\\/")[:-1],  # cut short: INVALID_JSON
        '{"source-ref": "http://%s@%s/images/5.jpg", "weird-ref": 3}' % (auth, host),  # no metadata: a dead letter
    ]
    return ("\n".join(lines) + "\n").encode()


def _run(argv: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.normalize_manifests", *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        PYTHONPATH=str(REPO),
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ENDPOINT_URL=f"http://admin:{SECRETS['environment']}@127.0.0.1:{closed_port()}",
    )
    return env


def _blob(out: Path, done: subprocess.CompletedProcess) -> bytes:
    files = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file()) if out.exists() else b""
    return files + done.stdout.encode() + done.stderr.encode()


def test_secrets_from_every_source_reach_no_output_and_no_terminal(tmp_path, server):
    _Files.manifest = _manifest(server)
    (tmp_path / "in").mkdir()
    local = tmp_path / "in" / "local.manifest"
    local.write_bytes(_Files.manifest)
    config = tmp_path / "job.yaml"
    config.write_text(json.dumps({"job": {"storage": {"s3": {"config_kwargs": {"retries": {"max_attempts": 1}}}, "http": {"headers": {"Authorization-Token": SECRETS["config"]}}},
                                          "validate": {"allowed_roots": [f"http://{server}", "s3://bucket"]}}}))
    options = json.dumps({"s3": {"key": SECRETS["storage_key"], "secret": SECRETS["storage_key"], "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1}},
                          "http": {"client_kwargs": {"trust_env": False}, "headers": {"X-Token": SECRETS["storage_options"]}}})
    out = tmp_path / "out"
    remote_input = f"http://{USER}:{SECRETS['input']}@{server}/data/remote.manifest"
    done = _run(["--input", str(local), remote_input, "--output", str(out), "--config", str(config), f"--storage_options={options}",
                 "--runner=FnApiRunner", "--output_format=sagemaker", "--output_format=coco", "--storage_timeout=20"], _env(tmp_path))
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "run.json").read_text())
    assert summary["totals"]["lines"] == 12 and summary["totals"]["reconciled"]
    letters = [json.loads(line) for p in (out / "errors").rglob("*.jsonl") for line in p.read_text().splitlines()]
    assert sorted({(x["line"], x["code"]) for x in letters}) == [(4, "INVALID_FIELD_TYPE"), (5, "INVALID_JSON"), (6, "MISSING_LABEL_METADATA")]
    assert (out / "report.html").exists() and (out / "stats" / "dead_letters.parquet").exists()
    codes = summary["totals"]["warnings_by_code"]
    assert codes.get("REFERENCE_INVALID") == 2 and "FILE_UNREADABLE" in codes
    blob = _blob(out, done)
    for where, secret in SECRETS.items():
        assert secret.encode() not in blob, f"the {where} secret leaked"
    assert b"***@" + server.encode() in blob  # redacted, not dropped
    records = b"".join(p.read_bytes() for p in (out / "records").rglob("*.parquet"))
    assert b"***@" + server.encode() + b"/masks/0.png" in records  # mask.uri, after it was opened with the password


@pytest.mark.parametrize("flag", ["input", "output"])
def test_a_password_in_an_object_store_input_or_output_is_never_printed(tmp_path, flag):
    (tmp_path / "a.manifest").write_text(_lookout("images/0.jpg", "masks/0.png") + "\n")
    secret = SECRETS[flag]
    url = f"s3://{USER}:{secret}@bucket/{'in/*.manifest' if flag == 'input' else 'out'}"
    argv = ["--input", url, "--output", str(tmp_path / "out")] if flag == "input" else ["--input", str(tmp_path / "a.manifest"), "--output", url]
    done = _run([*argv, "--runner=FnApiRunner"], _env(tmp_path))
    assert done.returncode == 2
    assert secret not in done.stdout + done.stderr and "***@bucket" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
