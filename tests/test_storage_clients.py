"""How transforms/storage.py meets gcsfs and adlfs, without a server: which gcsfs class an
emulator endpoint gets, the scheme found URLs keep, and the storage reason of each client's
errors. (tests/test_object_stores.py runs the same against the emulators.)"""

from __future__ import annotations

import pytest

from transforms import storage


def test_a_gcs_emulator_endpoint_gets_the_json_api_filesystem(monkeypatch):
    pytest.importorskip("gcsfs")
    import gcsfs

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    fs, path = storage.filesystem("gs://bucket/in/a.manifest", {"gs": {"endpoint_url": "http://127.0.0.1:1", "token": "anon"}})
    assert path == "bucket/in/a.manifest"
    assert type(fs).__name__ == "JsonApiGCSFileSystem" and fs._location == "http://127.0.0.1:1"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:1")
    fs, _ = storage.filesystem("gcs://bucket/x", {"gs": {"token": "anon"}})
    assert type(fs).__name__ == "JsonApiGCSFileSystem"
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    fs, _ = storage.filesystem("gs://bucket/x", {"gs": {"token": "anon"}})
    assert type(fs) is gcsfs.GCSFileSystem  # real GCS: gcsfs's own default class


def test_found_urls_keep_the_scheme_the_user_wrote():
    assert storage._as_given("az://c/in/*.manifest", "abfs://c/in/a.manifest") == "az://c/in/a.manifest"
    assert storage._as_given("abfs://c/in/*.manifest", "abfs://c/in/a.manifest") == "abfs://c/in/a.manifest"
    assert storage._as_given("/data/*.manifest", "/data/a.manifest") == "/data/a.manifest"


def test_gcs_http_errors_have_a_storage_reason():
    pytest.importorskip("gcsfs")
    from gcsfs.retry import HttpError

    assert storage.failure_reason(HttpError({"code": 401, "message": "Anonymous caller"})) == storage.ACCESS_DENIED
    assert storage.failure_reason(HttpError({"code": 403, "message": "Forbidden"})) == storage.ACCESS_DENIED
    assert storage.failure_reason(HttpError({"code": 404, "message": "No such object"})) == storage.NOT_FOUND
    assert storage.failure_reason(HttpError({"code": 503, "message": "Backend Error"})) == storage.IO_ERROR


def test_azure_errors_have_a_storage_reason(monkeypatch):
    pytest.importorskip("adlfs")
    import adlfs
    from azure.core.exceptions import HttpResponseError

    denied = HttpResponseError(message="Server failed to authenticate the request.")
    denied.status_code = 403
    assert storage.failure_reason(denied) == storage.ACCESS_DENIED
    for name in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_NAME"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError) as nothing_given:  # adlfs, given no account and no connection string
        adlfs.AzureBlobFileSystem(skip_instance_cache=True)
    assert storage.failure_reason(nothing_given.value) == storage.NO_CREDENTIALS
    assert storage.failure_reason(ValueError("some other value")) is None
