#!/usr/bin/env bash
# Install datumaro (the reader tests/test_coco_documents.py loads the COCO output with) into a
# virtualenv of its own, once.
#
# datumaro 1.13 pins pandas 2.x, older than the pandas the project's environment may hold, so it
# is not in the `test` extra: the test runs it as a child process from
#   ${DATUMARO_PYTHON:-~/.cache/labelbeam/datumaro-venv/bin/python}
# and skips when that interpreter is absent.
set -euo pipefail
target="${LABELBEAM_DATUMARO_DIR:-$HOME/.cache/labelbeam/datumaro-venv}"
if [ -x "$target/bin/python" ] && "$target/bin/python" -c "import datumaro" 2>/dev/null; then
  echo "datumaro already in $target"
  exit 0
fi
python3 -m venv "$target"
"$target/bin/pip" install -q "datumaro>=1.13,<2"
echo "datumaro installed in $target (DATUMARO_PYTHON=$target/bin/python)"
