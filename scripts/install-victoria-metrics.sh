#!/usr/bin/env bash
# Installs VictoriaMetrics and vmalert (Debian's `victoria-metrics` package) for the test that runs
# vmalert against Strata, and for the benchmarks that measure VictoriaMetrics beside it.
set -euo pipefail
exec "$(dirname "$0")/install-deb.sh" victoria-metrics victoria-metrics vmalert
