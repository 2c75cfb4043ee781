#!/usr/bin/env bash
# Installs Prometheus (Debian's `prometheus` package, 2.42 on bookworm) for the integration tests
# that run a real Prometheus beside Strata, and for the benchmarks.
set -euo pipefail
exec "$(dirname "$0")/install-deb.sh" prometheus prometheus promtool
