#!/usr/bin/env bash
# Build Beam's Prism runner from the Go module proxy, once, at the Beam version setup.py pins.
#
# `--runner=DirectRunner` in Beam 2.77 tries Prism first and would download a release binary
# from GitHub; labelbeam points it at this build instead (pipelines/runners.py), so the
# DirectRunner and PrismRunner work offline. The binary is cached per version:
#   ${LABELBEAM_PRISM_DIR:-~/.cache/labelbeam/prism}/v<version>/prism
set -euo pipefail
cd "$(dirname "$0")/.."
version="$(sed -n 's/^BEAM = "apache-beam==\([0-9.]*\)"/\1/p' setup.py)"
[ -n "$version" ] || { echo "install_prism: no apache-beam==X pin found in setup.py" >&2; exit 1; }
target="${LABELBEAM_PRISM_DIR:-$HOME/.cache/labelbeam/prism}/v$version"
if [ -x "$target/prism" ]; then
  echo "prism v$version already at $target/prism"
  exit 0
fi
command -v go >/dev/null || { echo "install_prism: the Go toolchain is needed (https://go.dev/dl/)" >&2; exit 1; }
mkdir -p "$target"
GOFLAGS=-mod=mod GOBIN="$target" go install "github.com/apache/beam/sdks/v2/go/cmd/prism@v$version"
echo "prism v$version installed at $target/prism"
