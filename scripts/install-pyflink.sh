#!/usr/bin/env bash
# Installs Apache Flink's Python API (a local mini-cluster runs on the machine's Java 17) into a
# virtualenv kept outside the clone, once: `$STRATA_FLINK_VENV` or ~/.cache/strata-flink.
set -euo pipefail
venv=${STRATA_FLINK_VENV:-$HOME/.cache/strata-flink}
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import pyflink' 2>/dev/null; then
  exit 0
fi
command -v java >/dev/null || bash "$(dirname "$0")/install-deb.sh" openjdk-17-jre-headless java
python3 -m venv "$venv"
"$venv/bin/pip" install -q apache-flink==2.3.0
