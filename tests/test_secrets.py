"""Secrets nowhere: URL userinfo (input URLs, endpoint_url) and secret-looking storage options
are redacted in run.json, errors/, records' source fields and what the CLI prints."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from pathlib import Path

import pytest

from pipelines.normalize_manifests import run

pytestmark = pytest.mark.e2e  # runs the whole job: deselect with -m "not e2e" for the fast subset

pytest.importorskip("aiohttp")  # fsspec's http filesystem

RUNNER = "--runner=FnApiRunner"
SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "sagemaker"
PASSWORD = "pw-Zq81x"
SECRET_OPTION = "so-77kJ2"


class _Manifests(http.server.BaseHTTPRequestHandler):
    """Serves samples/sagemaker/*.manifest at /data/<name>, only with the right basic auth."""

    def _authorised(self) -> bool:
        expected = "Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode()
        return self.headers.get("Authorization") == expected

    def do_GET(self):  # noqa: N802
        path = SAMPLES / self.path.rsplit("/", 1)[-1]
        if not self._authorised():
            self.send_response(401)
            self.end_headers()
            return
        if not self.path.startswith("/data/") or not path.is_file():
            self.send_response(404)
            self.end_headers()
            return
        body = path.read_bytes()
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
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Manifests)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def _everything(out: Path) -> bytes:
    return b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())


def test_userinfo_and_secret_options_reach_no_output(tmp_path, server, capfd):
    url = f"http://user:{PASSWORD}@127.0.0.1:{server}/data/broken.manifest"
    options = json.dumps({"http": {"client_kwargs": {"trust_env": False}, "headers": {"X-Api-Token": SECRET_OPTION}}})
    out = tmp_path / "out"
    code = run(["--input", url, "--output", str(out), RUNNER, "--validate_masks=false", f"--storage_options={options}"])
    captured = capfd.readouterr()
    assert code == 0, captured.err
    summary = json.loads((out / "run.json").read_text())
    assert summary["totals"]["lines"] > 0 and summary["totals"]["reconciled"]  # read through the auth
    assert summary["totals"]["dead_letters"] > 0  # broken.manifest has dead letters: errors/ is written
    [entry] = summary["files"]
    assert entry["uri"] == f"http://***@127.0.0.1:{server}/data/broken.manifest"
    blob = _everything(out) + (captured.out + captured.err).encode()
    assert PASSWORD.encode() not in blob and SECRET_OPTION.encode() not in blob
    assert b"***@127.0.0.1" in _everything(out / "errors") and b"***@127.0.0.1" in _everything(out / "records")


def test_endpoint_url_userinfo_is_redacted_even_when_the_run_fails(tmp_path, capfd):
    options = json.dumps({"s3": {"endpoint_url": f"http://admin:{PASSWORD}@127.0.0.1:9", "secret": SECRET_OPTION, "config_kwargs": {"retries": {"max_attempts": 1}}}})
    manifest = tmp_path / "in" / "a.manifest"
    manifest.parent.mkdir()
    manifest.write_bytes((SAMPLES / "lookout-for-vision.manifest").read_bytes())
    out = tmp_path / "out"
    code = run(["--input", str(manifest), "--output", str(out), RUNNER, "--validate_masks=false", f"--storage_options={options}"])
    captured = capfd.readouterr()
    assert code == 0
    text = (out / "run.json").read_text()
    assert json.loads(text)["options"]["job"]["storage"]["s3"]["endpoint_url"] == "http://***@127.0.0.1:9"
    blob = _everything(out) + (captured.out + captured.err).encode()
    assert PASSWORD.encode() not in blob and SECRET_OPTION.encode() not in blob
