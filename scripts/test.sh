#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test of every crate.
# Builds go to $CARGO_TARGET_DIR, by default a cache outside the checkout so that repeated runs
# reuse what was built.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

for tool in cargo rustc; do
  command -v "$tool" >/dev/null || { echo "test.sh: $tool is required (install Rust with rustup)" >&2; exit 1; }
done
# The tests use dd and kill from coreutils/procps, present on any Linux.

# The Prometheus integration test (crates/strata-server/tests/prometheus.rs) runs the real
# Prometheus 2.42 against Strata, and fails when it is missing rather than passing unseen.
echo "== scripts/install-prometheus.sh"
scripts/install-prometheus.sh
# vmalert runs against Strata in crates/strata-server/tests/vmalert.rs.
echo "== scripts/install-victoria-metrics.sh"
scripts/install-victoria-metrics.sh
# Python's deltalake and DuckDB read the lake's tables in crates/strata-server/tests/lake.rs.
echo "== scripts/install-lake-readers.sh"
scripts/install-lake-readers.sh
# The shippers' protocol tests (crates/strata-server/tests/otlp.rs) send with the real SDKs.
echo "== scripts/install-shippers.sh"
scripts/install-shippers.sh
# The README test (crates/strata-server/tests/readme.rs) runs the README's commands with bash and curl.
if ! command -v curl >/dev/null; then
  echo "== installing curl"
  sudo=(); [ "$(id -u)" -ne 0 ] && sudo=(sudo -n)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q install --no-install-recommends curl </dev/null ||
    { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q update </dev/null &&
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q install --no-install-recommends curl </dev/null; }
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
# The server's tests inject faults into its consumers (crates/strata-server/src/faults.rs); the
# feature that compiles that in is on for the tests only, never in release builds.
features=(--features strata-server/fault-injection)
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked "${features[@]}" -- -D warnings
echo "== cargo test"
cargo test --workspace --locked "${features[@]}"
