#!/usr/bin/env bash
# Installs the independent readers of the lake that the tests compare Strata's tables with:
# Python's `deltalake` (delta-rs) and DuckDB, and the S3-compatible server a lake in a bucket is
# tested on (moto's), from PyPI, into a virtualenv kept outside the clone, once:
# `$STRATA_LAKE_VENV` or ~/.cache/strata-lake-readers.
set -euo pipefail
venv=${STRATA_LAKE_VENV:-$HOME/.cache/strata-lake-readers}
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import deltalake, duckdb, pyarrow, moto, flask' 2>/dev/null; then
  exit 0
fi
source "$(dirname "$0")/venv-lib.sh"
make_venv "$venv"
"$venv/bin/pip" install -q deltalake==1.6.6 duckdb==2.0.0 pyarrow 'moto[server]==5.2.5'
