"""A manifest is untrusted: references outside the allowed roots are never opened, and no byte
of a file that is not the expected type reaches any output."""

from __future__ import annotations

import http.server
import io
import json
import os
import threading
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
from PIL import Image

from pipelines.normalize_manifests import run
from transforms import storage

pytestmark = pytest.mark.e2e  # runs the whole job: deselect with -m "not e2e" for the fast subset

RUNNER = "--runner=FnApiRunner"
SECRET = "root:x:0:0:TOPSECRET-1b7f"
COLOR_MAP = {"0": {"class-name": "BACKGROUND", "hex-color": "#ffffff", "confidence": 0.0}, "1": {"class-name": "scratch", "hex-color": "#2ca02c", "confidence": 0.0}}


def _line(image: str, mask: str) -> str:
    return json.dumps({
        "source-ref": image,
        "anomaly-label": 1,
        "anomaly-label-metadata": {"class-name": "anomaly", "type": "groundtruth/image-classification", "job-name": "j", "human-annotated": "yes", "confidence": 1},
        "anomaly-mask-ref": mask,
        "anomaly-mask-ref-metadata": {"internal-color-map": COLOR_MAP, "type": "groundtruth/semantic-segmentation", "job-name": "j", "human-annotated": "yes"},
    })


def _png(width=16, height=8) -> bytes:
    rgb = np.full((height, width, 3), 255, np.uint8)
    rgb[2:4, 2:6] = (0x2C, 0xA0, 0x2C)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


class _Counting(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        _Counting.requests.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(SECRET.encode())

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def http_port():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Counting.requests = []
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def opened(monkeypatch):
    """Every URL the job resolves to a filesystem (every open and probe goes through it)."""
    seen: list[str] = []
    original = storage.Storage.fs

    def recording(self, url):
        seen.append(url)
        return original(self, url)

    monkeypatch.setattr(storage.Storage, "fs", recording)
    return seen


def _corpus(tmp_path: Path, port: int):
    data, outside = tmp_path / "data", tmp_path / "outside"
    (data / "masks").mkdir(parents=True)
    outside.mkdir()
    secret = outside / "secret.png"
    secret.write_text(SECRET)
    (data / "masks" / "good.png").write_bytes(_png())
    (data / "masks" / "text.png").write_text(SECRET)  # inside the root, but not a PNG
    os.symlink(secret, data / "masks" / "link.png")
    hostile = {
        "absolute": str(secret),
        "etc": "/etc/passwd",
        "dotdot": "../../../../../../../../etc/shadow",
        "dotdot_outside": "../outside/secret.png",
        "proc": "file:///proc/self/environ",
        "http": f"http://127.0.0.1:{port}/mask.png",
        "symlink": "masks/link.png",
    }
    lines = [_line(f"images/{name}.jpg", ref) for name, ref in hostile.items()]
    lines.append(_line("images/good.jpg", "masks/good.png"))
    lines.append(_line("images/text.jpg", "masks/text.png"))
    lines.append(_line(f"http://127.0.0.1:{port}/image.jpg", "masks/good.png"))  # a hostile image ref
    manifest = data / "in.manifest"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, hostile, secret


def _all_output_bytes(out: Path) -> bytes:
    return b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())


def test_hostile_references_are_never_opened_nor_quoted(tmp_path, http_port, opened, capfd):
    manifest, hostile, secret = _corpus(tmp_path, http_port)
    out = tmp_path / "out"
    code = run(["--input", str(manifest), "--output", str(out), RUNNER, "--probe_images"])
    assert code == 0
    assert _Counting.requests == []  # no HTTP request was sent
    touched = " ".join(opened)
    for name in ("secret.png", "/etc/passwd", "/etc/shadow", "/proc/", "127.0.0.1", "link.png"):
        assert name not in touched, name
    rows = ds.dataset(out / "records", format="parquet", partitioning="hive").to_table().to_pylist()
    by_mask = {r["mask"]["uri"].rsplit("/", 1)[-1]: r for r in rows if "127.0.0.1" not in r["image"]["uri"]}
    assert len(rows) == len(hostile) + 3
    for ref in hostile.values():
        row = by_mask[ref.rsplit("/", 1)[-1]]
        codes = [i["code"] for i in row["issues"]]
        assert "REFERENCE_OUTSIDE_ROOTS" in codes and row["mask"]["validated"] is False, (ref, codes)
    assert by_mask["good.png"]["mask"]["validated"] is True
    assert [i["code"] for i in by_mask["text.png"]["issues"] if i["code"].startswith("MASK")] == ["MASK_NOT_PNG"]
    remote = next(r for r in rows if "127.0.0.1" in r["image"]["uri"])
    assert [i["code"] for i in remote["issues"]].count("REFERENCE_OUTSIDE_ROOTS") == 1
    summary = json.loads((out / "run.json").read_text())
    assert summary["totals"]["warnings_by_code"]["REFERENCE_OUTSIDE_ROOTS"] == len(hostile) + 1
    captured = capfd.readouterr()
    for blob in (_all_output_bytes(out), (captured.out + captured.err).encode()):
        assert SECRET.encode() not in blob and b"TOPSECRET" not in blob and b"root:x:0" not in blob


def test_allowed_roots_widen_what_may_be_read(tmp_path, http_port):
    manifest, _, secret = _corpus(tmp_path, http_port)
    out = tmp_path / "out"
    code = run(["--input", str(manifest), "--output", str(out), RUNNER, f"--allowed_roots={secret.parent}"])
    assert code == 0
    rows = ds.dataset(out / "records", format="parquet", partitioning="hive").to_table().to_pylist()
    by_mask = {r["mask"]["uri"]: r for r in rows}
    absolute = [i["code"] for i in by_mask[str(secret)]["issues"]]
    assert "REFERENCE_OUTSIDE_ROOTS" not in absolute and "MASK_NOT_PNG" in absolute  # read, then refused
    # The symlink's target is now inside an allowed root too.
    link = next(r for uri, r in by_mask.items() if uri.endswith("link.png"))
    assert "MASK_NOT_PNG" in [i["code"] for i in link["issues"]]
    assert _Counting.requests == []  # http is still outside
    assert SECRET.encode() not in _all_output_bytes(out)


@pytest.mark.parametrize(
    "url, roots, inside",
    [
        ("/data/masks/a.png", ["/data"], True),
        ("/database/a.png", ["/data"], False),
        ("/data/../etc/passwd", ["/data"], False),
        ("file:///data/a.png", ["/data"], True),
        ("s3://bucket/masks/a.png", ["s3://bucket"], True),
        ("s3a://bucket/masks/a.png", ["s3://bucket"], True),
        ("s3://bucket/masks/../../other/a.png", ["s3://bucket"], False),
        ("s3://bucket-2/a.png", ["s3://bucket"], False),
        ("s3://user:pw@bucket/a.png", ["s3://bucket"], True),
        ("gs://bucket/a.png", ["s3://bucket"], False),
        ("http://127.0.0.1:80/a.png", ["/data"], False),
        ("https://host/data/a.png", ["https://host/data"], True),
        ("zip://a.png::file:///data/x.zip", ["/data"], False),
    ],
)
def test_within_roots(url, roots, inside):
    assert storage.within_roots(url, roots) is inside


def test_default_root_is_the_bucket_on_object_storage_and_the_folder_elsewhere():
    assert storage.default_root("s3://bucket/manifests/a.manifest") == "s3://bucket"
    assert storage.default_root("/data/manifests/a.manifest") == "/data/manifests"
    assert storage.default_root("https://host/x/a.manifest") == "https://host/x"
