#!/usr/bin/env bash
# Install the object-store emulators the storage tests run against, once per version:
#   fake-gcs-server (Google Cloud Storage) from the Go module proxy,
#   Azurite (Azure Blob Storage) from the npm registry.
# S3 needs nothing here: moto's server is a Python package of the [test] extra.
#
# Cached per version under ${LABELBEAM_EMULATORS_DIR:-~/.cache/labelbeam/emulators}:
#   fake-gcs-server/v<version>/fake-gcs-server
#   azurite/v<version>/node_modules/.bin/azurite-blob
# tests/conftest.py looks there (or on PATH); a test whose emulator is absent skips.
# A missing toolchain (go, npm) skips that emulator with a note, so its tests skip.
set -euo pipefail
FAKE_GCS_VERSION=1.56.1
AZURITE_VERSION=3.37.0
root="${LABELBEAM_EMULATORS_DIR:-$HOME/.cache/labelbeam/emulators}"
gcs="$root/fake-gcs-server/v$FAKE_GCS_VERSION"
azurite="$root/azurite/v$AZURITE_VERSION"
status=()

if [ -x "$gcs/fake-gcs-server" ]; then
  status+=("fake-gcs-server v$FAKE_GCS_VERSION cached")
elif command -v go >/dev/null; then
  mkdir -p "$gcs"
  GOFLAGS=-mod=mod GOBIN="$gcs" go install "github.com/fsouza/fake-gcs-server@v$FAKE_GCS_VERSION"
  status+=("fake-gcs-server v$FAKE_GCS_VERSION installed")
else
  status+=("fake-gcs-server skipped (no go toolchain)")
fi

if [ -x "$azurite/node_modules/.bin/azurite-blob" ]; then
  status+=("azurite v$AZURITE_VERSION cached")
elif command -v npm >/dev/null; then
  mkdir -p "$azurite"
  npm install --prefix "$azurite" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >/dev/null
  status+=("azurite v$AZURITE_VERSION installed")
else
  status+=("azurite skipped (no npm)")
fi

echo "emulators at $root: ${status[0]}; ${status[1]}"
