"""Fixtures shared by the test modules, and where the third-party test data is.

Some tests read real files of other projects (public datasets, converter test files, format
reference pages) that are kept beside the repository, never in it: by default in `../shared`
relative to the repository root, else wherever LABELBEAM_TEST_DATA points (a relative path is
taken from the repository root). Without them those tests skip, saying which data they need.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA_VARIABLE = "LABELBEAM_TEST_DATA"


def shared_data(*parts: str) -> Path:
    """A path in the third-party test data (see the module docstring); it may not exist."""
    root = (REPO / os.environ.get(SHARED_DATA_VARIABLE, str(Path("..") / "shared"))).resolve()
    return root.joinpath(*parts)


def need_shared_data(*parts: str) -> Path:
    """shared_data(*parts), or a skip that names the data (relative to its root) and the variable."""
    path = shared_data(*parts)
    if not path.exists():
        pytest.skip(f"needs the third-party test data {'/'.join(parts)}: set {SHARED_DATA_VARIABLE} (README, Tests)")
    return path


# google-auth probes the cloud metadata server (a link-local address) when it finds no
# credentials; tests talk to loopback only. Read when google.auth is first imported.
os.environ.setdefault("NO_GCE_CHECK", "true")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def worker_pool():
    """Beam's external SDK worker pool, as Flink and Dataflow workers run it, on loopback."""
    port = _free_port()
    env = dict(os.environ)
    # The pool starts workers with the `python` on PATH: this interpreter's, with labelbeam on it.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    pool = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        os.killpg(pool.pid, signal.SIGKILL)
        pytest.fail("the worker pool did not start")
    yield port
    os.killpg(pool.pid, signal.SIGKILL)  # the pool and the SDK workers it started
    pool.wait(timeout=30)


@pytest.fixture(scope="module")
def s3_endpoint():
    """A real S3 endpoint: moto's server on loopback."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


# -- object-store emulators (installed by scripts/install_emulators.sh) ------------------------
EMULATORS = Path(os.environ.get("LABELBEAM_EMULATORS_DIR") or Path.home() / ".cache" / "labelbeam" / "emulators")
# The well-known development account every Azure Storage emulator and SDK accepts (public).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _pinned(name: str) -> str:
    script = (REPO / "scripts" / "install_emulators.sh").read_text()
    return re.search(rf"^{name}=(\S+)$", script, re.M).group(1)


def emulator_binary(folder: str, version_var: str, relative: str) -> str | None:
    """The emulator install_emulators.sh put in the cache, else one on PATH, else None."""
    cached = EMULATORS / folder / f"v{_pinned(version_var)}" / relative
    if cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    return shutil.which(Path(relative).name)


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
        return True
    except urllib.error.HTTPError:
        return True  # an HTTP answer, whatever its status
    except OSError:
        return False


def _die_with_parent():
    """In the child: the kernel kills it when the test process dies, even by SIGKILL (Linux),
    so a killed test run leaves no emulator behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _serve(argv: list[str], probe: str, name: str, value: str):
    """Starts an emulator in its own process group, waits until `probe` answers, yields `value`, stops it."""
    log = tempfile.TemporaryFile()  # a file, not a pipe: a chatty emulator never blocks on it
    process = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True, preexec_fn=_die_with_parent)
    deadline = time.time() + 60
    while not _answers(probe):
        if process.poll() is not None or time.time() > deadline:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            log.seek(0)
            pytest.fail(f"{name} did not start: {log.read().decode(errors='replace')[-2000:]}")
        time.sleep(0.1)
    try:
        yield value
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on loopback, in a process of its own (the job under test does not share
    its interpreter with the server): the object-store matrix's S3."""
    pytest.importorskip("moto.server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    yield from _serve([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], f"{url}/", "moto's server", url)


@pytest.fixture(scope="session")
def gcs_server():
    """fake-gcs-server on loopback (in memory, plain HTTP): its URL, the `endpoint_url` gcsfs takes."""
    binary = emulator_binary("fake-gcs-server", "FAKE_GCS_VERSION", "fake-gcs-server")
    if binary is None:
        pytest.skip("fake-gcs-server is not installed (scripts/install_emulators.sh)")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [binary, "-scheme", "http", "-host", "127.0.0.1", "-port", str(port), "-backend", "memory",
            "-public-host", f"127.0.0.1:{port}", "-external-url", url, "-log-level", "error"]
    yield from _serve(argv, f"{url}/storage/v1/b", "fake-gcs-server", url)


@pytest.fixture(scope="session")
def azurite_server():
    """Azurite's blob service on loopback (in memory): its blob endpoint, for a connection string."""
    binary = emulator_binary("azurite", "AZURITE_VERSION", "node_modules/.bin/azurite-blob")
    if binary is None:
        pytest.skip("Azurite is not installed (scripts/install_emulators.sh)")
    if shutil.which("node") is None:
        pytest.skip("Azurite needs node, which is not installed")
    port = _free_port()
    argv = [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
            "--disableTelemetry", "--skipApiVersionCheck", "--loose", "--silent"]
    url = f"http://127.0.0.1:{port}"
    yield from _serve(argv, f"{url}/", "Azurite", url)


def azurite_connection_string(endpoint: str, key: bool = True) -> str:
    """A connection string for Azurite's development account; without the key, anonymous."""
    secret = f"AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};" if key else ""
    return f"DefaultEndpointsProtocol=http;{secret}BlobEndpoint={endpoint}/{AZURITE_ACCOUNT};"


@pytest.fixture(autouse=True)
def _no_object_store_client_from_an_earlier_test():
    """fsspec keeps one client per set of options for the life of the process; a test that runs
    the job in process after another test changed the credentials in the environment would get
    the earlier client (NoCredentialsError). A job runs once per process: tests start clean."""
    import sys

    for module, name in (("s3fs", "S3FileSystem"), ("gcsfs", "GCSFileSystem"), ("adlfs", "AzureBlobFileSystem")):
        if module in sys.modules:
            getattr(sys.modules[module], name).clear_instance_cache()
    yield
