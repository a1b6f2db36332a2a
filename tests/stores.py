"""The three object stores the tests run the job against, each on its emulator on loopback
(tests only): S3 (moto's server, s3fs), GCS (fake-gcs-server, gcsfs), Azure Blob (Azurite, adlfs).

A `Store` says how the job reaches its emulator the two documented ways (`--storage_options`,
or the store's usual environment variables), how a test writes and reads objects there itself,
and how to make its client give up fast when an endpoint dies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import unquote

from tests.conftest import azurite_connection_string

S3_FAST_FAIL = {"retries": {"max_attempts": 1, "mode": "standard"}, "connect_timeout": 2, "read_timeout": 5}
# Every variable any of the three clients reads credentials or endpoints from: a test sets the
# ones it means and clears the rest.
STORE_VARIABLES = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL",
    "STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS",
    "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_ANON", "AZURE_STORAGE_CLIENT_ID",
)


@dataclass(frozen=True)
class Store:
    scheme: str  # the URL scheme the job is given: s3, gs, az (abfs is az's alias)
    endpoint: str  # the emulator's http://127.0.0.1:PORT

    @property
    def protocol(self) -> str:
        return {"abfs": "az"}.get(self.scheme, self.scheme)

    def url(self, path: str) -> str:
        return f"{self.scheme}://{path}"

    def options(self, endpoint: str | None = None, fast_fail: bool = False) -> dict:
        """Endpoint and credentials as the job's `--storage_options` value (fsspec's instance
        cache left on, as users run it: each test clears it first). `fast_fail`: one try,
        short timeouts, where the client takes them as options (botocore); gcsfs and the Azure
        SDK take no such option (the fault tests patch their retries instead)."""
        endpoint = endpoint or self.endpoint
        if self.protocol == "s3":
            config = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
            return {"s3": {**config, "config_kwargs": S3_FAST_FAIL} if fast_fail else config}
        if self.protocol == "gs":
            return {"gs": {"endpoint_url": endpoint, "token": "anon"}}
        return {"az": {"connection_string": azurite_connection_string(endpoint)}}

    def flag(self, endpoint: str | None = None, fast_fail: bool = False) -> str:
        return "--storage_options=" + json.dumps(self.options(endpoint, fast_fail))

    def environment(self) -> dict[str, str]:
        """The same, as the store's usual environment variables (no flag)."""
        if self.protocol == "s3":
            return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
        if self.protocol == "gs":
            return {"STORAGE_EMULATOR_HOST": self.endpoint}
        return {"AZURE_STORAGE_CONNECTION_STRING": azurite_connection_string(self.endpoint)}

    def secrets(self) -> list[str]:
        """Credential values that must never appear in an output."""
        if self.protocol == "s3":
            return []  # moto's "testing" is too common a word to grep for
        if self.protocol == "az":
            from tests.conftest import AZURITE_KEY

            return [AZURITE_KEY]
        return []

    def client(self):
        """An fsspec filesystem on the emulator, for the test's own set-up and checks."""
        if self.protocol == "s3":
            import s3fs

            return s3fs.S3FileSystem(endpoint_url=self.endpoint, key="testing", secret="testing", skip_instance_cache=True)
        if self.protocol == "gs":
            from gcsfs.core import GCSFileSystem

            return GCSFileSystem(endpoint_url=self.endpoint, token="anon", skip_instance_cache=True)
        import adlfs

        return adlfs.AzureBlobFileSystem(connection_string=azurite_connection_string(self.endpoint), skip_instance_cache=True)

    def bucket(self, name: str):
        """Creates a bucket (a container on Azure) and returns the client."""
        fs = self.client()
        fs.mkdir(name)
        return fs


def ranged_read_of(name: str):
    """A fault-proxy predicate: a GET of an object whose key ends in `name`, for a byte range
    not starting at 0 (the job plans from byte 0, so planning works and reading fails). Every
    store's client asks with `Range` (Azure's may send `x-ms-range`); GCS quotes the key."""

    def matches(method: str, path: str, headers: dict) -> bool:
        lowered = {k.lower(): v for k, v in headers.items()}
        rng = lowered.get("x-ms-range") or lowered.get("range") or ""
        key = unquote(path.split("?", 1)[0])
        return method == "GET" and key.endswith(name) and rng.startswith("bytes=") and not rng.startswith("bytes=0-")

    return matches


def scratch_mask_png() -> bytes:
    """The mask the store tests upload: 16x8 white (BACKGROUND), one 'scratch' block (#2ca02c)."""
    import io

    import numpy as np
    from PIL import Image

    rgb = np.full((8, 16, 3), 255, np.uint8)
    rgb[2:4, 2:6] = (0x2C, 0xA0, 0x2C)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()
